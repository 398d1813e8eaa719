"""A run stopped by SIGTERM (a scheduler ending its window, `kill`) ends as after Ctrl-C: exit
code 143, its run history says failed, its lock is released, and the state remembers exactly
what the portal accepted before the stop, so that the next run neither waits for a lock nor
calls the stopped run's writes drift."""
from __future__ import annotations

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


def test_sigterm_during_the_writes_ends_the_run_cleanly(tmp_path):
    import shutil
    erp, portal, state_url = tmp_path / "erp.sqlite", tmp_path / "portal.sqlite", f"sqlite:///{tmp_path / 'state.sqlite'}"
    generate(f"sqlite:///{erp}", size="M", seed=42)          # 71,744 writes: 15 transactions of 5,000
    doc = yaml.safe_load(DEMO_TENANT.read_text("utf-8"))
    doc.update(source={"type": "sql", "url": f"sqlite:///{erp}"}, target={"type": "local", "path": str(portal)},
               state_url=state_url)
    (tmp_path / "tenants").mkdir()
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    tenant = tmp_path / "tenants" / "demo.yaml"
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")

    run = subprocess.Popen([sys.executable, "-m", "engine", "run", str(tenant), "--date", "2026-06-01"],
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not portal_ids(portal, "buildings") and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)                                    # the first transaction is in: the writes go on
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 143, err
    assert "stopped (SIGTERM)" in err and "Traceback" not in err

    state = StateStore(state_url)
    try:
        assert state.runs("demo")[0].status == "failed"
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
    assert summary["writes"] == 71_744 - sum(map(len, in_portal.values()))
