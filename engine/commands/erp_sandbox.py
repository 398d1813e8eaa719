"""`idwell-sync erp-sandbox`: serve a demo ERP as the DOMUS Cloud Connect API on 127.0.0.1, to
rehearse a tenant whose source is the API (docs/config.md, "An API source")."""
from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from engine.commands.sandbox import _non_negative, serve_until_stopped

HELP = "a local stand-in of the ERP's Cloud Connect API over a demo ERP, for rehearsals (127.0.0.1 only)"
DEFAULT_ERP = Path("var/demo/erp.sqlite")
DEFAULT_KEY_ENV = "CC_KEY"


def add_arguments(parser) -> None:
    parser.add_argument("--erp", type=Path, default=DEFAULT_ERP,
                        help=f"the demo ERP it serves, an SQLite file (default {DEFAULT_ERP}, which "
                             "`idwell-sync demo` makes)")
    parser.add_argument("--port", type=_non_negative, default=8780, help="port on 127.0.0.1 (0: any free port; "
                                                                         "default 8780)")
    parser.add_argument("--key-env", default=DEFAULT_KEY_ENV, metavar="NAME",
                        help="the environment variable that holds the API key it accepts (header X-API-Key), "
                             f"the one the tenant references as ${{env:NAME}} (default {DEFAULT_KEY_ENV})")


def main(args) -> int:
    from engine.demo.cloud_connect import CloudConnect
    from engine.errors import ExitCode

    def usage(message: str) -> int:
        print(f"idwell-sync erp-sandbox: error: {message}", file=sys.stderr)
        return ExitCode.USAGE
    key = os.environ.get(args.key_env, "")
    if not key.strip():
        return usage(f"the environment variable {args.key_env} (--key-env) is not set: set it to the API key the "
                     f"stand-in is to accept, e.g. export {args.key_env}=demo-key, and reference it in the tenant "
                     f"as ${{env:{args.key_env}}}")
    if not args.erp.is_file():
        return usage(f"--erp {args.erp}: no such file; `idwell-sync demo` makes the demo ERP at {DEFAULT_ERP}")
    try:
        with sqlite3.connect(f"{args.erp.resolve().as_uri()}?mode=ro", uri=True) as con:
            con.execute("SELECT 1 FROM objekt LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        return usage(f"--erp {args.erp}: not a demo ERP (SQLite said: {exc}); `idwell-sync demo` makes one")
    try:
        server = CloudConnect(str(args.erp.resolve()), key, port=args.port)
    except OSError as exc:
        return usage(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    print(f"idwell-sync erp-sandbox: serving {args.erp} as the Cloud Connect API at {server.url}")
    print("  a tenant reads it with mapping: domus-api and")
    print(f"    source: {{type: api, base_url: \"{server.url}\", auth: {{type: api_key, header: X-API-Key, "
          f"key: \"${{env:{args.key_env}}}\"}}}}")
    print("  stop with Ctrl-C", flush=True)
    serve_until_stopped(server.httpd, server.httpd.server_close)
    return ExitCode.OK
