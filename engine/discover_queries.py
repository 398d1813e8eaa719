"""`idwell-sync discover` for an SQL source: the mapping's queries, each run and its first rows
mapped as a run maps them, so that a row that breaks an expression of the mapping (which stops a
run with exit 3) is named before the first night (engine.discover_fields).

`sample_queries(engine, tenant)` runs each entity's query with the run's parameters, reads its
first SAMPLE rows (streamed: no more are fetched, also from PostgreSQL) and checks them; a query that fails, or that does not
return a column the mapping reads, is noted in its place (doctor's query step says what to do; the
driver's message masked by engine.redact, as every error the engine shows):
the listing of tables and columns is what discover is for, also while the queries do not fit.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from engine.config.model import EntityMapping, Tenant
from engine.discover_fields import SHOWN, FieldCheck, check_records, errors_jsonable, field_lines, sample_gate, summary
from engine.mapping import unreturned_columns
from engine.plural import counted

SAMPLE = 1000
"""Rows read of each query: enough to meet the usual gaps in the data, little load on the ERP."""


@dataclass
class QuerySample:
    entity: EntityMapping
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)    # columns the mapping reads that the query does not return
    error: str | None = None                            # why the query could not run
    check: FieldCheck = field(default_factory=FieldCheck)

    def row(self, index: int) -> dict[str, Any]:
        """A row as the query returned it, by column (JSON values, as discover's TABLE sample)."""
        from engine.discover import _json_value
        return {name: _json_value(value) for name, value in zip(self.columns, self.rows[index])}


def sample_queries(engine, tenant: Tenant, rows: int = SAMPLE) -> list[QuerySample]:
    """Each entity's query, in the mapping's order, its first `rows` rows checked."""
    from engine.references import tenant_today
    run_date = tenant_today(tenant)
    with engine.connect() as conn:
        return [_sample(conn, tenant, entity, run_date, rows) for entity in tenant.entities.values()]


def _sample(conn, tenant: Tenant, entity: EntityMapping, run_date: dt.date, rows: int) -> QuerySample:
    from sqlalchemy import text
    from engine.classify import classify, message_of
    from engine.extract import window_params
    from engine.redact import redact
    from engine.sources.sql import query_params
    out = QuerySample(entity)
    params = {**window_params(tenant, run_date), **tenant.source.params, **entity.params}
    try:
        streamed = conn.execution_options(stream_results=True, yield_per=max(1, min(rows, SAMPLE)))
        result = streamed.execute(text(entity.query or ""), query_params(entity.query or "", params))
        try:
            out.columns = list(result.keys())
            out.rows = [tuple(row) for row in result.fetchmany(rows)]
        finally:
            result.close()
    except Exception as exc:
        conn.rollback()
        message = getattr(exc, "message", None) or f"{classify(exc).code}: {redact(message_of(exc))[:300]}"
        out.error = redact(message)         # a driver's message may quote a value, a secret too (masked before cut)
        out.columns, out.rows = [], []      # a query that failed while its rows were read returned nothing
        return out
    out.missing = unreturned_columns(entity, out.columns)
    if not out.missing:
        gate, ungated = sample_gate(tenant, entity, run_date)
        out.check = check_records(entity, out.rows, out.columns, gate, ungated)
    return out


def _title(s: QuerySample) -> str:
    return f"query {s.entity.name}"


def format_queries(samples: list[QuerySample]) -> str:
    """Per query: the rows read, the expressions they break, the first rows that break one."""
    lines = [f"the mapping's queries, their first {SAMPLE} rows (at most) mapped as a run maps them:"]
    for s in samples:
        if s.error is not None:
            lines.append(f"  {_title(s)}: not run: {s.error} (`idwell-sync doctor` says what to do)")
            continue
        n = len(s.rows)
        head = f"  {_title(s)}: {counted(n, 'row')} read"
        if s.missing:
            lines.append(f"{head}; the mapping reads {', '.join(s.missing)}, which the query does not return")
            continue
        if not s.check.broken:
            lines.append(f"{head}; every expression of the mapping can be computed for them")
            continue
        lines.append(f"{head}:")
        lines += ["  " + line for line in field_lines(s.check, n, "rows")]
        picked = s.check.broken[:SHOWN]
        lines.append(f"    the first {counted(len(picked), 'such row')}, as the query returned them:"
                     if len(picked) < len(s.check.broken) else
                     f"    {'the row' if len(picked) == 1 else f'the {len(picked)} rows'}, as the query returned "
                     f"{'it' if len(picked) == 1 else 'them'}:")
        lines += [f"      {_row_text(s, b.index)}" for b in picked]
    breaking = sum(len(s.check.broken) for s in samples)
    if breaking:
        lines.append(summary(breaking, sum(s.check.checked for s in samples), "rows"))
    return "\n".join(lines)


def _row_text(s: QuerySample, index: int) -> str:
    import json
    return json.dumps(s.row(index), ensure_ascii=False)


def to_jsonable(samples: list[QuerySample]) -> dict[str, Any]:
    """The `queries` and `expression_errors` of `discover --format json` for an SQL source (docs/config.md)."""
    breaking = sum(len(s.check.broken) for s in samples)
    checked = sum(s.check.checked for s in samples)
    return {"queries": [{"entity": s.entity.name, "rows": len(s.rows), "columns": s.columns, "missing": s.missing,
                         "error": s.error, "expression_errors": errors_jsonable(s.check, s.row, SHOWN)}
                        for s in samples],
            "expression_errors": {"checked": checked, "records": breaking,
                                  "message": summary(breaking, checked, "rows") if breaking else None}}
