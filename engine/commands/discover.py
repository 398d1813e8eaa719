"""`idwell-sync discover TENANT [TABLE]`: the source's schemas, tables, views and columns, and a
few rows of one table, to write queries for an unfamiliar installation (see engine.discover), with
the first rows of each of the mapping's queries checked against its expressions
(engine.discover_queries); for an API source, the fields of each endpoint the mapping reads, and a
few records of one (engine.discover_api). Records that break an expression of the mapping (a run
stops on them, exit 3) are named, and discover still exits 0."""
from __future__ import annotations

import json

from engine.errors import ExitCode, SourceError, SyncError, UsageError

HELP = ("list the source database's tables, views and columns, or show a few rows of one table; for an API "
        "source, the fields of each endpoint's first page, or a few records of one endpoint (read-only)")


def add_arguments(parser) -> None:
    from engine.commands._common import add_tenant_argument
    add_tenant_argument(parser)
    parser.add_argument("table", nargs="?", metavar="TABLE",
                        help="a table or view (name or schema.name): its columns and first rows; for an API source, "
                             "an entity (users) or its endpoint (/persons): its fields and first records")
    parser.add_argument("--rows", type=_row_count, default=5, help="rows (records) to show of TABLE (default: 5)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="output format (default: text; json is described in docs/config.md, "
                             "\"idwell-sync discover\")")


def _row_count(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of rows, 0 or more")
    return value


def main(args) -> int:
    from engine.commands._common import check_secrets, load
    from engine import discover as d
    from engine import discover_queries as q
    from engine.sources.connect import connect_error, create_sql_engine, for_tenant

    tenant = load(args)
    check_secrets(args, tenant, target=False, state=False)   # as plan does, before a driver is looked for
    if tenant.source.type == "api":
        return _discover_api(args, tenant)
    try:
        engine = create_sql_engine(tenant.source)
    except SyncError as exc:
        raise for_tenant(exc, tenant.id) from None
    try:
        try:
            relations = d.list_objects(engine, columns=True)
            picked = d.sample(engine, d.find_relation(relations, args.table), args.rows) if args.table else None
            queries = None if picked else q.sample_queries(engine, tenant)
        except (SourceError, UsageError) as exc:     # UsageError: a TABLE the database does not have
            raise for_tenant(exc, tenant.id) from None
        except Exception as exc:
            raise connect_error(exc, f"tenant '{tenant.id}': discover", engine, tenant.source, tenant.id) from None
    finally:
        engine.dispose()
    if args.format == "json":
        out = d.to_jsonable([picked.relation] if picked else relations, picked)
        print(json.dumps(out if picked else {**out, **q.to_jsonable(queries)}, ensure_ascii=False, indent=2))
    elif picked:
        print(d.format_sample(picked))
    else:
        print(d.format_objects(relations))
        print(q.format_queries(queries))
    return int(ExitCode.OK)


def _discover_api(args, tenant) -> int:
    """The endpoints the mapping reads: the first page of each (its fields), or the first records of
    one. Credentials refused, a secret not set, no answer, an API that keeps failing: stop at once,
    as a run stops. Another failure of one endpoint (404, not JSON, a record_selector that selects
    no list) is shown in its place and the others are read; the command then stops with that error
    (exit 4)."""
    from engine import discover_api as d
    from engine.discover_fields import sample_gate
    from engine.redact import redact

    picked = d.find_entity(tenant, args.table) if args.table else None
    entities = [picked] if picked else list(tenant.entities.values())
    extractor = d.extractor_for(tenant, max(args.rows, d.PAGE) if picked else d.PAGE)
    samples = []
    try:
        for entity in entities:
            try:
                gate, ungated = sample_gate(tenant, entity, extractor.run_date)
                samples.append(d.sample_endpoint(extractor, entity, args.rows if picked else 1, gate, ungated))
            except SourceError as exc:
                if picked or d.stops_all(exc):
                    raise
                samples.append(d.failed_endpoint(entity, exc))
    finally:
        extractor.close()
    if args.format == "json":
        text = json.dumps(d.to_jsonable(samples, samples[0] if picked else None, args.rows), ensure_ascii=False, indent=2)
    elif picked:
        text = d.format_records(samples[0], args.rows)
    else:
        text = d.format_endpoints(samples)
    print(redact(text))             # an API that echoes a credential in its records does not show it here
    failed = next((s.error for s in samples if s.error is not None), None)
    if failed is not None:
        raise failed
    return int(ExitCode.OK)
