"""`idwell-sync history TENANT`: an operator sees the tenant's last runs from the state store, newest
first: when each started, how long it took, its status, --allow-deletes, its writes per action, its
findings and, for a failed run, why it failed; also for a run killed with `kill -9`, which the next
run closes when it takes over the dead run's lock."""
from __future__ import annotations

import datetime as dt
import json
import socket

from killed_runs import kill_a_running_run


def history(ws, *args: str) -> list[dict]:
    done = ws.cli("history", "demo", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def started(entry: dict) -> dt.datetime:
    assert entry["started_at"].endswith("Z"), entry["started_at"]
    return dt.datetime.fromisoformat(entry["started_at"])


def test_history_shows_each_run_with_its_writes_findings_and_why_a_failed_run_failed(ws):
    path = str(ws.tenant_file())
    first = ws.cli("run", path, "--date", "2026-06-01", "--json")
    assert first.returncode == 0, first.stderr
    first = json.loads(first.stdout)
    second = ws.cli("run", path, "--date", "2026-06-01", "--allow-deletes")
    assert second.returncode == 0, second.stderr
    ws.erp_execute("DROP TABLE vertragpartner")                    # the ERP's contract parties are gone
    failed = ws.cli("run", path, "--date", "2026-06-01")
    assert failed.returncode == 4, failed.stderr
    error = failed.stderr.split("error: ", 1)[1].split("\n  what to do:")[0]

    runs = history(ws)
    assert [r["status"] for r in runs] == ["failed", "ok", "ok"]
    assert [r["allow_deletes"] for r in runs] == [False, True, False]
    assert started(runs[0]) >= started(runs[1]) >= started(runs[2])
    assert all(r["duration_s"] is not None and r["duration_s"] >= 0 for r in runs)
    assert runs[0]["message"] == error and "no such table" in error.lower()
    assert runs[1]["message"] is None and runs[2]["message"] is None
    oldest = runs[2]
    assert oldest["writes"] == {a: sum(c[a] for c in first["entities"].values()) for a in ("create", "update", "delete")}
    assert oldest["writes"]["create"] == first["writes"] > 0
    assert oldest["findings"] == sum(first["findings"].values()) > 0
    assert runs[1]["writes"] == {"create": 0, "update": 0, "delete": 0}
    assert runs[0]["writes"] is None and runs[0]["findings"] is None      # it failed before it wrote

    assert [r["run_id"] for r in history(ws, "--limit", "2")] == [r["run_id"] for r in runs[:2]]

    text = ws.cli("history", "demo")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("tenant 'demo': the last 3 runs, newest first (state store sqlite:///")
    head = next(i for i, line in enumerate(lines) if "started (UTC)" in line)
    for word in ("duration", "status", "allow-deletes", "create", "update", "delete", "findings"):
        assert word in lines[head], word
    failed_row, message, ok_row, first_row = lines[head + 1:head + 5]
    assert failed_row.split()[:1] == [runs[0]["started_at"]] and " failed " in failed_row
    assert message.strip() == error
    assert " ok " in ok_row and " yes " in ok_row
    assert f"{first['writes']:,}" in first_row.split() and f"{sum(first['findings'].values()):,}" in first_row.split()


def test_history_of_a_store_that_does_not_exist_says_so_and_creates_nothing(ws):
    ws.tenant_file()
    done = ws.cli("history", "demo", "--state", "sqlite:///elsewhere/state.sqlite")
    assert done.returncode == 10
    assert "tenant 'demo': there is no state store at elsewhere/state.sqlite" in done.stderr
    assert "--state" in done.stderr and "Traceback" not in done.stderr
    assert not (ws.root / "elsewhere").exists()


def test_a_state_store_given_as_a_path_is_answered_with_its_url(ws):
    """--state /path/to/state.sqlite (a path, not a URL): the message says how to write it as one;
    a value that may hold a password (':' or '@') is not repeated."""
    ws.tenant_file()
    path = ws.root / "elsewhere" / "state.sqlite"
    done = ws.cli("history", "demo", "--state", str(path))
    assert done.returncode == 10
    assert f"for the SQLite file {path} write sqlite:///{path}" in done.stderr, done.stderr
    done = ws.cli("history", "demo", "--state", "erp:Geheim99@db.example")
    assert done.returncode == 10 and "Geheim99" not in done.stderr
    assert "not a URL such as sqlite:///var/state.sqlite" in done.stderr


def test_history_with_no_runs_yet(ws):
    ws.tenant_file()
    ws.state().close()                                              # the store exists, without runs
    done = ws.cli("history", "demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tenant 'demo': no runs in the run history")
    assert history(ws) == []


def test_a_password_in_a_message_that_an_older_version_stored_unmasked_is_masked_when_shown(ws):
    """Rows written before messages were masked, or by another tool sharing the store: history
    and status mask a URL's password and an ODBC PWD= as they show them."""
    ws.tenant_file()
    state = ws.state()
    run_id = state.start_run("demo")
    state.finish_run(run_id, status="ok")
    with state.engine.begin() as c:     # as an older version wrote it, behind finish_run's masking
        c.execute(state._runs.update().where(state._runs.c.run_id == run_id).values(
            status="failed", message="cannot connect to mssql+pyodbc://sync:Geheim-4711@erp/domus;PWD=Zweit-0815"))
    state.close()

    [shown] = history(ws)
    text = ws.cli("history", "demo")
    status = ws.cli("status", "--json", "--tenants-dir", str(ws.root / "tenants"))
    for out in (shown["message"], text.stdout, status.stdout):
        assert "Geheim-4711" not in out and "Zweit-0815" not in out
    assert shown["message"] == "cannot connect to mssql+pyodbc://sync:***@erp/domus;PWD=***"
    assert "sync:***@erp" in status.stdout, status.stdout + status.stderr


def test_a_run_killed_with_kill_9_is_shown_failed_once_the_next_run_took_over_its_lock(ws):
    path = str(ws.tenant_file())
    pid = kill_a_running_run(ws.state_url, "demo")                  # kill -9: nothing cleaned up
    [before] = history(ws)
    assert before["status"] == "running" and before["finished_at"] is None

    done = ws.cli("run", path, "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert "took over a stale run lock" in done.stderr and "recorded as failed" in done.stderr

    latest, dead = history(ws)
    assert latest["status"] == "ok"
    assert (dead["run_id"], dead["status"]) == (before["run_id"], "failed")
    assert dead["finished_at"] is None and dead["duration_s"] is None, "its end is not known"
    host = socket.gethostname()
    assert dead["message"].startswith(f"ended without finishing (process {pid} on {host} gone; "
                                      f"its lock was taken over at {latest['started_at'][:10]} ")
    text = ws.cli("history", "demo").stdout
    assert f"ended without finishing (process {pid} on {host} gone" in text

    again = ws.cli("run", path, "--date", "2026-06-01")
    assert again.returncode == 0 and "lock" not in again.stderr, again.stderr
    assert [r["status"] for r in history(ws)] == ["ok", "ok", "failed"]
