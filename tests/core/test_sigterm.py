"""A run stopped by SIGTERM (a scheduler ending its window, `kill`) ends as after Ctrl-C: exit
code 143, its run history says failed, its lock is released, and the state remembers exactly
what the portal accepted before the stop, so that the next run neither waits for a lock nor
calls the stopped run's writes drift."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from engine.demo import generate
from engine.state import StateStore

from conftest import DEMO_TENANT, MAPPINGS, ENTITIES

pytestmark = pytest.mark.slow


def portal_ids(path, entity: str) -> list[str]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return [r[0] for r in con.execute(f"SELECT external_id FROM {entity} WHERE archived = 0")]
    except sqlite3.Error:             # not created yet, or its tables not yet
        return []


def tenant_file(tmp_path, erp, target: dict) -> tuple:
    import shutil
    state_url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    doc = yaml.safe_load(DEMO_TENANT.read_text("utf-8"))
    doc.update(source={"type": "sql", "url": f"sqlite:///{erp}"}, target=target, state_url=state_url)
    (tmp_path / "tenants").mkdir()
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    tenant = tmp_path / "tenants" / "demo.yaml"
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    return tenant, state_url


def test_sigterm_during_the_writes_ends_the_run_cleanly(tmp_path):
    erp, portal = tmp_path / "erp.sqlite", tmp_path / "portal.sqlite"
    generate(f"sqlite:///{erp}", size="M", seed=42)          # 71,744 writes: 15 transactions of 5,000
    tenant, state_url = tenant_file(tmp_path, erp, {"type": "local", "path": str(portal)})

    run = subprocess.Popen([sys.executable, "-m", "engine", "run", str(tenant), "--date", "2026-06-01"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not portal_ids(portal, "buildings") and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)                                    # the first transaction is in: the writes go on
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert "idwell-sync run: tenant 'demo': stopped (SIGTERM)\n  what to do: the next run starts again" in err
    assert "Traceback" not in err

    state = StateStore(state_url)
    try:
        assert (state.runs("demo")[0].status, state.runs("demo")[0].message) == ("failed", "stopped (SIGTERM)")
        written = {e: set(state.last_written("demo", e, portal_ids(portal, e))) for e in ENTITIES}
        in_portal = {e: set(portal_ids(portal, e)) for e in ENTITIES}
        assert written == in_portal, "the state does not remember exactly what the portal accepted"
        assert 0 < sum(map(len, in_portal.values())) < 71_744
    finally:
        state.close()

    again = subprocess.run([sys.executable, "-m", "engine", "run", str(tenant), "--date", "2026-06-01", "--json"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "lock" not in again.stderr                       # no stale lock to take over
    summary = yaml.safe_load(again.stdout)
    assert summary["drift"] == {} and summary["status"] == "ok"

    plan = subprocess.Popen([sys.executable, "-m", "engine", "plan", str(tenant), "--date", "2026-06-01", "--json",
                             "-v"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in plan.stderr:                                # stopped once it reads the ERP
        seen.append(line)
        if "engine.progress: extract" in line:
            break
    plan.send_signal(signal.SIGTERM)
    out, err = plan.communicate(timeout=60)
    assert plan.returncode == 143, "".join(seen) + err
    assert "idwell-sync plan: tenant 'demo': stopped (SIGTERM)\n  what to do: nothing was written to the portal" in err
    assert yaml.safe_load(out)["error"]["hint"] == "nothing was written to the portal"
    assert summary["writes"] == 71_744 - sum(map(len, in_portal.values()))


def test_sigterm_while_writing_to_the_import_api_remembers_every_answered_batch(tmp_path):
    """Against the import API (the sandbox, each request delayed), a stop remembers every batch
    the portal answered; only the batches in flight at the stop (at most `concurrency` of them)
    may be in the portal unremembered, and the next run finds them there as desired, not as drift."""
    import os
    from engine.sandbox.process import sandbox_process
    erp = tmp_path / "erp.sqlite"
    generate(f"sqlite:///{erp}", size="S", seed=42)          # 1,088 writes: 55 batches of 20
    with sandbox_process(tmp_path / "sandbox.sqlite", "--latency-ms", "100", token="t-stop") as sandbox:
        tenant, state_url = tenant_file(tmp_path, erp, {"type": "idwell", "base_url": sandbox.base_url,
                                                        "token": "${env:STOP_TOKEN}", "batch_size": 20,
                                                        "concurrency": 2})
        env = {**os.environ, "STOP_TOKEN": "t-stop"}
        command = [sys.executable, "-m", "engine", "run", str(tenant), "--date", "2026-06-01"]
        run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
        deadline = time.monotonic() + 120
        # a unit in the portal: the buildings' group (13, one batch) was answered, since the
        # next group starts only then; waiting for the buildings themselves raced their answer
        while not portal_ids(sandbox.data, "units") and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before it could be stopped"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
        assert run.returncode == 143, err
        time.sleep(0.5)                                      # a batch in flight is answered by now

        state = StateStore(state_url)
        try:
            assert state.runs("demo")[0].status == "failed"
            in_portal = {e: set(portal_ids(sandbox.data, e)) for e in ENTITIES}
            written = {e: set(state.last_written("demo", e, in_portal[e])) for e in ENTITIES}
        finally:
            state.close()
        assert all(written[e] <= in_portal[e] for e in ENTITIES)
        unremembered = sum(len(in_portal[e] - written[e]) for e in ENTITIES)
        assert sum(map(len, written.values())) >= 10 and unremembered <= 2 * 20, unremembered

        again = subprocess.run([*command, "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                               env=env)
        assert again.returncode == 0, again.stderr
        summary = yaml.safe_load(again.stdout)
        assert summary["drift"] == {} and summary["writes"] == 1_088 - sum(map(len, in_portal.values()))


class _StopAsTheRunIsWritten(StateStore):
    """A real state store; a SIGTERM arrives just as the run's row has been written (the CLI's
    handler calls request_stop; a signal lands between two bytecodes, here the last of start_run)."""

    def start_run(self, tenant, **kw):
        from engine._stop import request_stop, Terminated
        run_id = super().start_run(tenant, **kw)
        request_stop(Terminated)
        return run_id


def test_a_stop_as_the_run_is_written_to_the_history_is_recorded_as_failed_not_left_running(ws):
    from engine._stop import Terminated
    from engine.pipeline import run_tenant
    state = _StopAsTheRunIsWritten(ws.state_url)
    try:
        with pytest.raises(Terminated):
            run_tenant(ws.tenant(), state)
    finally:
        state.close()
    state = ws.state()
    try:
        [run] = state.runs("demo")
        assert (run.status, run.message) == ("failed", "stopped (SIGTERM)")
        assert state.locks(["demo"]) == {}
    finally:
        state.close()


def test_sigterm_while_the_findings_report_is_written_leaves_the_run_as_recorded(ws):
    """The run was applied and recorded; then its report is written, which for a workbook of many
    findings takes a while (docs/summary.md: about 10 s per 100,000), and a scheduler ending its
    window may stop it there. Exit 143 as for any stop, but the error says that the run itself
    stands as recorded (its history says ok) and only the report was not written; the --json
    summary is the run's own, with the exit code and the error added. It said 'stopped (SIGTERM)'
    and 'the next run starts again', and --json said status failed, without writes."""
    ws.erp_execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
                   "INSERT INTO Adresse (adressnr, nachname, vorname) SELECT 9000000 + i, 'Muster ' || i, 'Max' FROM n")
    path = ws.tenant_file()
    state = ws.state_url.removeprefix("sqlite:///")

    def recorded() -> bool:
        try:
            with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as con:
                return any(s != "running" for s, in con.execute("SELECT status FROM runs"))
        except sqlite3.Error:          # not created yet
            return False

    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    run = subprocess.Popen([sys.executable, "-m", "engine", "run", str(path), "--date", "2026-06-01",
                            "--findings", "report.xlsx", "--json"],
                           cwd=ws.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not recorded() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)                      # into the report: 200,000 findings take seconds to lay out
    assert run.poll() is None, "the run ended before its report could be stopped"
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    message = ("tenant 'demo': stopped (SIGTERM) while writing --findings report.xlsx; the run itself was applied "
               "and recorded (status ok, exit code 0 without this), only the report file was not written")
    assert err == f"idwell-sync run: {message}\n  what to do: the next run writes the report again\n"
    summary = json.loads(out)
    assert (summary["status"], summary["exit_code"], summary["error"]) == (
        "ok", 143, {"message": message, "hint": "the next run writes the report again"})
    latest = json.loads(ws.cli("history", str(path), "--json").stdout)[0]
    assert (latest["status"], latest["writes"]["create"]) == ("ok", summary["writes"]) and summary["writes"] > 0
    assert not (ws.root / "report.xlsx").exists() and not list(ws.root.glob(".report.xlsx.*"))
