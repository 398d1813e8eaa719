"""Where the generated rows go: bulk writers for SQLite and PostgreSQL.

A sink replaces the demo tables (drop and create), takes rows in large batches in table order, and
creates the secondary indexes at the end. SQLite: one transaction of `executemany` batches with
journal and sync switched off for the load. PostgreSQL: psycopg `COPY ... FROM STDIN`.
Rows are tuples in `schema.COLUMNS` order; dates are ISO strings, decimals are strings.
"""
from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from engine.demo.schema import COLUMNS, TABLES, build_tables, create_indexes


class SQLiteSink:
    def __init__(self, url: str):
        self.engine: Engine = create_engine(url)
        self.tables = build_tables()
        md = next(iter(self.tables.values())).metadata
        with self.engine.begin() as conn:
            md.drop_all(conn, checkfirst=True)
            md.create_all(conn)
        self._raw = self.engine.raw_connection()
        self._cur = self._raw.cursor()
        self._cur.execute("PRAGMA journal_mode=OFF")
        self._cur.execute("PRAGMA synchronous=OFF")
        self._sql = {name: f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                     for name, cols in COLUMNS.items()}

    def write(self, table: str, rows: list[tuple]) -> None:
        self._cur.executemany(self._sql[table], rows)

    def finish(self) -> None:
        self._raw.commit()
        self._cur.execute("PRAGMA journal_mode=DELETE")
        self._cur.execute("PRAGMA synchronous=FULL")
        self._cur.close()
        self._raw.close()
        with self.engine.begin() as conn:
            create_indexes(conn, self.tables)
            conn.exec_driver_sql("ANALYZE")
        self.engine.dispose()


class PostgresSink:
    def __init__(self, url: str, schema: str | None):
        self.engine: Engine = create_engine(url)
        self.schema = schema
        self.tables = build_tables(schema)
        md = next(iter(self.tables.values())).metadata
        prep = self.engine.dialect.identifier_preparer
        with self.engine.begin() as conn:
            if schema:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {prep.quote_schema(schema)} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {prep.quote_schema(schema)}"))
            else:
                md.drop_all(conn, checkfirst=True)
            md.create_all(conn)
        self._raw = self.engine.raw_connection()
        self._pg = self._raw.driver_connection
        prefix = f"{prep.quote_schema(schema)}." if schema else ""
        self._copy = {name: f"COPY {prefix}{name} ({', '.join(cols)}) FROM STDIN" for name, cols in COLUMNS.items()}

    def write(self, table: str, rows: list[tuple]) -> None:
        with self._pg.cursor() as cur, cur.copy(self._copy[table]) as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def finish(self) -> None:
        self._raw.commit()
        self._raw.close()
        with self.engine.begin() as conn:
            create_indexes(conn, self.tables)
        prep = self.engine.dialect.identifier_preparer
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in TABLES:
                conn.exec_driver_sql(f"ANALYZE {prep.format_table(self.tables[name])}")
        self.engine.dispose()


def open_sink(url: str, schema: str | None = None):
    """A sink for `url`: sqlite (schema ignored) or postgresql (schema created or replaced)."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return SQLiteSink(url)
    if backend == "postgresql":
        return PostgresSink(url, schema)
    raise ValueError(f"the demo ERP writes sqlite or postgresql URLs, not {backend!r}")
