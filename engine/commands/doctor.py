"""`idwell-sync doctor TENANT`: the customer's IT checklist (see engine.doctor). Read-only."""
from __future__ import annotations

import sys

from engine.errors import ExitCode

HELP = "check a tenant's connection step by step: DNS, firewall, driver, TLS, login, rights, queries, target"


def add_arguments(parser) -> None:
    from engine.commands._common import add_tenant_argument
    add_tenant_argument(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def main(args) -> int:
    from engine.commands._common import load
    from engine.doctor import failed, format_step, run_doctor, summary_line, to_json

    tenant = load(args)
    steps = []
    if args.format == "text":
        print(f"idwell-sync doctor: tenant '{tenant.id}' ({tenant.name}), source {_source_label(tenant)}")
    for index, s in enumerate(run_doctor(tenant), 1):
        steps.append(s)
        if args.format == "text":
            print(format_step(index, s), flush=True)
    if args.format == "json":
        print(to_json(tenant, steps))
    else:
        print(summary_line(steps))
    sys.stdout.flush()
    return int(ExitCode.INVALID) if failed(steps) else int(ExitCode.OK)


def _source_label(tenant) -> str:
    src = tenant.source
    if src.type == "api":
        return f"api {src.base_url}"
    if src.server is not None:
        from engine.sources.odbc import describe_sql_server
        try:
            return f"sql {describe_sql_server(src.server)}"
        except ValueError:
            return f"sql {src.server.host}:{src.server.port}"
    return f"sql {src.url}"   # the URL as written: secrets stay references
