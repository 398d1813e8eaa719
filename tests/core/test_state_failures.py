"""The state store failing when it is opened or after: its disk full while the run records what it wrote, its
file damaged in the middle, its file locked by another process for longer than the store waits.
Each is exit 10 ("the state store cannot be opened or written") with a message naming the tenant, the
store and what to do, not exit 70 with a traceback; after the cause is gone the next run works."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

FULL_DISK = """
import sys
from pathlib import Path
import sqlalchemy as sa
state_file, pages = Path(sys.argv[1]).resolve(), int(sys.argv[2])

def full_disk(dbapi_connection, _):
    # no room in the state file beyond its current size: SQLite answers SQLITE_FULL, as on a full disk
    if Path(dbapi_connection.execute("PRAGMA database_list").fetchone()[2]).resolve() == state_file:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")
sa.event.listen(sa.engine.Engine, "connect", full_disk)
from engine.cli import main
sys.exit(main(sys.argv[3:]))
"""

SHORT_BUSY_TIMEOUT = """
import sys
import engine.state
engine.state.BUSY_TIMEOUT = 1.0          # the store waits 1 s for another process's lock, not 30 s
from engine.cli import main
sys.exit(main(sys.argv[1:]))
"""


def python(ws, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ws.root, capture_output=True, text=True,
                          timeout=120)


def state_file(ws) -> Path:
    return ws.root / "state.sqlite"


def assert_state_error(done: subprocess.CompletedProcess, command: str, *says: str) -> None:
    assert done.returncode == 10, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"idwell-sync {command}: error: tenant 'demo': cannot "), done.stderr
    for text in says:
        assert text in done.stderr, (text, done.stderr)


def test_a_full_disk_while_the_run_records_what_it_wrote_exits_10(ws):
    """The disk fills after the run noted its writes ahead (engine.record.note_writes_ahead):
    they are in the store already, as the run will note them, so that it fills as the run records
    what the portal accepted."""
    from engine.record import note_writes_ahead
    path = str(ws.tenant_file())
    state = ws.state()
    try:
        note_writes_ahead(ws.plan(), state)
    finally:
        state.close()
    with sqlite3.connect(state_file(ws)) as con:
        pages = con.execute("PRAGMA page_count").fetchone()[0]

    done = python(ws, FULL_DISK, str(state_file(ws)), str(pages), "run", path, "--date", "2026-06-01", "--json")
    assert_state_error(done, "run", "cannot record what the run wrote", f"the state store {ws.state_url}:",
                       "database or disk is full", f"what to do: the disk that holds {state_file(ws)} is full: "
                       "free space there")
    failure = json.loads(done.stdout)
    assert (failure["status"], failure["exit_code"]) == ("failed", 10)
    assert failure["error"]["message"] in done.stderr and "free space" in failure["error"]["hint"]
    assert len(ws.portal()["units"]) > 0, "the portal took the writes before the state store filled up"

    history = ws.cli("history", "demo", "--json")                   # space freed: the store can be read
    assert history.returncode == 0, history.stderr
    [run] = json.loads(history.stdout)
    assert run["status"] == "failed" and run["message"] == failure["error"]["message"]
    again = ws.cli("run", path, "--date", "2026-06-01")
    assert again.returncode == 0, again.stderr


def test_a_state_file_damaged_in_the_middle_exits_10_for_run_plan_and_history(ws):
    ws.run()
    damaged = ws.root / "damaged.sqlite"
    shutil.copyfile(state_file(ws), damaged)
    with damaged.open("r+b") as fh:                                 # 8 KB of garbage after the first two pages
        fh.seek(8192)
        fh.write(b"\xff" * 8192)
    before = ws.portal().records
    url = f"sqlite:///{damaged}"
    path = str(ws.tenants["demo"])
    hint = f"what to do: the file {damaged} is damaged: restore it from a backup, or move it aside"

    run = ws.cli("run", path, "--date", "2026-06-01", "--state", url)
    assert_state_error(run, "run", f"the state store {url}: database disk image is malformed", hint)
    assert ws.portal().records == before

    plan = ws.cli("plan", path, "--date", "2026-06-01", "--state", url, "--no-out")
    assert_state_error(plan, "plan", f"the state store {url}: database disk image is malformed", hint)

    history = ws.cli("history", path, "--state", url)
    assert_state_error(history, "history", "cannot read the run history", hint)


def test_a_state_store_locked_by_another_process_beyond_its_timeout_exits_10(ws):
    path = str(ws.tenant_file())
    ws.state().close()
    other = sqlite3.connect(state_file(ws), isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")                            # another process writing, and writing
        done = python(ws, SHORT_BUSY_TIMEOUT, "run", path, "--date", "2026-06-01")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert_state_error(done, "run", "cannot take the run lock", f"the state store {ws.state_url}: database is locked "
                       "(another process kept it locked for more than 1 s)",
                       f"what to do: find the process that holds {state_file(ws)} open")
    assert not ws.portal_path.exists() or all(len(v) == 0 for v in ws.portal().records.values())

    again = ws.cli("run", path, "--date", "2026-06-01")
    assert again.returncode == 0 and "lock" not in again.stderr, again.stderr


def test_a_state_file_that_is_no_database_at_all_says_it_is_damaged_for_run_history_and_status(ws):
    path = str(ws.tenant_file())
    state_file(ws).write_bytes(b"\x13\x37 not an SQLite file " * 200)      # overwritten from its first byte on
    hint = f"what to do: the file {state_file(ws)} is damaged: restore it from a backup, or move it aside"

    run = ws.cli("run", path, "--date", "2026-06-01")
    assert_state_error(run, "run", f"cannot open the state store {ws.state_url}: file is not a database", hint)
    history = ws.cli("history", path)
    assert_state_error(history, "history", f"cannot open the state store {ws.state_url}: file is not a database", hint)
    status = ws.cli("status", "--tenants-dir", str(ws.root / "tenants"))
    assert status.returncode == 10 and hint in status.stderr, status.stderr


def test_a_state_file_locked_by_another_process_when_it_is_opened_says_so_and_what_to_do(ws):
    path = str(ws.tenant_file())
    ws.state().close()
    other = sqlite3.connect(state_file(ws), isolation_level=None)
    try:
        other.execute("PRAGMA locking_mode = EXCLUSIVE")            # readers are kept out too, also in WAL mode
        other.execute("BEGIN EXCLUSIVE")
        other.execute("SELECT count(*) FROM runs").fetchone()
        run = python(ws, SHORT_BUSY_TIMEOUT, "run", path, "--date", "2026-06-01")
        history = python(ws, SHORT_BUSY_TIMEOUT, "history", path)
    finally:
        other.execute("ROLLBACK")
        other.close()
    for command, done in (("run", run), ("history", history)):
        assert_state_error(done, command, f"cannot open the state store {ws.state_url}: database is locked "
                           "(another process kept it locked for more than 1 s)",
                           f"what to do: find the process that holds {state_file(ws)} open")


def test_a_directory_where_the_state_file_should_be_says_so_for_run_history_and_status(ws):
    """status and history took a directory for a store not there yet ("no runs recorded", "there
    is no state store"), and run said only 'unable to open database file' and to check the rights."""
    path = str(ws.tenant_file())
    state_file(ws).mkdir()
    says = f"({state_file(ws)} is a directory, not an SQLite file)"
    hint = (f"what to do: name the store's file, not a directory, with --state / $IDWELL_STATE_URL / the tenant's "
            f"state_url (e.g. sqlite:///{state_file(ws) / 'state.sqlite'}), or move the directory {state_file(ws)} "
            f"out of the way; then run again")
    assert_state_error(ws.cli("run", path, "--date", "2026-06-01"), "run",
                       f"cannot open the state store {ws.state_url}: ", says, hint)
    assert_state_error(ws.cli("history", path), "history", f"cannot open the state store {ws.state_url}: ", says, hint)
    status = ws.cli("status", "--tenants-dir", str(ws.root / "tenants"))
    assert status.returncode == 10 and says in status.stderr and hint in status.stderr, status.stdout + status.stderr
    assert "no runs recorded" not in status.stdout
