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
  locks         one row per tenant while a run holds it; see `StateStore.lock`.

A failure of the store's database once it is open (a full disk, a damaged file, a store locked
by another process for longer than BUSY_TIMEOUT) is raised as StateError (exit code 10), naming
the tenant, the store and what to do.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from engine._stop import whole
from engine.errors import LockedError, StateError
from engine.redact import redact, shown_url

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///var/state.sqlite"
SUCCESSFUL = ("ok", "rejected")       # runs whose extract is a baseline for the completeness check
_ACTIONS = ("create", "update", "delete", "unchanged", "held", "rejected")
_CHUNK = 5000
_HOST = socket.gethostname()
MESSAGE_LIMIT = 500                   # characters of a failed run's message kept in the history
BUSY_TIMEOUT = 30.0
"""Seconds an SQLite store waits for another process's write to end before it gives up."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    tenant: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    allow_deletes: bool
    counts: dict[str, dict[str, int]] | None
    findings: dict[str, int] | None
    extracted: dict[str, int] | None
    summary: dict[str, Any] | None
    message: str | None


class PendingWrite(NamedTuple):
    """A write sent to the portal without an answer (StateStore.remember_pending)."""
    action: str                       # create | update (a row of a version before the column: update)
    record: dict[str, Any]


@dataclass(frozen=True)
class LockInfo:
    tenant: str
    host: str
    pid: int
    since: dt.datetime
    token: str
    took_over: str | None = None      # why a stale lock was taken over, if it was


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)      # stored as naive UTC


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _span(td: dt.timedelta) -> str:
    seconds = int(td.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 and seconds else f"{seconds // 60} min"


def _holder(lock: LockInfo) -> str:
    return f"host {lock.host!r}, pid {lock.pid}, since {lock.since:%Y-%m-%d %H:%M:%S} UTC"


def _clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _shown(message: str | None) -> str | None:
    """A stored message as history and status show it: masked again (engine.redact's shapes), for
    rows that a version without masking, or a store shared with another tool, wrote."""
    return redact(message) if message else message


def _dump(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)


def _read_only_sqlite(path: Path, timeout: float):
    """An SQLite state store opened only to read (`status`, `history`, `plan`), also by a user who may
    not write its folder (a monitoring account): a store in WAL mode needs its -shm file, which
    SQLite creates beside it unless the store is opened `immutable`. That is safe where no -wal
    file is there: no run has the store open to write (a run's connection keeps its -wal file
    until it closes). With a run writing, the -wal and -shm files are there to read with."""
    import sqlite3
    uri = f"{path.resolve().as_uri()}?mode=ro"          # as the other read-only openers (_common, _store_portal)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()     # SQLite opens the file on first use
        return conn
    except sqlite3.OperationalError:
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


class StateStore:
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
            sa.Column("action", sa.String(10)))         # added later: NULL in older rows (update)
        self._locks = sa.Table(
            f"{p}locks", m,
            sa.Column("tenant", sa.String(200), primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("since", sa.DateTime, nullable=False),
            sa.Column("token", sa.String(40), nullable=False))
        self._missing: set[str] = set()            # tables a store opened to read does not have (yet)
        if create:
            self._create(schema)
        else:                                       # a failure here is one to open the store (open_store)
            inspector = sa.inspect(self.engine)
            self._missing = {t.name for t in (self._runs, self._winners, self._written, self._pending, self._locks)
                             if not inspector.has_table(t.name, schema=schema)}

    def _create(self, schema: str | None) -> None:
        for attempt in (1, 2):          # two processes creating the tables at once: the loser retries
            try:
                with self.engine.begin() as c:
                    if schema:
                        c.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                    self.metadata.create_all(c)
                break
            except DBAPIError:
                if attempt == 2:
                    raise
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added since a store was made (pending_writes.action), added to its table in place;
        a second process adding the same column at once is no failure."""
        table = self._pending
        for attempt in (1, 2):
            have = {c["name"] for c in sa.inspect(self.engine).get_columns(table.name, schema=table.schema)}
            if "action" in have:
                return
            try:
                with self.engine.begin() as c:
                    c.exec_driver_sql(f"ALTER TABLE {self.engine.dialect.identifier_preparer.format_table(table)} "
                                      f"ADD COLUMN action VARCHAR(10)")
                return
            except DBAPIError:
                if attempt == 2:
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

    # -- run history -------------------------------------------------------------------------
    def start_run(self, tenant: str, *, allow_deletes: bool = False) -> str:
        run_id = uuid.uuid4().hex
        with self._failing(tenant, "record the start of a run in"), self.engine.begin() as c:
            c.execute(self._runs.insert().values(run_id=run_id, tenant=tenant, status="running", started_at=_now(),
                                                allow_deletes=allow_deletes, host=_HOST, pid=os.getpid()))
        self._run_tenants[run_id] = tenant
        return run_id

    def record_locked(self, tenant: str, message: str, *, allow_deletes: bool = False) -> None:
        """A run that did not start because another run of the tenant held its lock: a closed row of
        its own (status `locked`), so that `status` and `history` show the night's run was refused,
        not missed."""
        now = _now()
        with self._failing(tenant, "record a run refused by the run lock in"), self.engine.begin() as c:
            c.execute(self._runs.insert().values(run_id=uuid.uuid4().hex, tenant=tenant, status="locked",
                                                started_at=now, finished_at=now, allow_deletes=allow_deletes,
                                                host=_HOST, pid=os.getpid(), message=_clip(message)))

    def finish_run(self, run_id: str, *, status: str, summary: Mapping[str, Any] | None = None,
                   extracted: Mapping[str, int] | None = None, counts: Mapping[str, Mapping[str, int]] | None = None,
                   findings: Mapping[str, int] | None = None, message: str | None = None) -> None:
        """Close a run. counts and findings default to those of the run summary (engine.report);
        `message` says why a run failed (one line, at most MESSAGE_LIMIT characters are kept)."""
        if counts is None and summary is not None:
            counts = {e: {a: c.get(a, 0) for a in _ACTIONS} for e, c in summary.get("entities", {}).items()}
            for e, found in (summary.get("settled") or {}).items():      # writes earlier runs left unconfirmed
                counts.setdefault(e, {}).update({f"settled_{k}": n for k, n in found.items()})
        if findings is None and summary is not None:
            findings = summary.get("findings")
        with self._failing(self._run_tenants.get(run_id), f"record the end of run {run_id} in"), \
                self.engine.begin() as c:
            done = c.execute(self._runs.update().where(self._runs.c.run_id == run_id).values(
                status=status, finished_at=_now(), counts=counts, findings=findings,
                extracted=dict(extracted) if extracted is not None else None,
                summary=dict(summary) if summary is not None else None,
                message=_clip(message) if message is not None else None))
        self._run_tenants.pop(run_id, None)
        if done.rowcount != 1:
            raise KeyError(f"run {run_id!r} is not in the state store {self.where}")

    def runs(self, tenant: str, limit: int = 20) -> list[RunRecord]:
        """The tenant's latest runs, newest first."""
        if self._runs.name in self._missing:
            return []
        r = self._runs.c
        with self._failing(tenant, "read the run history from"), self.engine.connect() as c:
            rows = c.execute(sa.select(self._runs).where(r.tenant == tenant)
                             .order_by(r.started_at.desc(), r.run_id).limit(limit)).mappings().all()
        return [self._run(row) for row in rows]

    def last_successful_run(self, tenant: str) -> RunRecord | None:
        if self._runs.name in self._missing:
            return None
        r = self._runs.c
        with self._failing(tenant, "read the last successful run from"), self.engine.connect() as c:
            row = c.execute(sa.select(self._runs).where(r.tenant == tenant, r.status.in_(SUCCESSFUL))
                            .order_by(r.finished_at.desc()).limit(1)).mappings().first()
        return self._run(row) if row else None

    def last_extracted(self, tenant: str) -> dict[str, int]:
        """Rows extracted per entity by the last successful run ({} before the first one)."""
        last = self.last_successful_run(tenant)
        return dict(last.extracted or {}) if last else {}

    def last_runs(self, tenants: Iterable[str], *, skip: Iterable[str] = ()) -> dict[str, RunRecord]:
        """Each tenant's latest run (the one `runs` lists first), for those of `tenants` that have
        any: one query per 500 tenants (`idwell-sync status`). `skip`: statuses passed over (e.g.
        `locked`: the latest run that was not refused by the run lock)."""
        if self._runs.name in self._missing:
            return {}
        r = self._runs.c
        names = list(dict.fromkeys(tenants))
        skipped = list(skip)
        out: dict[str, RunRecord] = {}
        with self._failing(None, "read the run history from"), self.engine.connect() as c:
            for start in range(0, len(names), 500):
                newest = sa.func.row_number().over(partition_by=r.tenant, order_by=(r.started_at.desc(), r.run_id))
                ranked = sa.select(self._runs, newest.label("newest")) \
                    .where(r.tenant.in_(names[start:start + 500]), r.status.not_in(skipped)).subquery()
                rows = c.execute(sa.select(*(ranked.c[col.name] for col in self._runs.columns))
                                 .where(ranked.c.newest == 1)).mappings().all()
                out.update((row["tenant"], self._run(row)) for row in rows)
        return out

    @staticmethod
    def _run(row: Mapping[str, Any]) -> RunRecord:
        return RunRecord(row["run_id"], row["tenant"], row["status"], _utc(row["started_at"]),
                         _utc(row["finished_at"]), bool(row["allow_deletes"]), row["counts"], row["findings"],
                         row["extracted"], row["summary"], _shown(row["message"]))

    def forget(self, tenant: str) -> None:
        """Everything the store remembers of a tenant, except a lock: its runs, e-mail winners and
        what was last written (`idwell-sync demo --fresh`)."""
        with self._failing(tenant, "forget the tenant in"), self.engine.begin() as c:
            for table in (self._runs, self._winners, self._written):
                c.execute(table.delete().where(table.c.tenant == tenant))

    # -- e-mail winners ----------------------------------------------------------------------
    def winners(self, tenant: str) -> dict[str, str]:
        if self._winners.name in self._missing:
            return {}
        w = self._winners.c
        with self._failing(tenant, "read the e-mail winners from"), self.engine.connect() as c:
            return dict(c.execute(sa.select(w.email, w.external_id).where(w.tenant == tenant)).all())

    def replace_winners(self, tenant: str, winners: Mapping[str, str]) -> None:
        rows = [{"tenant": tenant, "email": e, "external_id": i} for e, i in winners.items()]
        with self._failing(tenant, "record the e-mail winners in"), self.engine.begin() as c:
            c.execute(self._winners.delete().where(self._winners.c.tenant == tenant))
            for start in range(0, len(rows), _CHUNK):
                c.execute(self._winners.insert(), rows[start:start + _CHUNK])

    # -- what the engine last wrote ----------------------------------------------------------
    def last_written(self, tenant: str, entity: str, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """external_id -> the record the engine last wrote, for those of `external_ids` it wrote."""
        if self._written.name in self._missing:
            return {}
        w = self._written.c
        ids = list(external_ids)
        out: dict[str, dict[str, Any]] = {}
        with self._failing(tenant, f"read what the engine last wrote ({entity}) from"), self.engine.connect() as c:
            for start in range(0, len(ids), 2000):
                rows = c.execute(sa.select(w.external_id, w.record).where(
                    w.tenant == tenant, w.entity == entity, w.external_id.in_(ids[start:start + 2000])))
                out.update((i, json.loads(rec)) for i, rec in rows)
        return out

    def iter_written(self, tenant: str, entity: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._written.name in self._missing:
            return
        w = self._written.c
        with self._failing(tenant, f"read what the engine last wrote ({entity}) from"), self.engine.connect() as c:
            rows = c.execution_options(stream_results=True, yield_per=_CHUNK).execute(
                sa.select(w.external_id, w.record).where(w.tenant == tenant, w.entity == entity))
            for i, rec in rows:
                yield i, json.loads(rec)

    def remember_written(self, tenant: str, entity: str, records: Iterable[Mapping[str, Any]],
                         gone: Iterable[str] = ()) -> None:
        """Upsert the records just written (keyed by their external_id) and forget the archived ones."""
        table, w = self._written, self._written.c
        stmt = self._upsert(table, ["tenant", "entity", "external_id"], ["record"])
        n = 0
        doing = f"record what the run wrote ({entity}) in"
        with self._failing(tenant, doing), self.engine.begin() as c:
            chunk: list[dict[str, str]] = []
            for rec in records:
                chunk.append({"tenant": tenant, "entity": entity, "external_id": rec["external_id"], "record": _dump(rec)})
                if len(chunk) >= _CHUNK:
                    c.execute(stmt, chunk)
                    n, chunk = n + len(chunk), []
            if chunk:
                c.execute(stmt, chunk)
                n += len(chunk)
            gone = list(gone)
            for start in range(0, len(gone), 500):
                c.execute(table.delete().where(w.tenant == tenant, w.entity == entity,
                                               w.external_id.in_(gone[start:start + 500])))
        if n >= 10_000 and self.engine.dialect.name == "postgresql":
            # fresh statistics, or PostgreSQL's planner may scan a tenant's rows for each id lookup
            with self._failing(tenant, doing), self.engine.begin() as c:
                c.exec_driver_sql(f"ANALYZE {table.fullname}")

    def remember_pending(self, tenant: str, entity: str, records: Iterable[Mapping[str, Any]], *,
                         action: str = "update") -> None:
        """Records sent to the portal whose answer never came (a run stopped with batches in flight,
        or killed after it noted its writes ahead): the portal may hold them or not. `action`: how
        they were sent (`create`, `update`). The next run's drift check takes such a value for one
        the engine wrote, not for an edit in the portal, and compares a record created so with what
        was sent; the next complete run settles them (engine.record.record) and forgets them
        (forget_pending)."""
        stmt = self._upsert(self._pending, ["tenant", "entity", "external_id"], ["record", "action"])
        rows = [{"tenant": tenant, "entity": entity, "external_id": r["external_id"], "record": _dump(r),
                 "action": action} for r in records]
        if rows:
            with self._failing(tenant, f"record the writes in flight ({entity}) in"), self.engine.begin() as c:
                for start in range(0, len(rows), _CHUNK):
                    c.execute(stmt, rows[start:start + _CHUNK])

    def pending_written(self, tenant: str, entity: str,
                        external_ids: Iterable[str] | None = None) -> dict[str, PendingWrite]:
        """external_id -> the write sent without an answer (remember_pending), for those of
        `external_ids` (None: all of the entity's: a run's batches in flight, or the writes a run
        noted ahead)."""
        if self._pending.name in self._missing:
            return {}
        q, out = self._pending.c, {}
        where = [q.tenant == tenant, q.entity == entity]
        columns = (q.external_id, q.action, q.record)
        with self._failing(tenant, f"read the writes in flight ({entity}) from"), self.engine.connect() as c:
            if external_ids is None:
                rows = c.execute(sa.select(*columns).where(*where))
                return {i: PendingWrite(a or "update", json.loads(rec)) for i, a, rec in rows}
            ids = list(external_ids)
            for start in range(0, len(ids), 2000):
                rows = c.execute(sa.select(*columns).where(*where, q.external_id.in_(ids[start:start + 2000])))
                out.update((i, PendingWrite(a or "update", json.loads(rec))) for i, a, rec in rows)
        return out

    def pending_ids(self, tenant: str, entity: str) -> set[str]:
        """The external_ids of the entity's writes sent without an answer (remember_pending)."""
        if self._pending.name in self._missing:
            return set()
        q = self._pending.c
        with self._failing(tenant, f"read the writes in flight ({entity}) from"), self.engine.connect() as c:
            return set(c.execute(sa.select(q.external_id).where(q.tenant == tenant, q.entity == entity)).scalars())

    def forget_pending(self, tenant: str, entity: str, external_ids: Iterable[str] | None = None) -> None:
        """Forget the entity's pending writes (remember_pending): all, or those of `external_ids`."""
        q = self._pending.c
        where = [q.tenant == tenant, q.entity == entity]
        ids = None if external_ids is None else list(external_ids)
        if ids == []:
            return
        with self._failing(tenant, f"forget the writes in flight ({entity}) in"), self.engine.begin() as c:
            if ids is None:
                c.execute(self._pending.delete().where(*where))
            for start in range(0, len(ids or ()), 500):
                c.execute(self._pending.delete().where(*where, q.external_id.in_(ids[start:start + 500])))

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

    # -- the per-tenant lock -----------------------------------------------------------------
    @contextmanager
    def lock(self, tenant: str) -> Iterator[LockInfo]:
        """Hold the tenant's run lock: raises LockedError while another live run holds it.

        A lock is stale, and taken over with a warning, when its holder ran on this host and its
        process is gone, or when it is older than `lock_max_age` (a crashed run on another host).
        Runs of the tenant still 'running' in the history when the lock is taken (killed, or
        their end could not be recorded) are closed as failed, saying so.
        """
        info = None
        try:
            with whole():                      # a stop as the lock is written: released below, not left behind
                info = self._acquire(tenant)
            yield info
        except BaseException:
            if info is not None:
                try:
                    self._release(info)
                except StateError as exc:      # the run's own error is what it reports
                    log.warning("%s", exc)
            raise
        self._release(info)

    def locks(self, tenants: Iterable[str]) -> dict[str, LockInfo]:
        """The run locks held now, of those of `tenants` that have one (stale ones too: `stale`)."""
        if self._locks.name in self._missing:
            return {}
        lk = self._locks.c
        names = list(dict.fromkeys(tenants))
        out: dict[str, LockInfo] = {}
        with self._failing(None, "read the run locks from"), self.engine.connect() as c:
            for start in range(0, len(names), 500):
                rows = c.execute(sa.select(self._locks).where(lk.tenant.in_(names[start:start + 500]))).mappings()
                out.update((row["tenant"], self._lock_info(row)) for row in rows)
        return out

    def stale(self, lock: LockInfo) -> str | None:
        """Why the next run of the tenant takes `lock` over (its process on this host is gone, or
        it is older than lock_max_age: a crashed run on another host); None while its run may be
        under way."""
        if lock.host == _HOST and not _pid_alive(lock.pid):
            return f"its process is gone ({_holder(lock)})"
        if dt.datetime.now(dt.timezone.utc) - lock.since > self.lock_max_age:
            return f"it is older than the maximum age of {_span(self.lock_max_age)} ({_holder(lock)})"
        return None

    @staticmethod
    def _lock_info(row: Mapping[str, Any]) -> LockInfo:
        return LockInfo(row["tenant"], row["host"], row["pid"], _utc(row["since"]), row["token"])

    def _release(self, info: LockInfo) -> None:
        with self._failing(info.tenant, "release the run lock in"), self.engine.begin() as c:
            left = c.execute(self._locks.delete().where(self._locks.c.tenant == info.tenant,
                                                         self._locks.c.token == info.token))
        if left.rowcount != 1:
            log.warning("tenant '%s': the run lock was taken over by another run while this one held it", info.tenant)

    def _acquire(self, tenant: str) -> LockInfo:
        with self._failing(tenant, "take the run lock in"):
            return self._take(tenant)

    def _take(self, tenant: str) -> LockInfo:
        lk = self._locks.c
        for _ in range(5):
            mine = {"tenant": tenant, "host": _HOST, "pid": os.getpid(), "since": _now(), "token": uuid.uuid4().hex}
            try:
                with self.engine.begin() as c:
                    c.execute(self._locks.insert().values(**mine))
                    ended = self._close_unfinished(c, tenant, mine["since"], None)
                if ended:
                    log.warning("tenant '%s': %s", tenant, ended)
                return LockInfo(tenant, _HOST, mine["pid"], _utc(mine["since"]), mine["token"])
            except IntegrityError:
                pass
            with self.engine.connect() as c:
                holder = c.execute(sa.select(self._locks).where(lk.tenant == tenant)).mappings().first()
            if holder is None:
                continue                                # released in between: try again
            held = self._lock_info(holder)
            why = self.stale(held)
            if why is None:
                age = dt.datetime.now(dt.timezone.utc) - held.since
                raise LockedError(
                    f"tenant '{tenant}' is locked by another run: {_holder(held)} ({_span(age)} ago)",
                    hint=f"wait for that run to finish. A lock whose process died on another host is taken over "
                         f"after {_span(self.lock_max_age)}; the lock is the row of tenant '{tenant}' in table "
                         f"{self._locks.fullname} of {self.where}")
            with self.engine.begin() as c:
                taken = c.execute(self._locks.update().where(lk.tenant == tenant, lk.token == holder["token"])
                                  .values(**{k: v for k, v in mine.items() if k != "tenant"}))
                ended = self._close_unfinished(c, tenant, mine["since"], holder) if taken.rowcount == 1 else ""
            if taken.rowcount == 1:
                log.warning("tenant '%s': took over a stale run lock: %s%s", tenant, why, f"; {ended}" if ended else "")
                return LockInfo(tenant, _HOST, mine["pid"], _utc(mine["since"]), mine["token"], took_over=why)
        raise LockedError(f"tenant '{tenant}': could not take the run lock, other runs keep taking it",
                          hint="check the scheduler: several runs of this tenant are starting at once")

    def _close_unfinished(self, c: sa.Connection, tenant: str, now: dt.datetime,
                          stale: Mapping[str, Any] | None) -> str:
        """Inside the transaction that takes the tenant's lock: close the tenant's runs still
        'running' as failed (no run of the tenant can be under way without the lock), saying
        why, and return what was closed ("" if nothing was). `stale`: the lock row taken over."""
        r = self._runs.c
        rows = c.execute(sa.select(r.run_id, r.host, r.pid, r.started_at)
                         .where(r.tenant == tenant, r.status == "running", r.started_at <= now)).all()
        at = f"{_utc(now):%Y-%m-%d %H:%M:%S} UTC"
        for run_id, host, pid, _ in rows:
            gone = host == _HOST and pid is not None and not _pid_alive(pid)
            who = f"process {pid} on {host}" + (" gone" if gone else "")
            if stale is None or (stale["host"], stale["pid"]) != (host, pid):
                why = f"({who}; its end was never recorded, found when the lock was taken at {at})"
            elif gone:
                why = f"({who}; its lock was taken over at {at})"
            else:
                why = (f"within the lock's maximum age of {_span(self.lock_max_age)} "
                       f"({who}; its lock was taken over at {at})")
            c.execute(self._runs.update().where(r.run_id == run_id, r.status == "running").values(
                status="failed", message=f"ended without finishing {why}"))   # its end is not known
        if not rows:
            return ""
        starts = ", ".join(f"{_utc(started):%Y-%m-%d %H:%M:%S}" for *_, started in rows)
        return f"{len(rows)} run(s) that ended without finishing (started {starts} UTC) recorded as failed"

    # -- housekeeping ------------------------------------------------------------------------
    def drop(self) -> None:
        """Drop this store's tables (tests; decommissioning a store)."""
        self.metadata.drop_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()
