"""The state store: what the engine remembers between runs, through SQLAlchemy Core.

An SQLite file by default (var/state.sqlite beside the tenants/ folder, see
engine.commands._common.default_state_url); a PostgreSQL URL
(`postgresql+psycopg://...`) lets several workers share one. Tables are created on first use;
`prefix` (and, on PostgreSQL, `schema`) keeps several stores apart in one database.

  runs          run history: tenant, start, end, status, whether --allow-deletes was used, counts per
                entity and action, findings by code, rows extracted per entity (the completeness
                check compares them with the last successful run), the run summary and, for a
                failed run, why (`idwell-sync history` shows it; docs/summary.md).
  email_winners tenant, e-mail -> the user external_id that holds it (stable dedup decisions).
  last_written  tenant, entity, external_id -> the record the engine last wrote (drift detection).
  pending_writes tenant, entity, external_id -> a write sent without an answer (a run stopped or
                killed with writes in flight, or its writes noted before they were sent), and
                those earlier such runs sent of the record, until a complete run settles them.
  locks         one row per tenant while a run holds it; see `StateStore.lock`.

This module opens the store: its tables, an SQLite store opened only to read, a failure of its
database as StateError. What is read and written in each table is a part of StateStore in a
module of its own: engine.state_runs (the run history), engine.state_winners (the e-mail
winners), engine.state_writes (what the engine last wrote, the writes in flight) and
engine.state_lock (the lock); engine.state_rows says how their rows hold values.

A failure of the store's database once it is open (a full disk, a damaged file, a store locked
by another process for longer than BUSY_TIMEOUT) is raised as StateError (exit code 10), naming
the tenant, the store and what to do.
"""
from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from engine.errors import StateError
from engine.redact import redact, shown_url
from engine.state_lock import LockInfo, RunLock
from engine.state_rows import MESSAGE_LIMIT, _clip
from engine.state_runs import SUCCESSFUL, RunHistory, RunRecord
from engine.state_winners import EmailWinners
from engine.state_writes import PendingWrite, WrittenRecords

__all__ = ["BUSY_TIMEOUT", "DEFAULT_URL", "MESSAGE_LIMIT", "SUCCESSFUL", "LockInfo", "PendingWrite", "RunRecord",
           "StateStore", "diagnose"]       # with the public names of its parts, importable from here too

DEFAULT_URL = "sqlite:///var/state.sqlite"
BUSY_TIMEOUT = 30.0
"""Seconds an SQLite store waits for another process's write to end before it gives up."""
CREATE_ATTEMPTS = 5
"""Times a process tries to create a new store's tables before its failure is the run's (StateStore._create)."""
ADDED_COLUMNS = (("action", "VARCHAR(10)"), ("earlier", "TEXT"))
"""The columns of pending_writes that came after stores were in use: a run adds them to an older
store's table (StateStore._add_missing_columns); a store opened only to read them reads NULL."""


def _read_only_sqlite(path: Path, timeout: float):
    """An SQLite state store opened only to read (`status`, `history`, `plan`), also by a user who may
    not write its folder (a monitoring account): a store in WAL mode needs its -shm file, which
    SQLite creates beside it unless the store is opened `immutable`. That is safe where no -wal
    file is there: no run has the store open to write (a run's connection keeps its -wal file
    until it closes). With a run writing, the -wal and -shm files are there to read with. Not
    where another program left a rollback journal beside it (engine.sqlite_journal): HalfWritten."""
    import sqlite3

    from engine.sqlite_journal import refuse_half_written
    uri = f"{path.resolve().as_uri()}?mode=ro"          # as the other read-only openers (_common, _store_portal)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()     # SQLite opens the file on first use
        return conn
    except sqlite3.OperationalError as exc:
        refuse_half_written(path, exc)
        if not path.exists() or Path(f"{path}-wal").exists():
            raise
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=timeout, check_same_thread=False)


def diagnose(url: sa.URL, exc: DBAPIError, busy_timeout: float | None = None) -> tuple[str, str]:
    """(why, what to do) for a failure of the database behind the store at `url`, also one that
    stops the store from opening (engine.commands._common.open_store)."""
    orig = exc.orig if exc.orig is not None else exc
    reason = _clip(" ".join(redact(str(orig)).split()) or type(orig).__name__, 300)   # masked before cut
    code = getattr(orig, "sqlite_errorname", "") or ""
    busy_timeout = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
    where = url.database if url.get_backend_name() == "sqlite" else shown_url(url)
    from engine.sqlite_journal import HalfWritten, roll_back_hint
    if isinstance(orig, HalfWritten):                   # its two paths whole: the message is no longer than that
        return " ".join(redact(str(orig)).split()), roll_back_hint(where, "a run does it too", "try again")
    if code.startswith("SQLITE_FULL"):
        return reason, (f"the disk that holds {where} is full: free space there (or move the store, "
                        f"see --state / $IDWELL_STATE_URL / the tenant's state_url), then run again")
    if code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return reason, (f"the file {where} is damaged: restore it from a backup, or move it aside so that "
                        f"the next run starts a new, empty store (which forgets the run history, the e-mail "
                        f"winners and what the engine last wrote); then run again")
    if url.get_backend_name() == "sqlite" and where and Path(where).is_dir():
        return (f"{reason} ({where} is a directory, not an SQLite file)",
                f"name the store's file, not a directory, with --state / $IDWELL_STATE_URL / the tenant's "
                f"state_url (e.g. sqlite:///{Path(where) / 'state.sqlite'}), or move the directory {where} out of "
                f"the way; then run again")
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return (f"{reason} (another process kept it locked for more than {busy_timeout:g} s)",
                f"find the process that holds {where} open (e.g. `fuser {where}`), let it finish or stop it, "
                f"then run again")
    if code:
        return reason, (f"check that {where} and its folder can be read and written by this user and that "
                        f"the disk works, then run again")
    return reason, ("check that the database server is up and reachable, that it has disk space and that "
                    "the store's user may write its tables (the server's log says why), then run again")


class StateStore(RunHistory, EmailWinners, WrittenRecords, RunLock):
    def __init__(self, url: str = DEFAULT_URL, *, prefix: str = "", schema: str | None = None,
                 lock_max_age: dt.timedelta = dt.timedelta(hours=6), busy_timeout: float | None = None,
                 create: bool = True):
        """`create=False`: only to read (`history`, `status`, `plan`), e.g. as a role that may only
        SELECT: nothing is created, and a table that is not there reads as empty."""
        self.url = sa.make_url(url)
        self.lock_max_age = lock_max_age
        self.busy_timeout = BUSY_TIMEOUT if busy_timeout is None else busy_timeout
        self._run_tenants: dict[str, str] = {}          # run_id -> tenant, for messages about a run
        kwargs: dict[str, Any] = {}
        sqlite_file = None
        if self.url.get_backend_name() == "sqlite":
            db = self.url.database
            if db and db != ":memory:" and not db.startswith("file:"):
                sqlite_file = Path(db)
                if create:
                    sqlite_file.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": self.busy_timeout}
            if sqlite_file is not None and not create:
                kwargs["creator"] = lambda: _read_only_sqlite(sqlite_file, self.busy_timeout)
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite" and "creator" not in kwargs:
            sa.event.listen(self.engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode = WAL"))
        self.metadata = sa.MetaData(schema=schema)
        m, p = self.metadata, prefix
        self._runs = sa.Table(
            f"{p}runs", m,
            sa.Column("run_id", sa.String(40), primary_key=True),
            sa.Column("tenant", sa.String(200), nullable=False, index=True),
            sa.Column("status", sa.String(40), nullable=False),
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("finished_at", sa.DateTime),
            sa.Column("allow_deletes", sa.Boolean, nullable=False, default=False),
            sa.Column("host", sa.String(255)), sa.Column("pid", sa.Integer),
            sa.Column("counts", sa.JSON), sa.Column("findings", sa.JSON), sa.Column("extracted", sa.JSON),
            sa.Column("summary", sa.JSON), sa.Column("message", sa.Text))
        self._winners = sa.Table(
            f"{p}email_winners", m,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("email", sa.String(320), primary_key=True),
            sa.Column("external_id", sa.String(200), nullable=False))
        self._written = sa.Table(
            f"{p}last_written", m,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("entity", sa.String(20), primary_key=True),
            sa.Column("external_id", sa.String(200), primary_key=True),
            sa.Column("record", sa.Text, nullable=False))
        self._pending = sa.Table(              # sent, but the answer never came (a run stopped mid-batch)
            f"{p}pending_writes", m,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("entity", sa.String(20), primary_key=True),
            sa.Column("external_id", sa.String(200), primary_key=True),
            sa.Column("record", sa.Text, nullable=False),
            sa.Column("action", sa.String(10)),         # added later: NULL in older rows (update)
            sa.Column("earlier", sa.Text))              # added later: JSON list; NULL: none noted before
        self._locks = sa.Table(
            f"{p}locks", m,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("since", sa.DateTime, nullable=False),
            sa.Column("token", sa.String(40), nullable=False))
        self._missing: set[str] = set()            # tables a store opened to read does not have (yet)
        self._old_columns: set[str] = set()        # ADDED_COLUMNS it does not have (an earlier version's store)
        if create:
            self._create(schema)
        else:                                       # a failure here is one to open the store (open_store)
            inspector = sa.inspect(self.engine)
            self._missing = {t.name for t in self._tables if not inspector.has_table(t.name, schema=schema)}
            if self._pending.name not in self._missing:
                have = {c["name"] for c in inspector.get_columns(self._pending.name, schema=schema)}
                self._old_columns = {name for name, _ in ADDED_COLUMNS if name not in have}

    @property
    def _tables(self) -> tuple[sa.Table, ...]:
        return self._runs, self._winners, self._written, self._pending, self._locks

    def _create(self, schema: str | None) -> None:
        """The store's tables, where they are not there yet. Runs of several tenants that share a
        store start together (one cron tick) and on the first night each creates it: on SQLite
        one process at a time (BEGIN IMMEDIATE: the others wait for its write lock, then find its
        tables), as the checks and CREATE TABLEs of a plain create_all interleave ("table ...
        already exists"). A store whose tables are all there is left as it is, without the lock.
        Making a new SQLite file a WAL store takes it whole for a moment: a process that meets
        that ("database is locked", at connect) tries again, as does one that loses a race on
        another server."""
        sqlite = self.url.get_backend_name() == "sqlite"
        for attempt in range(CREATE_ATTEMPTS):
            try:
                with self.engine.connect() as c:
                    inspector = sa.inspect(c)
                    if all(inspector.has_table(t.name, schema=schema) for t in self._tables):
                        break                   # made already (every night but the first): no write lock taken
                    if sqlite:
                        c.exec_driver_sql("BEGIN IMMEDIATE")
                    if schema:
                        c.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                    self.metadata.create_all(c)
                    c.commit()
                break
            except DBAPIError:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added to pending_writes since a store was made (ADDED_COLUMNS), added to its table
        in place. Runs that start together (one cron tick) open a store at the same moment: another
        process may add a column between this one's look at the table and its ALTER TABLE, which
        then fails ("duplicate column name" on SQLite, "already exists" on PostgreSQL). A column
        that is there once its ALTER TABLE failed is no failure; each column is added on its own,
        so that one added by another process does not undo this one's (a failed statement ends a
        PostgreSQL transaction)."""
        table = self._pending
        name = self.engine.dialect.identifier_preparer.format_table(table)
        def columns() -> set[str]:
            return {c["name"] for c in sa.inspect(self.engine).get_columns(table.name, schema=table.schema)}
        have = columns()
        for column, sql_type in ADDED_COLUMNS:
            if column in have:
                continue
            try:
                with self.engine.begin() as c:
                    c.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column} {sql_type}")
            except DBAPIError:
                if column not in columns():
                    raise

    @property
    def where(self) -> str:
        """The store's URL without its password (also one in its query, `?password=`), for messages."""
        return shown_url(self.url)

    @contextmanager
    def _failing(self, tenant: str | None, doing: str) -> Iterator[None]:
        """A failure of the store's database while `doing` is raised as StateError (exit 10)."""
        try:
            yield
        except DBAPIError as exc:
            reason, hint = self._diagnose(exc)
            who = f"tenant '{tenant}': " if tenant else ""
            raise StateError(f"{who}cannot {doing} the state store {self.where}: {reason}", hint=hint) from None

    def _diagnose(self, exc: DBAPIError) -> tuple[str, str]:
        """(why, what to do) for a failure of the database behind the store."""
        return diagnose(self.url, exc, self.busy_timeout)

    def _upsert(self, table: sa.Table, keys: list[str], values: list[str]):
        name = self.engine.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            raise NotImplementedError(f"the state store supports SQLite and PostgreSQL, not {name}")
        stmt = insert(table)
        return stmt.on_conflict_do_update(index_elements=keys, set_={v: stmt.excluded[v] for v in values})

    # -- housekeeping ------------------------------------------------------------------------
    def forget(self, tenant: str) -> None:
        """Everything the store remembers of a tenant, except a lock: its runs, e-mail winners,
        what was last written and the writes left pending (`idwell-sync demo --fresh`). A pending
        write kept would outlive the portal store it was sent to: the next run would count it as
        settled and take its value for one the engine wrote."""
        with self._failing(tenant, "forget the tenant in"), self.engine.begin() as c:
            for table in (self._runs, self._winners, self._written, self._pending):
                c.execute(table.delete().where(table.c.tenant == tenant))

    def drop(self) -> None:
        """Drop this store's tables (tests; decommissioning a store)."""
        self.metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()
