"""`idwell-sync discover`: what is in an unfamiliar ERP database, to write a tenant's queries.

`list_objects(engine)` lists schemas with their tables, views and columns (SQLAlchemy's
inspector); `sample(engine, "dbo.Adresse", rows=5)` reads the first rows of one table or view.
Read-only: the engine comes from create_sql_engine, which opens SQLite files read-only and
PostgreSQL sessions read-only; only catalog queries and one SELECT run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.config._text import did_you_mean
from engine.errors import UsageError
from engine.plural import counted

SYSTEM_SCHEMAS = {"information_schema", "pg_catalog", "pg_toast", "sys", "guest", "db_owner", "db_accessadmin",
                  "db_securityadmin", "db_ddladmin", "db_backupoperator", "db_datareader", "db_datawriter",
                  "db_denydatareader", "db_denydatawriter"}


@dataclass
class Column:
    name: str
    type: str
    nullable: bool


@dataclass
class Relation:
    schema: str
    name: str
    kind: str                 # table | view
    columns: list[Column] = field(default_factory=list)
    in_default_schema: bool = True

    @property
    def qualified(self) -> str:
        return self.name if self.in_default_schema else f"{self.schema}.{self.name}"


@dataclass
class Sample:
    relation: Relation
    columns: list[str]
    rows: list[tuple]


def list_objects(engine, *, columns: bool = True) -> list[Relation]:
    """Every user table and view, schema by schema (the default schema first)."""
    from sqlalchemy import inspect
    inspector = inspect(engine)
    default = inspector.default_schema_name
    schemas = [s for s in inspector.get_schema_names() if s.lower() not in SYSTEM_SCHEMAS]
    schemas.sort(key=lambda s: (s != default, s.lower()))
    out: list[Relation] = []
    for schema in schemas:
        key = None if schema == default else schema
        for kind, names in (("table", inspector.get_table_names(schema=key)), ("view", inspector.get_view_names(schema=key))):
            for name in sorted(names, key=str.lower):
                rel = Relation(schema, name, kind, in_default_schema=schema == default)
                if columns:
                    rel.columns = [Column(c["name"], str(c["type"]), bool(c.get("nullable", True)))
                                   for c in inspector.get_columns(name, schema=key)]
                out.append(rel)
    return out


def find_relation(relations: list[Relation], wanted: str) -> Relation:
    """A table or view by name, `schema.name` or `name`, compared case-insensitively."""
    w = wanted.strip().strip('"[]').casefold()
    for rel in relations:
        if w in (rel.qualified.casefold(), f"{rel.schema}.{rel.name}".casefold()) or \
                (rel.in_default_schema and w == rel.name.casefold()):
            return rel
    raise UsageError(f"no table or view named '{wanted}'; {_known(relations)}",
                     hint=did_you_mean(wanted.strip().strip('"[]'), [r.qualified for r in relations])
                     or "give a table or view (name or schema.name, any case), or leave TABLE out to list them "
                        "with their columns")


LISTED = 20
"""At most this many names in the message of a TABLE the database does not have (an ERP has hundreds)."""


def _known(relations: list[Relation]) -> str:
    if not relations:
        return "the database has no tables or views the login can see"
    names = [r.qualified for r in relations]
    more = f" and {len(names) - LISTED} more (discover without TABLE lists them)" if len(names) > LISTED else ""
    return f"the database has {counted(len(names), 'table or view', 'tables and views')}: {', '.join(names[:LISTED])}{more}"


def sample(engine, relation: Relation, rows: int = 5) -> Sample:
    import sqlalchemy as sa
    table = sa.Table(relation.name, sa.MetaData(), *[sa.Column(c.name) for c in relation.columns],
                     schema=None if relation.in_default_schema else relation.schema)
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).limit(max(0, rows)))
        data = [tuple(r) for r in result]
        names = list(result.keys())
    return Sample(relation, names, data)


def format_objects(relations: list[Relation]) -> str:
    lines: list[str] = []
    several = len({r.schema for r in relations}) > 1
    schema = None
    for rel in relations:
        if several and rel.schema != schema:
            schema = rel.schema
            lines.append(f"schema {schema}")
        cols = ", ".join(f"{c.name} {c.type}" for c in rel.columns)
        indent = "  " if several else ""
        lines.append(f"{indent}{rel.kind} {rel.name} ({counted(len(rel.columns), 'column')}): {cols}")
    tables = sum(r.kind == "table" for r in relations)
    lines.append(f"{counted(tables, 'table')}, {counted(len(relations) - tables, 'view')}")
    return "\n".join(lines)


def format_sample(s: Sample, width: int = 40) -> str:
    rel = s.relation
    lines = [f"{rel.kind} {rel.qualified}"]
    for c in rel.columns:
        lines.append(f"  {c.name:<30} {c.type}{'' if c.nullable else ' NOT NULL'}")
    lines.append(("first row:" if len(s.rows) == 1 else f"first {len(s.rows)} rows:"))
    lines += format_table(s.columns, [[_cell(v, width) for v in row] for row in s.rows])
    return "\n".join(lines)


def format_table(columns: list[str], cells: list[list[str]]) -> list[str]:
    """A header line, a rule and one line per row, each column as wide as its widest cell
    (the SQL sample's rows, the API sample's records)."""
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(columns)]
    lines = ["  " + " | ".join(n.ljust(w) for n, w in zip(columns, widths)),
             "  " + "-+-".join("-" * w for w in widths)]
    return lines + [("  " + " | ".join(v.ljust(w) for v, w in zip(row, widths))).rstrip() for row in cells]


def to_jsonable(relations: list[Relation], s: Sample | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"objects": [{"schema": r.schema, "name": r.name, "kind": r.kind,
                                        "columns": [vars(c) for c in r.columns]} for r in relations]}
    if s is not None:
        out["sample"] = {"object": s.relation.qualified, "columns": s.columns,
                         "rows": [[_json_value(v) for v in row] for row in s.rows]}
    return out


def _cell(value: Any, width: int) -> str:
    text = "NULL" if value is None else str(value).replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{counted(len(bytes(value)), 'byte')}>"
    return str(value)
