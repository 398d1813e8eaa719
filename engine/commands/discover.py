"""`idwell-sync discover TENANT [TABLE]`: the source's schemas, tables, views and columns, and a
few rows of one table, to write queries for an unfamiliar installation (see engine.discover)."""
from __future__ import annotations

import json

from engine.errors import ExitCode, SourceError, SyncError

HELP = "list the source database's tables, views and columns, or show a few rows of one table (read-only)"


def add_arguments(parser) -> None:
    from engine.commands._common import add_tenant_argument
    add_tenant_argument(parser)
    parser.add_argument("table", nargs="?", help="a table or view (name or schema.name): its columns and first rows")
    parser.add_argument("--rows", type=_row_count, default=5, help="rows to show of TABLE (default: 5)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


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
    from engine.commands._common import load
    from engine import discover as d
    from engine.sources.connect import connect_error, create_sql_engine, for_tenant

    tenant = load(args)
    if tenant.source.type != "sql":
        raise SourceError(f"tenant '{tenant.id}': discover reads SQL sources; this tenant reads an API",
                          cause="config", hint=f"`idwell-sync doctor {args.tenant}` shows the first page of each endpoint")
    try:
        engine = create_sql_engine(tenant.source)
    except SyncError as exc:
        raise for_tenant(exc, tenant.id) from None
    try:
        try:
            relations = d.list_objects(engine, columns=True)
            picked = d.sample(engine, d.find_relation(relations, args.table), args.rows) if args.table else None
        except SourceError as exc:
            raise for_tenant(exc, tenant.id) from None
        except Exception as exc:
            raise connect_error(exc, f"tenant '{tenant.id}': discover", engine, tenant.source) from None
    finally:
        engine.dispose()
    if args.format == "json":
        print(json.dumps(d.to_jsonable([picked.relation] if picked else relations, picked), ensure_ascii=False, indent=2))
    elif picked:
        print(d.format_sample(picked))
    else:
        print(d.format_objects(relations))
    return int(ExitCode.OK)
