"""The SQL source against the PostgreSQL server on 127.0.0.1:5432: what the URL's own options
leave in force, and a server that drops the connection in the middle of an extract."""
from __future__ import annotations

import datetime as dt
import logging

import psycopg
import pytest

from engine.config.model import EntityMapping, SqlSource
from engine.config.secrets import Secret
from engine.errors import SourceError
from engine.sources.sql import SqlExtractor
from pgcluster import require

pytestmark = pytest.mark.postgres

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture(autouse=True)
def server_up():
    try:
        with psycopg.connect(ADMIN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # the reason is shown in the skip message
        require(False, f"PostgreSQL on 127.0.0.1:5432 (db test) is not reachable: {exc}")


def entity(query: str) -> EntityMapping:
    return EntityMapping(name="buildings", fields={}, key=(), query=query)


def extractor(url: str, **source) -> SqlExtractor:
    return SqlExtractor(SqlSource(type="sql", url=Secret(url), **source), "acme", run_date=dt.date(2026, 6, 1))


def test_a_url_with_its_own_options_keeps_the_query_timeout_and_read_only():
    """The demo on PostgreSQL (and any schema other than public) sets search_path in the URL's
    options; the session must still be read-only and stop a query at query_timeout."""
    source = extractor(f"{PG_URL}?options=-csearch_path%3Dpg_catalog", query_timeout=1)
    try:
        settings = entity("SELECT current_setting('search_path'), current_setting('default_transaction_read_only'), "
                          "current_setting('statement_timeout')")
        assert [rows for _, rows in source.batches(settings, {})] == [[("pg_catalog", "on", "1s")]]
        with pytest.raises(SourceError) as info:
            list(source.batches(entity("SELECT pg_sleep(5)"), {}))
    finally:
        source.close()
    assert info.value.cause == "timeout" and info.value.retriable
    assert "tenant 'acme'" in info.value.message and "query_timeout" in info.value.hint


def _terminate(pid: int) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_a_connection_dropped_mid_extract_is_a_retriable_error_without_a_logged_traceback(caplog):
    """The server goes away between two batches (a restart, a nightly backup): the run gets one
    classified error and the log no 'Exception during reset' traceback from SQLAlchemy's pool."""
    source = extractor(PG_URL, batch_size=1)
    batches = source.batches(entity("SELECT g FROM generate_series(1, 3) g"), {})
    with caplog.at_level(logging.WARNING):
        try:
            assert next(batches) == (["g"], [(1,)])
            _terminate(source._connection().connection.dbapi_connection.info.backend_pid)
            with pytest.raises(SourceError) as info:
                list(batches)
        finally:
            source.close()
    assert info.value.cause == "server_shutting_down" and info.value.retriable, str(info.value)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_connection_dropped_while_idle_is_closed_without_a_logged_traceback(caplog):
    """The parallel run's parent holds its connection while a worker reads; the server drops it."""
    source = extractor(PG_URL)
    with caplog.at_level(logging.WARNING):
        try:
            assert [rows for _, rows in source.batches(entity("SELECT 1"), {})] == [[(1,)]]
            _terminate(source._connection().connection.dbapi_connection.info.backend_pid)
        finally:
            source.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_url_to_a_database_that_does_not_exist_says_to_check_the_url_not_source_database():
    """A tenant with source.url has no source.database: the hint named that field all the same."""
    source = extractor("postgresql+psycopg://postgres@127.0.0.1:5432/idwell_no_such_db")
    try:
        with pytest.raises(SourceError) as info:
            list(source.batches(entity("SELECT 1"), {}))
    finally:
        source.close()
    error = info.value
    assert error.cause == "database_missing" and not error.retriable
    assert error.message.startswith("tenant 'acme': connect failed (database_missing): ")
    assert 'database "idwell_no_such_db" does not exist' in error.message
    assert error.hint.startswith("the database 'idwell_no_such_db' named in source.url does not exist on that "
                                 "server, or its user may not connect to it: check the database name in source.url")
    assert "source.database" not in error.hint
