"""`plan` only reads the local portal store and the state store, so it succeeds against a store
the night's run cannot write, and the run then fails (exit 5, 10). The plan says so: a warning
in its text and `unwritable` in --json, naming the store, why and what to do; the run, as the
same user, does fail. A plan against stores a run can write says nothing. Nothing is written.

Tests run as root, which file permissions do not stop: the plan and the run are started as root
without the capabilities that let it pass them (setpriv drops CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH), so that the permission bits stop it as they stop any other user. A file
system mounted read-only and a portal store another process holds a write lock on:
tests/core/test_plan_read_only.py."""
from __future__ import annotations

import json
import os
import pwd
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from test_plan_read_only import ARGS, digest, edited  # noqa: F401 (edited: a fixture)

from engine.write_access import why_unwritable

DROP = "-dac_override,-dac_read_search"


def stopped_by_permissions(ws, blocked, *args: str) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` in this workspace as a user whom file permissions stop (for root:
    without the capabilities that pass them). Skipped where that cannot be had (outside CI; in CI
    it must work), as where `blocked`, which the test made unwritable, can still be written (None:
    the test made nothing unwritable yet)."""
    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    shell = (f"test -w '{blocked}' && exit 99; " if blocked else "") + 'exec "$@"'
    command = ["sh", "-c", shell, "sh", sys.executable, "-m", "engine", *args]
    if os.geteuid() == 0:
        command = ["setpriv", f"--bounding-set={DROP}", f"--inh-caps={DROP}", *command]
    try:
        done = subprocess.run(command, cwd=ws.root, env=env, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        done = subprocess.CompletedProcess(command, 98, "", str(exc))
    if done.returncode in (98, 99) or "setpriv:" in done.stderr:
        reason = f"file permissions cannot be made to stop this user here: {done.stderr.strip()[-200:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return done


WHO = f"the user that runs this plan ({pwd.getpwuid(os.geteuid()).pw_name})"


@pytest.mark.parametrize("store, made_unwritable, code", [
    ("portal", "var/portal/demo.sqlite", 5),
    ("portal", "var/portal", 5),
    ("state", "var/state.sqlite", 10),
    ("state", "var", 10),
])
def test_plan_warns_of_a_store_or_folder_the_run_may_not_write_and_the_run_fails_there(ws, edited, store,
                                                                                      made_unwritable, code):
    """The demo tenant run into var/ and edited in the portal (a run has an update to write); then
    the store's file without write permission, or its folder, where SQLite must create the
    store's journal (-wal, -shm): the plan reads the store all the same and warns, naming the
    file or folder and what to do; the run as that user fails (exit 5 for the portal store, 10
    for the state store) and nothing changes in the store. Writable again, the plan says nothing."""
    file = ws.root / ("var/portal/demo.sqlite" if store == "portal" else "var/state.sqlite")
    blocked = ws.root / made_unwritable
    before = digest(file)
    blocked.chmod(0o555 if blocked.is_dir() else 0o444)
    try:
        done = stopped_by_permissions(ws, blocked, "plan", str(edited), *ARGS, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["status"] == "ok" and summary["writes"] == 1, summary
        [warning] = summary["unwritable"]
        hint_end = "change target.path in the tenant file" if store == "portal" else \
            "name another state store with --state / $IDWELL_STATE_URL or the tenant's state_url"
        if blocked == file:
            assert (warning["reason"], warning["hint"]) == (
                f"the file is not writable for {WHO}",
                f"let the user that runs idwell-sync write to {file}, or {hint_end}")
        else:
            assert (warning["reason"], warning["hint"]) == (
                f"its folder {blocked}, where SQLite creates its journal (-wal, -shm), is not writable for {WHO}",
                f"let the user that runs idwell-sync write to {blocked}, or {hint_end}")
        assert (warning["store"], warning["path"]) == (store, str(file))
        text = stopped_by_permissions(ws, blocked, "plan", str(edited), *ARGS).stdout.splitlines()
        said = "local portal store" if store == "portal" else "state store"
        at = text.index(f"  WARNING: a run could not write the {said} {file}: {warning['reason']}")
        assert text[at + 1] == f"    what to do: {warning['hint']} (the plan only reads it)"
        run = stopped_by_permissions(ws, blocked, "run", str(edited), "--date", "2026-06-01")
        assert run.returncode == code, run.stderr
        assert digest(file) == before
    finally:
        blocked.chmod(0o755 if blocked.is_dir() else 0o644)
        for journal in file.parent.glob(f"{file.name}-*"):     # made by a reader as the store was: read-only
            journal.chmod(0o644)
    plan = stopped_by_permissions(ws, None, "plan", str(edited), *ARGS)
    assert plan.returncode == 0 and "WARNING" not in plan.stdout, plan.stdout + plan.stderr


def test_a_wal_store_whose_journal_files_are_there_needs_no_writable_folder(ws, edited):
    """SQLite writes a WAL store through its -wal and -shm files; where they are there (left by a
    reader, such as a plan) and can be written, the run does not create a file in the folder, and
    writes the store: the plan has no warning for it."""
    state = ws.root / "var" / "state.sqlite"
    reader = sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True)
    reader.execute("SELECT count(*) FROM runs").fetchone()
    reader.close()
    assert sorted(p.name for p in state.parent.glob("state.sqlite*")) == \
        ["state.sqlite", "state.sqlite-shm", "state.sqlite-wal"]
    state.parent.chmod(0o555)
    try:
        done = stopped_by_permissions(ws, state.parent, "plan", str(edited), *ARGS, "--json")
        assert done.returncode == 0 and json.loads(done.stdout)["unwritable"] is None, done.stdout + done.stderr
        run = stopped_by_permissions(ws, state.parent, "run", str(edited), "--date", "2026-06-01")
        assert run.returncode == 0, run.stderr
    finally:
        state.parent.chmod(0o755)


def hold_write_lock(path) -> subprocess.Popen:
    """Another process that holds the SQLite write lock on the store at `path` (BEGIN IMMEDIATE)
    until a line is sent to it; then it rolls back and says `released`."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        sys.stdin.readline()
        conn.execute("ROLLBACK")
        print("released", flush=True)
        sys.stdin.readline()
    """), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def test_plan_names_the_process_that_holds_the_state_stores_write_lock(ws, edited):
    """A process keeps the state store's write lock (a tool with a transaction left open): the
    run would wait for it and fail. The plan, which does not wait for it, names the process."""
    state = ws.root / "var" / "state.sqlite"
    holder = hold_write_lock(state)
    try:
        code, summary, err = ws.cli_json("plan", str(edited), *ARGS)
        assert code == 0, err
        text = ws.cli("plan", str(edited), *ARGS).stdout.splitlines()
        holder.communicate("\n\n", timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    reason = (f"process {holder.pid} holds its write lock (for more than 1 s while the plan looked): a run waits "
              f"for it, and fails when it is not released in time")
    hint = f"find the process (`fuser {state}`), and let it finish or stop it before the run"
    assert summary["unwritable"] == [{"store": "state", "path": str(state), "reason": reason, "hint": hint}]
    assert f"  WARNING: a run could not write the state store {state}: {reason}" in text
    code, summary, err = ws.cli_json("plan", str(edited), *ARGS)                # the lock released
    assert code == 0 and summary["unwritable"] is None, err


def test_a_write_lock_released_while_the_plan_looks_is_not_named(tmp_path):
    """Runs of other tenants that share the state store hold its write lock for moments, and a
    run waits those out: a lock that is released while the plan looks is no warning."""
    path = tmp_path / "state.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE runs (run_id TEXT)")
    conn.close()
    holder = hold_write_lock(path)
    try:
        assert why_unwritable(path, "elsewhere", held_for=0)[0].startswith(f"process {holder.pid} holds its write lock")
        found = []
        looking = threading.Thread(target=lambda: found.append(why_unwritable(path, "elsewhere", held_for=60)))
        looking.start()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "released\n"
        looking.join(timeout=90)
        assert found == [None]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("store, code", [("portal", 5), ("state", 10)])
def test_a_store_in_a_folder_the_user_may_not_search_is_an_error_naming_the_folder(ws, store, code):
    """A store under a folder without x permission (it may be listed, not searched): not even
    whether the store is there can be known. `plan` and `run` ended in a traceback (exit 70:
    Path.exists() raised PermissionError); now they fail as the run's own errors for that store
    do (exit 5 for the portal store, 10 for the state store), naming the folder and what to do;
    so do `history` and `status` for the state store."""
    path = ws.tenant_file(portal=ws.root / "var" / "portal" / "demo.sqlite",
                          state_url=f"sqlite:///{ws.root / 'var' / 'state' / 'state.sqlite'}")
    code_run, summary, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code_run == 0, err
    blocked = ws.root / "var" / store
    blocked.chmod(0o644)
    reads = [("history", str(path)), ("status",)] if store == "state" else []     # the state store's readers
    try:
        for command in (("plan", str(path), *ARGS), ("run", str(path), "--date", "2026-06-01"), *reads):
            done = stopped_by_permissions(ws, None, *command)
            assert done.returncode == code, done.stderr
            assert "Traceback" not in done.stderr and str(blocked) in done.stderr, done.stderr
            assert "let the user that runs idwell-sync search (x permission)" in done.stderr, done.stderr
    finally:
        blocked.chmod(0o755)
