"""The per-tenant lock: while one run of a tenant holds it, a second run of the same tenant exits 7 with
a message naming the tenant and writes nothing; another tenant is not blocked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from engine.errors import LockedError

HOLDER = """
import sys
from engine.state import StateStore
store = StateStore(sys.argv[1])
with store.lock(sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def hold_lock(ws):
    """Hold a tenant's lock from another process (as a running nightly job would) until released."""
    procs = []

    def hold(tenant_id: str, url: str | None = None) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, url or ws.state_url, tenant_id], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held", p.stderr.read()
        return p

    yield hold
    for p in procs:
        if p.poll() is None:
            p.communicate("\n", timeout=30)


def release(p: subprocess.Popen) -> None:
    out, err = p.communicate("\n", timeout=30)
    assert p.returncode == 0 and "released" in out, err


def test_a_second_run_of_a_locked_tenant_exits_7_naming_the_tenant(ws, hold_lock):
    path = ws.tenant_file("hausverwaltung-nord")
    holder = hold_lock("hausverwaltung-nord")
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 7, done.stderr
    assert "tenant 'hausverwaltung-nord' is locked by another run" in done.stderr
    assert f"pid {holder.pid}" in done.stderr
    assert not ws.portal_path.exists() or all(len(v) == 0 for v in ws.portal().records.values())

    release(holder)
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert len(ws.portal()["units"]) > 0


def test_the_lock_is_per_tenant(ws, hold_lock):
    ws.tenant_file("hausverwaltung-nord")
    other = ws.tenant_file("hausverwaltung-sued", portal=ws.root / "sued.sqlite")
    hold_lock("hausverwaltung-nord")
    done = ws.cli("run", str(other), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr


def test_a_run_in_the_same_process_meets_the_lock_of_another_thread(ws):
    tenant = ws.tenant()
    state = ws.state()
    taken, leave = threading.Event(), threading.Event()

    def holder():
        with state.lock("demo"):
            taken.set()
            leave.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert taken.wait(30)
        with pytest.raises(LockedError) as err:
            ws.run(tenant)
        assert err.value.exit_code == 7 and "tenant 'demo'" in str(err.value)
    finally:
        leave.set()
        t.join(30)
        state.close()
    assert ws.run(tenant).exit_code == 0, "released after the holder finished"


def run_from(folder, *args: str) -> subprocess.CompletedProcess:
    """`python -m engine ARGS` started in `folder` (as a scheduler may start it), without IDWELL_STATE_URL."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_default_state_store_and_its_lock_do_not_depend_on_the_working_directory(ws, hold_lock):
    """Without --state, state_url or IDWELL_STATE_URL, the store is var/state.sqlite beside the
    tenants/ folder: a run started in another directory sees the lock of one started there
    (before, it made a new store below its own directory and ran beside it)."""
    path = ws.tenant_file("acme", state_url=None)
    holder = hold_lock("acme", f"sqlite:///{ws.root / 'var' / 'state.sqlite'}")
    done = run_from(ws.root / "elsewhere", "run", str(path), "--date", "2026-06-01")
    assert done.returncode == 7, done.stderr
    assert "tenant 'acme' is locked by another run" in done.stderr
    assert not (ws.root / "elsewhere" / "var").exists()
    release(holder)
    done = run_from(ws.root / "elsewhere", "run", str(path), "--date", "2026-06-01", "-v")
    assert done.returncode == 0, done.stderr
    assert f"state store sqlite:///{ws.root / 'var' / 'state.sqlite'}" in done.stderr
    assert all(" [acme] " in line for line in done.stderr.splitlines() if " INFO " in line), done.stderr
    phases = [line.split("engine.progress: ")[1].split(":")[0] for line in done.stderr.splitlines()
              if "engine.progress: extract" in line]
    # each phase told once, by the run: the second process's own lines (its "extract users") are not
    assert phases == ["extract occupancies", "extract buildings", "extract units", "extract users (second process)"], \
        phases


def test_a_store_an_earlier_version_left_below_the_working_directory_is_used_until_there_are_two(ws):
    """A scheduler's directory holds the tenant's store of an earlier version: it is used, with
    a warning to move it. Once a run from the repository has made the default store too, a run
    from the scheduler's directory stops (exit 10) naming both, instead of dropping one."""
    from engine.state import StateStore
    path = ws.tenant_file("acme", state_url=None)
    earlier = ws.root / "scheduler" / "var" / "state.sqlite"
    home = ws.root / "var" / "state.sqlite"
    store = StateStore(f"sqlite:///{earlier}")
    store.finish_run(store.start_run("acme"), status="ok")
    store.close()
    done = run_from(ws.root / "scheduler", "run", str(path), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"using the state store {earlier} below the working directory") == 1, done.stderr
    assert f"the default store is now {home}" in done.stderr
    store = StateStore(f"sqlite:///{earlier}")
    try:
        assert [r.status for r in store.runs("acme")] == ["ok", "ok"]
    finally:
        store.close()
    assert not home.exists()

    assert run_from(ws.root, "run", str(path), "--date", "2026-06-01").returncode == 0   # from the repository
    assert home.exists()
    done = run_from(ws.root / "scheduler", "run", str(path), "--date", "2026-06-01")
    assert done.returncode == 10, done.stderr
    assert f"two state stores hold this tenant: {home}" in done.stderr and str(earlier) in done.stderr


def test_a_copy_of_a_tenant_elsewhere_keeps_its_own_store_not_the_one_of_the_tenants_here(ws):
    """From the repository, a copy of tenant acme kept in another folder (to try a change) is
    another tenant file: var/state.sqlite here is the default store of tenants/acme.yaml, not a
    store an earlier version left, so the copy neither adopts it (its history, its lock) nor warns."""
    import shutil
    path = ws.tenant_file("acme", state_url=None)
    assert run_from(ws.root, "run", str(path), "--date", "2026-06-01").returncode == 0
    copy = ws.root / "trial" / "tenants" / "acme.yaml"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(path, copy)
    done = run_from(ws.root, "plan", str(copy), "--no-out", "--date", "2026-06-01", "-v",
                    "--mapping-dir", str(ws.root / "mappings"))
    assert done.returncode == 0, done.stderr
    assert "below the working directory" not in done.stderr
    assert f"state store sqlite:///{ws.root / 'trial' / 'var' / 'state.sqlite'}" in done.stderr


def test_a_tenant_file_outside_a_tenants_folder_keeps_its_store_beside_it(ws):
    """Without a tenants/ folder around it, the store is var/state.sqlite in the file's own folder
    (not in the folder above, which may be / or /etc)."""
    import shutil
    folder = ws.root / "kunden"
    folder.mkdir()
    path = folder / "acme.yaml"
    shutil.copyfile(ws.tenant_file("acme", state_url=None), path)
    done = run_from(ws.root / "elsewhere", "run", str(path), "--date", "2026-06-01", "-v",
                    "--mapping-dir", str(ws.root / "mappings"))
    assert done.returncode == 0, done.stderr
    assert f"state store sqlite:///{folder / 'var' / 'state.sqlite'}" in done.stderr


def test_a_run_refused_by_the_lock_is_in_the_history_and_status_says_it_did_not_start(ws, hold_lock):
    """A night's run that meets the lock of a run still going (a run longer than the time between
    its cron times) is recorded as `locked`: `status` tells the operator so, with the holder,
    instead of calling the cron time missed, and `history` lists it."""
    path = ws.tenant_file("acme", schedule={"cron": "30 3 * * *", "timezone": "UTC"})
    holder = hold_lock("acme")
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 7, done.stderr
    release(holder)
    shown = json.loads(ws.cli("history", str(path), "--json").stdout)
    assert [run["status"] for run in shown] == ["locked"]
    assert shown[0]["writes"] is None and f"pid {holder.pid}" in shown[0]["message"]
    verdicts = ws.cli("status", "--json", "--grace", "0")
    assert verdicts.returncode == 1, verdicts.stderr          # needs attention
    [acme] = [e for e in json.loads(verdicts.stdout) if e["tenant"] == "acme"]
    assert (acme["verdict"], acme["attention"]) == ("locked", True)
    assert "locked by another run" in acme["message"] and f"pid {holder.pid}" in acme["message"]
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert [run["status"] for run in json.loads(ws.cli("history", str(path), "--json").stdout)] == ["ok", "locked"]


def test_a_run_that_failed_after_a_later_run_met_its_lock_is_what_status_shows(ws):
    """The night's run is stopped while it holds the lock (SIGSTOP: a hung run), the next cron
    time's run meets the lock (exit 7, `locked`), then the first run is ended by SIGTERM (exit 143,
    `failed`). The morning check showed `locked`, naming a process long gone, and only `history`
    showed the failure: status shows the failed run and its reason, and that a later run was
    refused because it still held the lock."""
    path = ws.tenant_file("acme", schedule={"cron": "30 3 * * *", "timezone": "UTC"})
    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    first = subprocess.Popen([sys.executable, "-m", "engine", "run", str(path), "--date", "2026-06-01", "-v"],
                             cwd=ws.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in first.stderr:                       # it holds the lock and reads the ERP (the store idle)
            seen.append(line)
            if "engine.progress: extract" in line:
                break
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the run ended before it could be stopped: " + "".join(seen)
        refused = ws.cli("run", str(path), "--date", "2026-06-01")
        assert refused.returncode == 7, refused.stderr
        first.send_signal(signal.SIGTERM)
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 143, "".join(seen) + err
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.communicate(timeout=30)
    runs = json.loads(ws.cli("history", str(path), "--json").stdout)
    assert [(r["status"], r["message"].split(":")[0]) for r in runs] == \
        [("locked", "tenant 'acme' is locked by another run"), ("failed", "stopped (SIGTERM)")]

    verdicts = ws.cli("status", "--json", "--grace", "0")
    assert verdicts.returncode == 1, verdicts.stderr
    [acme] = [e for e in json.loads(verdicts.stdout) if e["tenant"] == "acme"]
    assert (acme["verdict"], acme["attention"], acme["lock"]) == ("failed", True, None), json.dumps(acme)
    assert acme["message"] == (f"stopped (SIGTERM); the run at {runs[0]['started_at']} did not start "
                               f"(`locked`, exit 7): this one still held the lock")
    assert acme["last_run"] == runs[0] and acme["holder_run"] == runs[1]
    table = ws.cli("status", "--quiet")
    assert table.returncode == 1, table.stderr
    [line] = [line.split() for line in table.stdout.splitlines() if line.split()[:1] == ["acme"]]
    assert line[:3] == ["acme", "failed", runs[1]["started_at"]] and "stopped (SIGTERM); the run at" in \
        " ".join(line), "the line shows the run that failed"
