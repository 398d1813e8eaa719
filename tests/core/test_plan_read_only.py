"""`plan` writes nothing to the target, so it plans against a local portal store that it may only
read: one that another process is writing (a write lock held), one on a file system mounted
read-only, one an earlier version laid out, one that is an empty file, one not there yet. Each
plan reads what the store holds, as a run would find it, and leaves the store as it was. It
records no run and takes no lock, and only reads the state store too: a user who may only read
var/ (both stores) can plan.

Tests run as root, which file permissions do not stop: the store is made unwritable by a write
lock another process holds, or by a read-only bind mount in a mount namespace of its own."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

ARGS = ("--date", "2026-06-01", "--no-out")


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def counts(summary: dict) -> dict:
    return {e: {a: c[a] for a in ("create", "update", "delete", "unchanged")} for e, c in summary["entities"].items()}


def var_tenant(ws):
    """The demo tenant with both stores below var/, as by default: var/portal/demo.sqlite and
    var/state.sqlite."""
    var = ws.root / "var"
    return ws.tenant_file(portal=var / "portal" / "demo.sqlite", state_url=f"sqlite:///{var / 'state.sqlite'}")


@pytest.fixture
def edited(ws):
    """A store the demo tenant was run into, with one user's first name then changed in the portal
    (committed): a plan that reads the store plans one update, and (from the state store: what the
    run wrote) calls it drift; one that did not read the store would plan creates."""
    path = var_tenant(ws)
    code, summary, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == 0 and summary["writes"] > 0, err
    store = sqlite3.connect(ws.root / "var" / "portal" / "demo.sqlite")
    with store:
        store.execute("UPDATE users SET first_name = 'Geändert' WHERE id = (SELECT min(id) FROM users "
                      "WHERE external_id IS NOT NULL AND archived = 0 AND first_name IS NOT NULL)")
    store.close()
    return path


def assert_plans_the_edit(summary: dict) -> None:
    assert summary["mode"] == "plan" and summary["status"] == "ok", summary
    assert summary["writes"] == 1 and summary["entities"]["users"]["update"] == 1, counts(summary)
    assert summary["drift"] == {"users": {"first_name": 1}}, summary["drift"]


def test_plan_reads_a_store_that_another_process_holds_a_write_lock_on(ws, edited):
    """Another process (a run applying, a person's tool) holds the store's write lock, with a
    change not committed yet: the plan neither waits for the lock nor fails on it, and plans
    against what is committed. It names the process: a run would wait for the lock and fail
    (`unwritable`, tests/core/test_plan_cannot_write.py)."""
    store = ws.root / "var" / "portal" / "demo.sqlite"
    before = digest(store)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE users SET archived = 1")          # not committed while the plan runs
        print("locked", flush=True)
        sys.stdin.readline()
        conn.execute("ROLLBACK")
        print("released", flush=True)
    """), str(store)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        code, summary, err = ws.cli_json("plan", str(edited), *ARGS)
        assert code == 0, err
        assert_plans_the_edit(summary)
        [held] = summary["unwritable"]
        assert (held["store"], held["path"]) == ("portal", str(store))
        assert held["reason"].startswith(f"process {holder.pid} holds its write lock (for more than 1 s"), held
        assert holder.poll() is None, "the process holding the lock is still there"
        out, _ = holder.communicate("\n", timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert out == "released\n" and holder.returncode == 0
    assert digest(store) == before, "the plan changed the store"


def in_read_only_folder(ws, folder, *args: str) -> subprocess.CompletedProcess:
    """`python -m engine ARGS --json` in this workspace, with `folder` mounted read-only (a bind
    mount in a mount namespace of its own: root cannot write there either); skipped where such a
    mount cannot be made (outside CI; in CI it must work)."""
    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    shell = (f"mount --bind -o ro '{folder}' '{folder}' || exit 97; touch '{folder}/probe' 2>/dev/null && exit 99; "
             f'exec "$@"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", shell, "sh", sys.executable, "-m", "engine", *args, "--json"],
                          cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode in (97, 99) or (done.returncode == 1 and not done.stdout and "unshare" in done.stderr):
        reason = f"a read-only bind mount is not possible here: {done.stderr.strip()[-200:]} (exit {done.returncode})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return done


@pytest.mark.parametrize("companions", [False, True], ids=["store-alone", "with-wal-and-shm"])
def test_plan_reads_a_store_on_a_read_only_file_system_and_a_run_still_says_it_is_read_only(ws, edited, companions):
    """The store's folder on a file system mounted read-only (as for a user without write access
    to the file and its folder): the plan reads the store, whether or not SQLite's -wal and -shm
    files are beside it (left by an earlier reader; without them SQLite cannot make its -shm
    there), and warns that a run could not write it. A run there fails as the plan warned: exit 5,
    naming the store and that it is read-only, having written nothing."""
    import json
    folder = ws.root / "var" / "portal"
    store = folder / "demo.sqlite"
    if companions:
        reader = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
        reader.execute("SELECT count(*) FROM users").fetchone()
        reader.close()
    assert sorted(p.name for p in folder.iterdir()) == \
        (["demo.sqlite", "demo.sqlite-shm", "demo.sqlite-wal"] if companions else ["demo.sqlite"])
    before = digest(store)
    done = in_read_only_folder(ws, folder, "plan", str(edited), *ARGS)
    assert done.returncode == 0, done.stderr
    assert_plans_the_edit(json.loads(done.stdout))
    assert json.loads(done.stdout)["unwritable"] == [
        {"store": "portal", "path": str(store), "reason": "it is on a file system mounted read-only",
         "hint": "mount it read-write for the run, or change target.path in the tenant file"}]
    run = in_read_only_folder(ws, folder, "run", str(edited), "--date", "2026-06-01")
    assert run.returncode == 5, run.stderr
    said = run.stderr.splitlines()[0]        # when it is opened, or (SQLite opens it read-only) at the first write
    assert said.startswith((f"idwell-sync run: error: tenant 'demo': cannot open the local portal store {store}: ",
                            f"idwell-sync run: error: tenant 'demo': writing to the local portal store {store} failed "
                            "after 0 of ")), run.stderr
    assert f"what to do: {store} is read-only for the user that runs idwell-sync" in run.stderr, run.stderr
    assert digest(store) == before


def test_plan_only_reads_the_state_store(ws, edited):
    """A plan records no run and takes no lock: it reads what the engine remembers (here: what the
    run wrote, which makes the edit drift) and changes nothing in the state store, so that it also
    plans with var/, which holds both stores, mounted read-only (and warns that a run could write
    neither)."""
    import json
    state = ws.root / "var" / "state.sqlite"
    assert not state.with_name("state.sqlite-shm").exists()      # SQLite cannot make it on the read-only mount
    before = digest(state)
    done = in_read_only_folder(ws, ws.root / "var", "plan", str(edited), *ARGS)
    assert done.returncode == 0, done.stderr
    assert_plans_the_edit(json.loads(done.stdout))
    assert [(u["store"], u["path"], u["reason"]) for u in json.loads(done.stdout)["unwritable"]] == [
        ("portal", str(ws.root / "var" / "portal" / "demo.sqlite"), "it is on a file system mounted read-only"),
        ("state", str(state), "it is on a file system mounted read-only")]
    code, summary, err = ws.cli_json("plan", str(edited), *ARGS)
    assert code == 0, err
    assert_plans_the_edit(summary)
    assert summary["unwritable"] is None
    assert digest(state) == before, "the plan changed the state store"
    history = ws.cli("history", str(edited), "--json")
    assert [r["status"] for r in json.loads(history.stdout)] == ["ok"], history.stderr    # the run only


def test_plan_reads_a_store_an_earlier_version_laid_out_without_extending_it(ws):
    """A store made before the spec gained a field (here: buildings without `city`) is extended
    by the next run, which then finds that field empty in the portal; the plan finds the same,
    the same writes, without extending the store."""
    store = ws.root / "portal" / "demo.sqlite"
    path = ws.tenant_file(portal=store)
    assert ws.cli_json("run", str(path), "--date", "2026-06-01")[0] == 0
    conn = sqlite3.connect(store)
    conn.execute("ALTER TABLE buildings DROP COLUMN city")
    conn.close()
    before = digest(store)
    code, plan, err = ws.cli_json("plan", str(path), *ARGS)
    assert code == 0, err
    assert plan["entities"]["buildings"]["update"] > 0, counts(plan)
    assert digest(store) == before, "the plan extended the store"
    code, run, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == 0, err
    assert counts(run) == counts(plan) and run["drift"] == plan["drift"]


def test_plan_against_an_empty_store_file_plans_every_record_and_leaves_the_file_empty(ws):
    """A store file of 0 bytes (made by hand, or a copy cut short) is an empty store to SQLite:
    the first run creates the tables in it and every record; the plan plans that, and the file
    stays empty."""
    store = ws.root / "portal" / "demo.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"")
    path = ws.tenant_file(portal=store)
    code, plan, err = ws.cli_json("plan", str(path), *ARGS)
    assert code == 0, err
    assert plan["writes"] > 0 and plan["writes"] == sum(e["create"] for e in plan["entities"].values()), counts(plan)
    assert store.stat().st_size == 0 and sorted(p.name for p in store.parent.iterdir()) == ["demo.sqlite"]
    code, run, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == 0 and counts(run) == counts(plan), err


def test_plan_on_the_first_night_creates_neither_the_stores_nor_their_folders(ws):
    """The portal store, the state store and the folder var/ they go in are not there yet: the plan
    plans every record as a create against an empty portal, with nothing remembered, and makes
    nothing; the first run makes them."""
    store = ws.root / "var" / "portal" / "demo.sqlite"
    path = var_tenant(ws)
    code, plan, err = ws.cli_json("plan", str(path), *ARGS)
    assert code == 0, err
    assert plan["writes"] > 0 and plan["writes"] == sum(e["create"] for e in plan["entities"].values()), counts(plan)
    assert plan["unwritable"] is None, "the run can create both"
    assert not (ws.root / "var").exists(), "the plan made var/ or a store in it"
    code, run, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == 0 and run["writes"] == plan["writes"] and store.exists(), err


def killed_mid_write(path, statements: str):
    """Another program writes the SQLite file `path` in rollback-journal mode (`statements`, over
    its connection `conn`, in one transaction) and is killed before it commits: its journal, the
    pages it changed, stays beside the file. Returns the journal's path."""
    writer = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import os, signal, sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA cache_size=1")                 # changed pages go to the file before the commit
        conn.execute("BEGIN")
    """) + textwrap.dedent(statements) + "\nos.kill(os.getpid(), signal.SIGKILL)\n", str(path)])
    assert writer.returncode == -9
    journal = path.with_name(path.name + "-journal")
    assert journal.stat().st_size > 0
    return journal


def plans_once_rolled_back(ws, edited, path, journal) -> None:
    """What the error says to do: one connection that may write opens the file (as `sqlite3 STORE
    'PRAGMA quick_check'` does) and rolls the unfinished write back; then the plan reads the
    committed store."""
    rollback = sqlite3.connect(path)
    assert rollback.execute("PRAGMA quick_check").fetchone() == ("ok",)
    rollback.close()
    assert not journal.exists()
    code, summary, err = ws.cli_json("plan", str(edited), *ARGS)
    assert code == 0, err
    assert_plans_the_edit(summary)


def test_plan_refuses_a_store_left_half_written_with_its_rollback_journal(ws, edited):
    """A program that writes the store in rollback-journal mode (not the engine, which uses WAL:
    sqlite3 by hand, another tool) was killed in the middle of a write: its -journal file is
    beside the store, holding the pages it changed. Read-only, SQLite cannot roll that write
    back, and reading the store anyway (`immutable`) would plan against half of a write, or call a
    store that is fine damaged. The plan says what happened and what to do, and changes nothing;
    once a connection that may write has opened the store, the plan reads what was committed."""
    store = ws.root / "var" / "portal" / "demo.sqlite"
    journal = killed_mid_write(store, """
        conn.execute("UPDATE users SET last_name = 'HALB', email = NULL")
        conn.execute("DELETE FROM occupancies")""")
    before, journal_before = digest(store), digest(journal)

    done = ws.cli("plan", str(edited), *ARGS)
    assert done.returncode == 5, done.stderr
    assert done.stderr.splitlines()[0] == (
        f"idwell-sync plan: error: tenant 'demo': cannot read the local portal store {store}: a program that wrote it "
        f"stopped in the middle of a write and left its rollback journal {journal} ({journal.stat().st_size:,} bytes): "
        "read as it is, the store would be half-written"), done.stderr
    assert f"what to do: let SQLite roll the unfinished write back: open the store once to write, as a user who may " \
           f"write {store} and its folder, e.g. `sqlite3 {store} 'PRAGMA quick_check'`" in done.stderr, done.stderr
    assert f"Do not delete {journal}" in done.stderr
    assert (digest(store), digest(journal)) == (before, journal_before)
    plans_once_rolled_back(ws, edited, store, journal)


def test_plan_refuses_a_state_store_left_half_written_with_its_rollback_journal(ws, edited):
    """The same for the state store, which a plan opens only to read: another program switched it
    to rollback-journal mode and was killed in the middle of a write (here: deleting the run
    history). The plan does not read what the engine remembers half-written; it names the store
    and what to do (exit 10), and changes nothing."""
    state = ws.root / "var" / "state.sqlite"
    journal = killed_mid_write(state, """
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            conn.execute(f"DELETE FROM {table}")""")
    before, journal_before = digest(state), digest(journal)

    done = ws.cli("plan", str(edited), *ARGS)
    assert done.returncode == 10, done.stderr
    assert f"left its rollback journal {journal} ({journal.stat().st_size:,} bytes)" in done.stderr, done.stderr
    assert f"e.g. `sqlite3 {state} 'PRAGMA quick_check'`" in done.stderr, done.stderr
    assert f"Do not delete {journal}" in done.stderr
    assert (digest(state), digest(journal)) == (before, journal_before)
    plans_once_rolled_back(ws, edited, state, journal)      # the drift: the state store is whole again
