"""`idwell-sync run` of the demo tenant against a real sandbox process: the issue's acceptance.

Each test starts its own sandbox (its own store and write log) and runs the engine as a user
would, as a separate process (`python -m engine run ... --json`).
"""
from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict

import pytest

from engine.config.model import ENTITIES
from engine.errors import ExitCode
from engine.sandbox import read_write_log
from engine.sandbox.process import sandbox_process
from engine.state import StateStore


def writes_by_record(log_path) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in read_write_log(log_path):
        if e["op"] == "upsert":
            out[(e["resource"], e["external_id"])].append(e["hash"])
    return out


def wait_until_quiet(log_path, quiet: float = 0.5, limit: float = 15.0) -> None:
    """Until the write log has not grown for `quiet` seconds (at most `limit` seconds)."""
    deadline, size, since = time.monotonic() + limit, -1, time.monotonic()
    while time.monotonic() < deadline:
        now = log_path.stat().st_size
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def test_demo_tenant_pointed_at_the_sandbox_gives_the_local_store_state(
        portal_state, workspace, sandbox, expected_portal):
    workspace.use_sandbox(sandbox.base_url)
    first = workspace.run()
    assert first.code == ExitCode.OK, first.stderr
    assert portal_state(sandbox.data) == expected_portal
    again = workspace.run()
    assert again.code == ExitCode.OK and again.summary["writes"] == 0
    assert first.summary["retries"] is None and again.summary["retries"] is None


def test_faults_do_not_change_the_result_nor_write_anything_twice(portal_state, workspace, tmp_path, expected_portal):
    with sandbox_process(tmp_path / "faulty.sqlite", "--fail-429", "0.2", "--fail-503", "0.1", "--drop", "0.05",
                         "--cut", "0.05", "--seed", "11", token="t-sandbox-1") as sb:
        workspace.use_sandbox(sb.base_url, batch_size=40, concurrency=4, max_retries=15)
        run = workspace.run()
        assert run.code == ExitCode.OK, run.stderr
        assert portal_state(sb.data) == expected_portal
        log = list(read_write_log(sb.write_log))
    retries = run.summary["retries"]                     # the run says the portal throttled and failed
    assert retries["requests"] == sum(retries["by_reason"].values()) > 0 and retries["waited_s"] > 0
    assert {"429 rate_limited", "503 unavailable", "body not valid JSON"} <= set(retries["by_reason"]), retries
    from engine.report import render_text
    times = "once" if retries["requests"] == 1 else f"{retries['requests']:,} times"
    assert f"the import API was asked again {times} (" in render_text(run.summary, [])
    total = sum(len(r) for r in expected_portal.values())
    writes = writes_by_record(sb.write_log)
    assert len(writes) == total
    assert {k: v for k, v in writes.items() if len(set(v)) > 1} == {}       # never twice with different content
    assert {k: v for k, v in writes.items() if len(v) > 1} == {}            # nor twice at all
    assert len(log) == total


def test_a_run_killed_during_apply_converges_when_started_again(portal_state, workspace, tmp_path, expected_portal):
    total = sum(len(r) for r in expected_portal.values())
    with sandbox_process(tmp_path / "slow.sqlite", "--latency-ms", "30", token="t-sandbox-1") as sb:
        kill_the_first_run_part_way(workspace, sb, total)   # returns once the batch in flight has landed
        written = sum(len(r) for r in portal_state(sb.data).values())
        assert 0 < written < total
        rerun = workspace.run()
        assert rerun.code == ExitCode.OK, rerun.stderr
        assert portal_state(sb.data) == expected_portal
        assert rerun.summary["writes"] == total - written
    assert {k: v for k, v in writes_by_record(sb.write_log).items() if len(v) > 1} == {}


def test_refused_records_are_reported_and_retried_on_the_next_run(portal_state, workspace, sandbox, expected_portal):
    victim = next(u for u in expected_portal["users"].values() if u["email"])
    store = sandbox.store()
    store.add_manual_user(last_name="Von Hand", email=victim["email"].upper())       # created by hand in the portal
    store.close()
    workspace.use_sandbox(sandbox.base_url)
    first = workspace.run("--findings", "findings.csv")
    assert first.code == ExitCode.REJECTED, first.stderr
    assert first.summary["entities"]["users"]["rejected"] == 1
    rows = list(csv.DictReader((workspace.root / "findings.csv").open(encoding="utf-8-sig")))
    refused = [r for r in rows if r["code"] == "rejected" and r["entity"] == "users"]
    assert len(refused) == 1 and "email_taken" in refused[0]["message"] and refused[0]["field"] == "email"
    assert victim["external_id"] not in portal_state(sandbox.data)["users"]
    with sqlite3.connect(sandbox.data) as conn:            # the portal team archives the hand-made account
        conn.execute("UPDATE users SET archived = 1 WHERE external_id IS NULL")
    second = workspace.run()
    assert second.code == ExitCode.OK, second.stderr
    assert portal_state(sandbox.data) == expected_portal


def test_an_area_that_is_not_a_number_ends_alike_against_the_local_store_and_the_sandbox(
        portal_state, workspace, sandbox):
    """'NaN' and 'inf' in the ERP's text become floats JSON cannot carry: the sandbox run crashed
    (exit 70) on sending them, the local store kept NaN as null and updated it on every run."""
    workspace.erp_execute("UPDATE Einheit SET Flaeche = CASE EinheitID % 2 WHEN 0 THEN 'NaN' ELSE 'inf' END "
                          "WHERE EinheitID IN (SELECT EinheitID FROM Einheit WHERE Fiktiv = 0 "
                          "AND Flaeche IS NOT NULL LIMIT 2)")
    local = workspace.run()
    local_state = portal_state(workspace.root / "var/portal/demo.sqlite")
    workspace.use_sandbox(sandbox.base_url)
    remote = workspace.run()
    assert (local.code, remote.code) == (ExitCode.OK, ExitCode.OK), remote.stderr
    assert portal_state(sandbox.data) == local_state
    assert local.summary["entities"]["units"]["desired"] == remote.summary["entities"]["units"]["desired"]
    assert all(u["area_m2"] is None or 0 <= u["area_m2"] < 1e9 for u in local_state["units"].values())
    assert workspace.run().summary["writes"] == 0
    workspace.use_local()
    assert workspace.run().summary["writes"] == 0


def test_a_refused_token_stops_the_run_with_exit_5_naming_the_reference(portal_state, workspace, sandbox):
    workspace.use_sandbox(sandbox.base_url)
    run = workspace.run(token="not-the-right-token-4711")
    assert run.code == ExitCode.TARGET
    assert "${env:IDWELL_TOKEN_DEMO}" in run.stderr and "'demo'" in run.stderr and "401" in run.stderr
    assert "not-the-right-token-4711" not in run.stderr
    assert all(not records for records in portal_state(sandbox.data).values())


def test_deletion_guard_holds_deletes_after_an_empty_extract_until_allowed(
        portal_state, workspace, sandbox, expected_portal):
    workspace.use_sandbox(sandbox.base_url)
    assert workspace.run().code == ExitCode.OK
    workspace.erp_execute("DELETE FROM VertragPartner")       # a broken extract: no contract parties at all
    held = workspace.run()
    assert held.code == ExitCode.DELETES_HELD, held.stderr
    assert any("occupancies" in r and "no rows" in r for r in held.summary["deletes_held"])
    assert held.summary["entities"]["occupancies"]["held"] == len(expected_portal["occupancies"])
    assert portal_state(sandbox.data) == expected_portal                      # nothing deleted
    released = workspace.run("--allow-deletes")
    assert released.code == ExitCode.OK, released.stderr
    after = portal_state(sandbox.data)
    assert after["occupancies"] == {} and after["buildings"] == expected_portal["buildings"]
    state = StateStore(f"sqlite:///{workspace.root / 'var/state.sqlite'}")
    try:
        runs = state.runs("demo")
    finally:
        state.close()
    assert [(r.status, r.allow_deletes) for r in runs[:3]] == [("ok", True), ("deletes_held", False), ("ok", False)]


def test_portal_edits_are_reported_as_drift_and_overwritten(portal_state, workspace, sandbox, expected_portal):
    workspace.use_sandbox(sandbox.base_url)
    assert workspace.run().code == ExitCode.OK
    unit = next(iter(expected_portal["units"]))
    user = next(u for u in expected_portal["users"].values() if u["first_name"])
    store = sandbox.store()
    store.edit("units", unit, floor="Dachgeschoss (von Hand)", name="renamed in the portal")
    store.edit("users", user["external_id"], first_name="Edited")
    store.close()
    run = workspace.run()
    assert run.code == ExitCode.OK, run.stderr
    assert run.summary["drift"] == {"units": {"floor": 1, "name": 1}, "users": {"first_name": 1}}
    assert run.summary["entities"]["units"]["update"] == 1
    assert portal_state(sandbox.data) == expected_portal
    assert {e: len(r) for e, r in portal_state(sandbox.data).items()} == {e: len(expected_portal[e]) for e in ENTITIES}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "kill -9"])
def test_a_run_stopped_with_batches_in_flight_does_not_report_its_own_writes_as_drift(workspace, tmp_path, stop):
    """Stopped while batches are on their way: the portal writes them, the run never hears so.
    The next run and the ERP's next change must not call those values edits made in the portal.
    SIGTERM: the run remembers what was in flight. kill -9 (the out-of-memory killer, a machine
    going down): it records nothing, but noted its updates as pending before sending the first."""
    with sandbox_process(tmp_path / "slow.sqlite", token="t-sandbox-1") as sb:
        workspace.use_sandbox(sb.base_url, batch_size=20, concurrency=2)
        assert workspace.run().code == ExitCode.OK
    workspace.erp_execute("UPDATE adresse SET telefon = '030 1234' || adressnr")
    with sandbox_process(tmp_path / "slow.sqlite", "--latency-ms", "300", token="t-sandbox-1") as sb:
        workspace.use_sandbox(sb.base_url, batch_size=20, concurrency=2)
        before = sum(1 for _ in read_write_log(sb.write_log)) if sb.write_log.exists() else 0
        engine = subprocess.Popen(workspace.command(), cwd=workspace.root, env=workspace.env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and engine.poll() is None:
                if sum(1 for _ in read_write_log(sb.write_log)) >= before + 60:
                    break
                time.sleep(0.02)
            engine.send_signal(stop)
        finally:
            out, _ = engine.communicate(timeout=60)
        if stop == signal.SIGTERM:
            assert engine.returncode == 143, "the run finished before it could be stopped"
            failure = json.loads(out)                  # --json: what the portal accepted before the stop
            assert (failure["status"], failure["exit_code"]) == ("failed", 143) and failure["writes"] > 0
            assert failure["unconfirmed"] > 0          # and the batches it sent without an answer
        else:
            assert engine.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        wait_until_quiet(sb.write_log)                 # the batches in flight land
        assert sum(1 for _ in read_write_log(sb.write_log)) > before
    with sandbox_process(tmp_path / "slow.sqlite", token="t-sandbox-1") as sb:
        workspace.use_sandbox(sb.base_url, batch_size=20, concurrency=2)
        rest = workspace.run()                         # after kill -9: takes over the lock the run left
        assert rest.code == ExitCode.OK and rest.summary["drift"] == {}, rest.stderr
        settled = rest.summary["settled"]["users"]     # how it found the writes left unconfirmed
        if stop == signal.SIGTERM:                     # those in flight, which all landed
            assert settled == {"landed": failure["unconfirmed"], "sent_again": 0, "refused": 0, "gone": 0}
        else:                                          # every update noted before the first was sent
            assert settled["landed"] > 0 and settled["sent_again"] == rest.summary["writes"] > 0, settled
        workspace.erp_execute("UPDATE adresse SET telefon = '030 9999' || adressnr")
        night = workspace.run()
        assert night.code == ExitCode.OK, night.stderr
        assert night.summary["entities"]["users"]["update"] > 0
        assert night.summary["drift"] == {}, night.summary["drift"]


def kill_the_first_run_part_way(workspace, sb, total: int) -> None:
    """The tenant's first run (every record a create) against `sb`, killed with kill -9 once a
    third of the records are in the portal; returns when the batch in flight has landed."""
    workspace.use_sandbox(sb.base_url, batch_size=10, concurrency=1)
    engine = subprocess.Popen(workspace.command(), cwd=workspace.root, env=workspace.env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and engine.poll() is None:
            if sb.write_log.exists() and sum(1 for _ in read_write_log(sb.write_log)) >= total // 3:
                break
            time.sleep(0.02)
        engine.kill()
    finally:
        engine.wait(timeout=30)
    assert engine.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    wait_until_quiet(sb.write_log)


def test_records_a_killed_run_created_are_checked_for_drift_by_the_next_runs(portal_state, workspace, tmp_path,
                                                                             expected_portal):
    """kill -9 while creates are on their way: the run records nothing of what the portal accepted.
    A record it created and a person then edited in the portal is drift for the next run, as any
    record the engine wrote; one found as sent is drift for the run after, once edited."""
    total = sum(len(r) for r in expected_portal.values())
    with sandbox_process(tmp_path / "slow.sqlite", "--latency-ms", "30", token="t-sandbox-1") as sb:
        kill_the_first_run_part_way(workspace, sb, total)
        landed = portal_state(sb.data)
        entity = next(e for e in ("units", "buildings") if len(landed[e]) >= 2)
        first, second = sorted(landed[entity])[:2]
        store = sb.store()
        store.edit(entity, first, name="renamed in the portal before the next run")
        store.close()
        rest = workspace.run()                         # takes over the killed run's lock, writes the rest
        assert rest.code == ExitCode.OK, rest.stderr
        assert rest.summary["drift"] == {entity: {"name": 1}}, rest.summary["drift"]
        assert portal_state(sb.data) == expected_portal
        store = sb.store()
        store.edit(entity, second, name="renamed in the portal after it")
        store.close()
        night = workspace.run()
        assert night.code == ExitCode.OK, night.stderr
        assert night.summary["drift"] == {entity: {"name": 1}}, night.summary["drift"]
        assert night.summary["entities"][entity]["update"] == 1
        assert portal_state(sb.data) == expected_portal
