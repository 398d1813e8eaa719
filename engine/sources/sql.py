"""The SQL source: runs each entity's query through SQLAlchemy and streams rows in batches.

Queries are executed as SQLAlchemy `text()` with bound parameters (the tenant's `params` plus
the run's dates), never formatted into the SQL. Rows are streamed with server-side cursors where
the driver has them (`stream_results`), so a large tenant never sits in memory twice.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Iterator

from sqlalchemy import text

from engine.config.model import EntityMapping, SqlSource
from engine.errors import SourceError

log = logging.getLogger(__name__)
_BIND = re.compile(r"(?<![:\w]):(\w+)")


def query_params(query: str, available: dict[str, Any]) -> dict[str, Any]:
    """The subset of `available` that the query binds (`:name`); unknown names are an error."""
    wanted = set(_BIND.findall(query))
    missing = wanted - available.keys()
    if missing:
        raise SourceError(f"the query binds {', '.join(':' + m for m in sorted(missing))}, which is not a "
                          f"declared parameter (known: {', '.join(sorted(available)) or 'none'})",
                          cause="config", hint="declare it under source.params or entity params")
    return {k: available[k] for k in wanted}


class SqlExtractor:
    """Opens one connection for the whole run; `batches` yields (column names, list of row tuples)."""

    def __init__(self, source: SqlSource, tenant_id: str, *, run_date: dt.date):
        from engine.sources.connect import create_sql_engine
        self.source = source
        self.tenant_id = tenant_id
        self.run_date = run_date
        self._engine = create_sql_engine(source)
        self._conn = None

    def _connection(self):
        if self._conn is None:
            try:
                self._conn = self._engine.connect()
            except Exception as exc:  # the driver's own exception types vary
                raise _source_error(exc, self.tenant_id, "connect") from None
        return self._conn

    def batches(self, entity: EntityMapping, extra_params: dict[str, Any]) -> Iterator[tuple[list[str], list[tuple]]]:
        params = {"ref_date": self.run_date, **self.source.params, **entity.params, **extra_params}
        bound = query_params(entity.query or "", params)
        conn = self._connection()
        try:
            result = conn.execution_options(stream_results=True, yield_per=self.source.batch_size) \
                         .execute(text(entity.query), bound)
            columns = list(result.keys())
            for part in result.partitions(self.source.batch_size):
                yield columns, part
        except SourceError:
            raise
        except Exception as exc:
            raise _source_error(exc, self.tenant_id, f"query of entity '{entity.name}'") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._engine.dispose()


def _source_error(exc: Exception, tenant_id: str, what: str) -> SourceError:
    from engine.classify import classify
    cause = classify(exc)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceError(f"tenant '{tenant_id}': {what} failed: {cause.code}: {first_line[:300]}",
                       cause=cause.code, hint=cause.hint_en, retriable=cause.retriable)
