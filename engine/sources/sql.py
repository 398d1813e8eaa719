"""The SQL source: runs each entity's query through SQLAlchemy and streams rows in batches.

Queries are executed as SQLAlchemy `text()` with bound parameters (the tenant's `params` plus
the run's dates), never formatted into the SQL. Rows are streamed with server-side cursors where
the driver has them (`stream_results`), so a large tenant never sits in memory twice.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterator

from sqlalchemy import text

from engine.config.model import EntityMapping, SqlSource
from engine.config.sql import bound_names
from engine.errors import SourceError, SyncError
from engine.sources.connect import create_sql_engine, for_tenant

log = logging.getLogger(__name__)


def query_params(query: str, available: dict[str, Any]) -> dict[str, Any]:
    """The subset of `available` that the query binds (`:name`); unknown names are an error."""
    wanted = set(bound_names(query))
    missing = wanted - available.keys()
    if missing:
        raise SourceError(f"the query binds {', '.join(':' + m for m in sorted(missing))}, which is not a "
                          f"declared parameter (known: {', '.join(sorted(available)) or 'none'})",
                          cause="config", hint="declare it under source.params or entity params")
    return {k: available[k] for k in wanted}


class SqlExtractor:
    """Opens one connection for the whole run; `batches` yields (column names, list of row tuples)."""

    def __init__(self, source: SqlSource, tenant_id: str, *, run_date: dt.date):
        self.source = source
        self.tenant_id = tenant_id
        self.run_date = run_date
        try:
            self._engine = create_sql_engine(source)
        except SyncError as exc:    # a secret, a URL SQLAlchemy cannot load, a driver that is not installed
            raise for_tenant(exc, tenant_id) from None
        self._conn = None

    def _connection(self):
        from engine.sources.connect import connect_error
        if self._conn is None:
            try:
                self._conn = self._engine.connect()
            except Exception as exc:  # the driver's own types vary; a password not resolved: exit 3
                raise connect_error(exc, f"tenant '{self.tenant_id}': connect", self._engine, self.source,
                                    self.tenant_id) from None
        return self._conn

    def batches(self, entity: EntityMapping, extra_params: dict[str, Any]) -> Iterator[tuple[list[str], list[tuple]]]:
        """Rows straight from the DBAPI cursor in batches of `batch_size`: the statement is compiled
        by SQLAlchemy for the dialect (bound parameters, never formatted SQL), then fetched with
        fetchmany on a streaming cursor (a named server-side cursor on PostgreSQL)."""
        params = {"ref_date": self.run_date, **self.source.params, **entity.params, **extra_params}
        bound = query_params(entity.query or "", params)
        conn = self._connection()
        dialect = self._engine.dialect
        compiled = text(entity.query).bindparams(**bound).compile(dialect=dialect) if bound else \
            text(entity.query).compile(dialect=dialect)
        values = compiled.construct_params()
        args = tuple(values[name] for name in compiled.positiontup) if compiled.positional else values
        raw = conn.connection.dbapi_connection
        cursor = None
        try:
            if dialect.name == "postgresql":
                cursor = raw.cursor(name=f"idwell_{entity.name}")
            else:
                cursor = raw.cursor()
            cursor.arraysize = self.source.batch_size
            cursor.execute(str(compiled), args)
            columns = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(self.source.batch_size):
                yield columns, rows
        except SourceError:
            raise
        except Exception as exc:
            from engine.sources.connect import sqlite_file_error
            what = f"query of entity '{entity.name}'"     # a SQLite file damaged past its first page: named
            error = sqlite_file_error(exc, f"tenant '{self.tenant_id}': {what}", self._engine) or \
                _source_error(exc, self.tenant_id, what, entity.query_at)
            error.in_query = True
            raise error from None
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except Exception:  # a broken connection cannot close its cursor; nothing to save
                    pass

    def close(self) -> None:
        if self._conn is not None:
            # The queries ran on the DBAPI connection, out of SQLAlchemy's sight: a connection the server dropped
            # (a query that failed with it, or one idle meanwhile) is discarded here, not handed back to the pool,
            # whose reset would log the failed rollback as an ERROR with a traceback.
            try:
                self._conn.connection.dbapi_connection.rollback()
            except Exception:
                self._conn.invalidate()
            self._conn.close()
        self._engine.dispose()


def _source_error(exc: Exception, tenant_id: str, what: str, query_at: str | None = None) -> SourceError:
    from engine.classify import classify, hints_for
    cause = classify(exc)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceError(f"tenant '{tenant_id}': {what} failed: {cause.code}: {first_line[:300]}",
                       cause=cause.code, hint=hints_for(cause, tenant_id, query_at)[0], retriable=cause.retriable)
