"""The state store on SQLite and on the PostgreSQL server: run history, winners, last written, lock."""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.errors import LockedError, StateError
from engine.state import PendingWrite, StateStore
from pgcluster import require

PG_URL = os.environ.get("IDWELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


@pytest.fixture
def pg_url():
    problem = _pg_reachable()
    require(not problem, f"PostgreSQL at {PG_URL} is unreachable: {problem}")
    return PG_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    """(url, prefix) of an empty state store; PostgreSQL tables get a prefix unique to the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'state.sqlite'}", ""
        return
    request.getfixturevalue("pg_url")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    yield PG_URL, prefix
    cleanup = StateStore(PG_URL, prefix=prefix)
    cleanup.drop()
    cleanup.close()


@pytest.fixture
def state(db):
    url, prefix = db
    s = StateStore(url, prefix=prefix)
    yield s
    s.close()


def test_the_sqlite_file_and_its_folder_are_created_on_first_use(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path / 'deep' / 'var' / 'state.sqlite'}")
    assert s.winners("acme") == {}
    s.close()
    assert (tmp_path / "deep" / "var" / "state.sqlite").is_file()


def test_run_history_records_a_run_and_the_last_successful_extract(state):
    assert state.last_extracted("acme") == {}
    first = state.start_run("acme")
    summary = {"entities": {"users": {"extracted": 10, "create": 7, "update": 1, "delete": 0, "unchanged": 2,
                                      "held": 0, "rejected": 1}},
               "findings": {"email_shared": 2, "rejected": 1}}
    state.finish_run(first, status="rejected", summary=summary, extracted={"users": 10, "units": 4})
    second = state.start_run("acme", allow_deletes=True)
    state.finish_run(second, status="failed", message="the ERP could not be reached")
    state.finish_run(state.start_run("other"), status="ok", extracted={"users": 99})

    latest, earlier = state.runs("acme")
    assert (latest.run_id, latest.status, latest.allow_deletes) == (second, "failed", True)
    assert latest.message == "the ERP could not be reached"
    assert (earlier.run_id, earlier.status, earlier.allow_deletes) == (first, "rejected", False)
    assert earlier.counts["users"] == {"create": 7, "update": 1, "delete": 0, "unchanged": 2, "held": 0, "rejected": 1}
    assert earlier.findings == {"email_shared": 2, "rejected": 1}
    assert earlier.started_at <= earlier.finished_at
    assert earlier.finished_at.tzinfo is not None
    assert state.last_extracted("acme") == {"users": 10, "units": 4}      # the failed run is no baseline
    running = state.start_run("acme")
    assert state.runs("acme")[0].status == "running" and state.runs("acme")[0].run_id == running


def test_finishing_an_unknown_run_is_an_error(state):
    with pytest.raises(KeyError, match="nope"):
        state.finish_run("nope", status="ok")


def test_winners_are_replaced_per_tenant(state):
    state.replace_winners("acme", {"max@web.de": "P1", "grete@web.de": "P2"})
    state.replace_winners("other", {"max@web.de": "X9"})
    assert state.winners("acme") == {"max@web.de": "P1", "grete@web.de": "P2"}
    state.replace_winners("acme", {"max@web.de": "P3"})
    assert state.winners("acme") == {"max@web.de": "P3"}
    assert state.winners("other") == {"max@web.de": "X9"}


def test_last_written_upserts_forgets_and_reads_back_by_id(state):
    recs = [{"external_id": f"P{i}", "last_name": "Müller", "email": None, "area_m2": 1.5} for i in range(12_000)]
    state.remember_written("acme", "users", recs)
    state.remember_written("acme", "units", [{"external_id": "P1", "number": "007"}])
    state.remember_written("acme", "users", [{"external_id": "P1", "last_name": "Meier", "email": "m@web.de"}],
                           gone=["P2", "P3"])
    got = state.last_written("acme", "users", ["P0", "P1", "P2", "P11999", "P12000"])
    assert got == {"P0": recs[0], "P1": {"external_id": "P1", "last_name": "Meier", "email": "m@web.de"},
                   "P11999": recs[11999]}
    assert state.last_written("acme", "units", ["P1"]) == {"P1": {"external_id": "P1", "number": "007"}}
    assert state.last_written("other", "users", ["P1"]) == {}
    assert sum(1 for _ in state.iter_written("acme", "users")) == 11_998


@pytest.mark.parametrize("columns", [(), ("action",)], ids=["before action", "before earlier"])
def test_pending_writes_keep_every_value_noted_and_a_store_made_before_their_columns_gains_them(db, columns):
    """pending_writes.action (create or update) and .earlier (what runs before noted of the record)
    came after stores were in use. Such a store, opened only to read (plan), reads its rows as they
    were noted: updates, nothing noted before; opened to run, its table gains the columns. A record
    noted again keeps the values noted of it before, once each, and a create stays a create."""
    url, prefix = db
    engine = sa.create_engine(url)
    old = sa.Table(f"{prefix}pending_writes", sa.MetaData(),
                   *(sa.Column(n, sa.String(200), primary_key=True) for n in ("tenant", "entity", "external_id")),
                   sa.Column("record", sa.Text, nullable=False), *(sa.Column(n, sa.String(10)) for n in columns))
    if url.startswith("sqlite"):
        (Path(engine.url.database).parent).mkdir(parents=True, exist_ok=True)
    with engine.begin() as c:                       # as a version before the columns made it
        old.create(c)
        c.execute(old.insert().values(tenant="acme", entity="users", external_id="P1", record='{"external_id": "P1"}'))
    engine.dispose()
    reader = StateStore(url, prefix=prefix, create=False)
    try:
        assert reader.pending_written("acme", "users", ["P1"]) == {"P1": PendingWrite("update", {"external_id": "P1"})}
    finally:
        reader.close()
    state = StateStore(url, prefix=prefix)
    try:
        assert state.pending_written("acme", "users") == {"P1": PendingWrite("update", {"external_id": "P1"})}
        state.remember_pending("acme", "users", [{"external_id": "P2", "last_name": "Neu"}], action="create")
        state.remember_pending("acme", "users", [{"external_id": "P1", "last_name": "Alt"}])
        state.remember_pending("acme", "users", [{"external_id": "P2", "last_name": "Neuer"},
                                                 {"external_id": "P1", "last_name": "Alt"}])
        got = state.pending_written("acme", "users", ["P1", "P2", "P3"])
        assert got == {"P1": PendingWrite("update", {"external_id": "P1", "last_name": "Alt"}, ({"external_id": "P1"},)),
                       "P2": PendingWrite("create", {"external_id": "P2", "last_name": "Neuer"},
                                          ({"external_id": "P2", "last_name": "Neu"},))}
        assert state.pending_ids("acme", "users") == {"P1", "P2"}
        state.forget_pending("acme", "users", ["P2"])
        assert state.pending_ids("acme", "users") == {"P1"}
        StateStore(url, prefix=prefix).close()      # opened again: the columns are there already
    finally:
        state.close()

def test_a_record_noted_again_and_again_keeps_its_most_recent_values_for_the_drift_check(state):
    """Runs killed one after the other while the ERP renames a unit: each run notes its new value.
    The pending write keeps the last value and the EARLIER_KEPT before it, the oldest drop off; the
    drift check still takes each value kept for the engine's own, and a value dropped is drift
    again."""
    from engine.entity_data import Rec
    from engine.plan import diff_entity
    from engine.state_writes import EARLIER_KEPT
    unit = {"external_id": "U1", "building_id": "B1", "number": "1", "name": None, "type": "apartment",
            "floor": None, "area_m2": None}                  # the portal's fields in their order
    state.remember_written("acme", "units", [{**unit, "name": "first"}])
    for night in range(EARLIER_KEPT + 4):
        state.remember_pending("acme", "units", [{**unit, "name": f"night {night}"}])
    state.remember_pending("acme", "units", [{**unit, "name": "night 5"}])    # a value noted before: once
    [noted] = state.pending_written("acme", "units", ["U1"]).values()
    assert noted.record["name"] == "night 5"
    kept = [f"night {n}" for n in (EARLIER_KEPT + 3, *range(EARLIER_KEPT + 2, 5, -1), 4, 3)]
    assert [r["name"] for r in noted.earlier] == kept[:EARLIER_KEPT]
    desired = {"U1": Rec("1", {**unit, "name": "from the ERP"})}

    def drift(portal_name: str) -> list[str]:
        findings = []
        diff_entity("units", desired, {"U1": tuple({**unit, "name": portal_name}.values())},
                    lambda ids: state.last_written("acme", "units", ids), findings,
                    pending=lambda ids: state.pending_written("acme", "units", ids))
        return [f.message for f in findings if f.code == "drift"]

    assert [name for name in (f"night {n}" for n in range(EARLIER_KEPT + 4)) if drift(name)] == \
        ["night 0", "night 1", "night 2"]                 # dropped: the oldest; the others are the engine's
    assert drift("first") == [] and drift("edited in the portal") != []


ROUNDS = {"sqlite": 80, "postgresql": 15}
"""How often the processes of test_processes_opening_a_store_of_an_earlier_version_at_once_all_open_it
open one store at once. Before they could, four of them on two cores failed on SQLite in about one
round of twenty (the first added one column and not yet the other while two more looked); on
PostgreSQL, whose ALTER TABLE waits for the other process's transaction, they did not fail, and
fewer rounds show that they still open it."""
OPENER = """
import sys, time
from engine.state import StateStore
print("ready", flush=True)
for line in sys.stdin:             # a line: when, and which store (url, prefix, schema) to open as a run opens it
    at, url, prefix, schema = line.rstrip("\\n").split("\\t")
    time.sleep(max(0.0, float(at) - time.time()))   # all together, not one after the other as their lines came
    try:
        StateStore(url, prefix=prefix, schema=schema or None).close()
        print("opened", flush=True)
    except Exception as exc:  # noqa: BLE001 - the test shows what failed
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", flush=True)
"""


def _store_before_the_added_columns(url: str, prefix: str, schema: str | None) -> None:
    """A state store as a version before pending_writes.action and .earlier made it."""
    store = StateStore(url, prefix=prefix, schema=schema)
    try:
        name = store.engine.dialect.identifier_preparer.format_table(store._pending)
        with store.engine.begin() as c:
            for column in ("earlier", "action"):
                c.exec_driver_sql(f"ALTER TABLE {name} DROP COLUMN {column}")
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_processes_opening_a_store_of_an_earlier_version_at_once_all_open_it(backend, tmp_path, request):
    """Runs of several tenants that share a store start together (one cron tick, `xargs -P`) and
    each opens it to run: on a store an earlier version made, each finds pending_writes without
    its later columns and adds them. One that finds a column another one added meanwhile opens the
    store all the same, instead of failing the run with exit 10 ("duplicate column name"). The
    processes open one store at once, round after round, so that they meet in that moment."""
    url, schema = _open_at_once(backend, tmp_path, request, ROUNDS[backend], _store_before_the_added_columns)
    engine = sa.create_engine(url[0])
    assert {"action", "earlier"} <= {c["name"] for c in sa.inspect(engine).get_columns(
        f"{url[1]}pending_writes", schema=schema or None)}
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_processes_creating_a_new_store_at_once_all_open_it(backend, tmp_path, request):
    """The first night of tenants that share a store: their runs start together and each creates
    the store's tables. Before, on SQLite, nearly every round had a run fail with exit 10
    ("table locks already exists", or "database is locked" as the new file became a WAL store)."""
    url, schema = _open_at_once(backend, tmp_path, request, ROUNDS[backend] // 2, None)
    engine = sa.create_engine(url[0])
    assert {f"{url[1]}{t}" for t in ("runs", "email_winners", "last_written", "pending_writes", "locks")} <= \
        set(sa.inspect(engine).get_table_names(schema=schema or None))
    engine.dispose()


def _open_at_once(backend: str, tmp_path, request, rounds: int, prepare) -> tuple[tuple[str, str], str]:
    """Four processes open one store at the same moment as a run opens it (OPENER), `rounds` times,
    each round a store of its own, made by `prepare(url, prefix, schema)` first (None: a new
    store); every process must open it. Returns the last store's (url, prefix) and the schema."""
    if backend == "sqlite":
        schema = ""
        stores = [(f"sqlite:///{tmp_path / f'state{i}.sqlite'}", "") for i in range(rounds)]
    else:
        url = request.getfixturevalue("pg_url")
        schema = f"s{uuid.uuid4().hex[:12]}"
        stores = [(url, f"r{i}_") for i in range(rounds)]

        def drop() -> None:                 # after the test has looked at the last store
            engine = sa.create_engine(url)
            with engine.begin() as c:
                c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            engine.dispose()
        request.addfinalizer(drop)
    openers = [subprocess.Popen([sys.executable, "-c", OPENER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in range(4)]
    try:
        assert [p.stdout.readline().strip() for p in openers] == ["ready"] * len(openers)
        failures = []
        for url, prefix in stores:
            if prepare is not None:
                prepare(url, prefix, schema or None)
            at = time.time() + 0.05   # time enough for each to read its line
            for p in openers:
                p.stdin.write(f"{at}\t{url}\t{prefix}\t{schema}\n")
                p.stdin.flush()
            failures += [line for p in openers if (line := p.stdout.readline().strip()) != "opened"]
        assert failures == []
        return stores[-1], schema
    finally:
        for p in openers:
            p.stdin.close()
            p.wait(timeout=60)


def test_two_stores_with_different_prefixes_are_independent(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    a, b = StateStore(url, prefix="a_"), StateStore(url, prefix="b_")
    a.replace_winners("acme", {"x@y.de": "P1"})
    assert b.winners("acme") == {}
    a.close()
    b.close()


HOLDER = """
import os, sys
from engine.state import PendingWrite, StateStore
url, prefix, mode = sys.argv[1:4]
store = StateStore(url, prefix=prefix)
with store.lock("acme"):
    if mode in ("run", "unfinished"):
        store.start_run("acme")  # as run_tenant does: the lock, then the run's row
    print("locked", flush=True)
    if mode == "die":
        os._exit(0)              # the process ends without releasing its lock
    sys.stdin.readline()
if mode == "unfinished":
    os._exit(0)                  # the lock released, the run's end never recorded
print("released", flush=True)
"""


def _holder(db, mode: str) -> subprocess.Popen:
    url, prefix = db
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, prefix, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate("\n", timeout=60)
    return out.strip()


def test_a_second_process_is_refused_while_the_first_holds_the_lock(db, state):
    proc = _holder(db, "hold")
    try:
        with pytest.raises(LockedError) as refused:
            with state.lock("acme"):
                pass
        text = str(refused.value)
        assert "tenant 'acme'" in text and f"pid {proc.pid}" in text and socket.gethostname() in text
        assert "since" in text and "what to do" in text
        with state.lock("other") as other:                      # other tenants are not blocked
            assert other.tenant == "other"
    finally:
        assert _release(proc) == "released"
    with state.lock("acme") as info:
        assert info.pid == os.getpid() and info.took_over is None


def test_the_lock_is_released_when_the_run_fails(state):
    with pytest.raises(RuntimeError):
        with state.lock("acme"):
            raise RuntimeError("the run failed")
    with state.lock("acme"):
        pass


def test_a_stop_that_arrives_as_the_lock_is_written_releases_it(state, monkeypatch):
    """SIGTERM (engine.cli calls request_stop) right after the lock's row is committed: the
    stop ends the run, and the lock is not left behind for the next run to find held."""
    from engine._stop import Terminated, request_stop
    acquire = StateStore._acquire

    def acquire_then_stop(self, tenant):
        info = acquire(self, tenant)
        request_stop()
        return info
    monkeypatch.setattr(StateStore, "_acquire", acquire_then_stop)
    with pytest.raises(Terminated):
        with state.lock("acme"):
            pytest.fail("the run must not start after the stop")
    assert state.locks(["acme"]) == {}


def test_a_lock_within_one_process_is_not_reentrant(state):
    with state.lock("acme"):
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            with state.lock("acme"):
                pass


def test_a_lock_whose_process_died_is_taken_over_with_a_warning(db, state, caplog):
    proc = _holder(db, "die")
    proc.wait(timeout=60)
    with caplog.at_level(logging.WARNING, logger="engine.state"):
        with state.lock("acme") as info:
            assert info.took_over and f"pid {proc.pid}" in info.took_over
    assert any("stale" in r.getMessage() and "acme" in r.getMessage() for r in caplog.records)


def test_a_lock_older_than_the_maximum_age_is_taken_over(db, caplog):
    url, prefix = db
    proc = _holder(db, "hold")                                   # alive, but its lock counts as too old
    impatient = StateStore(url, prefix=prefix, lock_max_age=dt.timedelta(0))
    patient = StateStore(url, prefix=prefix)
    try:
        with caplog.at_level(logging.WARNING, logger="engine.state"):
            with impatient.lock("acme") as info:
                assert "older than the maximum age" in info.took_over
                assert _release(proc) == "released"              # the old holder leaves; our lock stays
                with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
                    with patient.lock("acme"):
                        pass
    finally:
        if proc.poll() is None:
            _release(proc)
        impatient.close()
        patient.close()


def test_a_killed_run_is_recorded_as_failed_when_its_stale_lock_is_taken_over(db, state, caplog):
    finished = state.start_run("acme")                          # an earlier run, finished
    state.finish_run(finished, status="ok")
    other = state.start_run("other")                             # another tenant's run, under way
    proc = _holder(db, "run")                                    # a run under way: its lock and its row
    proc.kill()                                                  # kill -9
    proc.wait(timeout=60)
    assert state.runs("acme")[0].status == "running"

    with caplog.at_level(logging.WARNING, logger="engine.state"):
        with state.lock("acme") as info:
            assert info.took_over and f"pid {proc.pid}" in info.took_over
    killed = next(r for r in state.runs("acme") if r.run_id != finished)
    assert killed.status == "failed" and killed.finished_at is None, "its end is not known"
    assert killed.message.startswith(f"ended without finishing (process {proc.pid} on {socket.gethostname()} gone; "
                                     f"its lock was taken over at {info.since:%Y-%m-%d %H:%M:%S} UTC")
    assert next(r for r in state.runs("acme") if r.run_id == finished).status == "ok"
    assert state.runs("other")[0].run_id == other and state.runs("other")[0].status == "running"
    assert any("stale" in r.getMessage() and "1 run that ended without finishing" in r.getMessage()
               for r in caplog.records)


def test_a_run_whose_lock_is_taken_over_for_its_age_is_recorded_as_failed_saying_so(db):
    url, prefix = db
    proc = _holder(db, "run")                                    # alive, but its lock counts as too old
    impatient = StateStore(url, prefix=prefix, lock_max_age=dt.timedelta(0))
    try:
        with impatient.lock("acme") as info:
            assert "older than the maximum age" in info.took_over
        [run] = impatient.runs("acme")
        assert run.status == "failed"
        assert run.message.startswith(f"ended without finishing within the lock's maximum age of 0 min (process "
                                      f"{proc.pid} on {socket.gethostname()}; its lock was taken over at ")
    finally:
        proc.kill()
        proc.wait(timeout=60)
        impatient.close()


def test_a_run_whose_end_was_never_recorded_is_closed_by_the_next_lock(db, state, caplog):
    proc = _holder(db, "unfinished")
    assert _release(proc) == ""                                  # lock released, the run left 'running'
    with caplog.at_level(logging.WARNING, logger="engine.state"):
        with state.lock("acme") as info:
            assert info.took_over is None
    [run] = state.runs("acme")
    assert run.status == "failed"
    assert run.message.startswith(f"ended without finishing (process {proc.pid} on {socket.gethostname()} gone; "
                                  f"its end was never recorded")
    assert any("recorded as failed" in r.getMessage() for r in caplog.records)


def test_a_failed_run_keeps_its_message_cut_to_500_characters(state):
    run = state.start_run("acme")
    state.finish_run(run, status="failed", message="x" * 2000)
    assert state.runs("acme")[0].message == "x" * 499 + "\u2026"


def _hold_lock(store: StateStore, tenant: str) -> None:
    with store.lock(tenant):
        pass


OPERATIONS = {       # every operation a run or plan asks of the store, for tenant 'acme'
    "start_run": lambda s, run: s.start_run("acme"),
    "finish_run": lambda s, run: s.finish_run(run, status="ok"),
    "runs": lambda s, run: s.runs("acme"),
    "last_extracted": lambda s, run: s.last_extracted("acme"),
    "winners": lambda s, run: s.winners("acme"),
    "replace_winners": lambda s, run: s.replace_winners("acme", {"max@web.de": "P1"}),
    "last_written": lambda s, run: s.last_written("acme", "users", ["P1"]),
    "iter_written": lambda s, run: list(s.iter_written("acme", "users")),
    "remember_written": lambda s, run: s.remember_written("acme", "users", [{"external_id": "P1"}]),
    "lock": lambda s, run: _hold_lock(s, "acme"),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_on_a_damaged_sqlite_file_is_a_state_error(tmp_path, operation):
    path = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{path}")
    run = store.start_run("acme")
    store.engine.dispose()                          # the file complete on disk, no connection left open
    with path.open("r+b") as fh:                    # every page but the first (the schema) is garbage
        fh.seek(4096)
        fh.write(b"\xff" * (path.stat().st_size - 4096))
    try:
        with pytest.raises(StateError) as failed:
            OPERATIONS[operation](store, run)
    finally:
        store.close()
    assert failed.value.exit_code == 10
    assert failed.value.message.startswith("tenant 'acme': cannot ")
    assert f"the state store sqlite:///{path}: database disk image is malformed" in failed.value.message
    assert failed.value.hint.startswith(f"the file {path} is damaged: restore it from a backup")


@pytest.mark.postgres
def test_a_postgresql_store_whose_connection_the_server_ended_is_a_state_error(pg_url):
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    store = StateStore(pg_url, prefix=prefix)
    admin = sa.create_engine(pg_url)
    try:
        with store.engine.connect() as c:           # the pooled connection the next operation takes
            pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with admin.begin() as c:                    # as a server restart or an administrator does
            assert c.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        with pytest.raises(StateError) as failed:
            store.winners("acme")
        assert failed.value.exit_code == 10
        assert failed.value.message.startswith(f"tenant 'acme': cannot read the e-mail winners from the state store "
                                               f"{store.where}: ")
        assert "check that the database server is up and reachable" in failed.value.hint
        assert store.winners("acme") == {}, "the next operation connects again"
    finally:
        store.drop()
        store.close()
        admin.dispose()


@pytest.mark.postgres
def test_a_postgresql_schema_keeps_a_store_apart(pg_url):
    url = pg_url
    schema = f"s{uuid.uuid4().hex[:12]}"
    s = StateStore(url, schema=schema)
    try:
        s.replace_winners("acme", {"x@y.de": "P1"})
        with s.engine.connect() as c:
            tables = set(c.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalars())
        assert {"runs", "email_winners", "last_written", "locks"} <= tables
        again = StateStore(url, schema=schema)
        assert again.winners("acme") == {"x@y.de": "P1"}
        again.close()
    finally:
        with s.engine.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        s.close()


def test_pending_counts_count_each_tenants_writes_left_pending_and_only_theirs(state):
    """What `idwell-sync status` asks a store for a tenant whose last run did not complete: on
    SQLite and on PostgreSQL, a count per tenant over every entity, none for a tenant without any."""
    state.remember_pending("acme", "users", [{"external_id": f"P{i}"} for i in range(3)], action="create")
    state.remember_pending("acme", "units", [{"external_id": "U1"}])
    state.remember_pending("acme", "users", [{"external_id": "P0", "last_name": "again"}])   # one write, noted twice
    state.remember_pending("other", "buildings", [{"external_id": "B1"}])
    assert state.pending_counts(["acme", "other", "quiet"]) == {"acme": 4, "other": 1}
    state.forget_pending("acme", "users")
    assert state.pending_counts(["acme"]) == {"acme": 1}
