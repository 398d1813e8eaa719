"""`idwell-sync history TENANT` as an operator scans it: one line per run, the figures in columns.

Runs are recorded with the state store's own API, as tests/test_status.py records them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_status import default_store, record, tenants


def history(folder: Path, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    return subprocess.run([sys.executable, "-m", "engine", "history", *args], cwd=folder, capture_output=True,
                          text=True, timeout=60, env=clean)


def table(text: str) -> list[list[str]]:
    """The header and the run lines of the table, split into cells at two spaces or more."""
    import re
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()
            if line.startswith("  ") and not line.startswith("      ")]


def test_writes_a_stopped_run_sent_without_an_answer_have_a_column_of_their_own(tmp_path):
    """Among ten runs, the one stopped with batches in flight shows its unconfirmed writes in the
    row, beside the writes the portal accepted (they were a line under the run, which a scan of
    the columns passes over); a run with every answer shows 0, one whose writes are not known -.
    `history --json` is as it was."""
    tenants(tmp_path, {"acme.yaml": "id: acme\n"})
    url = default_store(tmp_path)
    record(url, "acme", "ok", "2026-12-01T02:30:04Z", counts={"users": {"create": 5}}, findings={})
    record(url, "acme", "failed", "2026-12-02T02:30:04Z", seconds=1800, message="stopped (SIGTERM)",
           counts={"users": {"create": 300, "update": 12, "unconfirmed": 1200}})
    record(url, "acme", "failed", "2026-12-03T02:30:04Z", seconds=3, message="the ERP cannot be reached")
    done = history(tmp_path, "acme")
    assert done.returncode == 0, done.stderr
    head, failed, stopped, ok = table(done.stdout)
    assert head == ["started (UTC)", "duration", "status", "allow-deletes", "create", "update", "delete",
                    "unconfirmed", "held", "refused", "findings"]
    assert stopped == ["2026-12-02T02:30:04Z", "30 min 00 s", "failed", "no", "300", "12", "0", "1,200", "0", "0",
                       "-"]
    assert ok[4:8] == ["5", "0", "0", "0"] and failed[4:8] == ["-", "-", "-", "-"]
    assert "      1,200 writes sent without an answer (unconfirmed): the portal may or may not have made them; the " \
           "next complete run checks them and sends again what the portal did not make" in done.stdout.splitlines()
    entries = json.loads(history(tmp_path, "acme", "--json").stdout)
    assert [e["unconfirmed"] for e in entries] == [None, 1200, 0]
    assert set(entries[1]) == {"run_id", "started_at", "finished_at", "duration_s", "status", "allow_deletes", "writes",
                               "held", "rejected", "unconfirmed", "settled", "findings", "message"}


def test_a_run_whose_end_was_never_recorded_is_unfinished_unless_a_live_run_holds_the_lock(tmp_path):
    """A run killed with kill -9 stays `running` in the run history until the next run takes the
    lock. The table said `running`, with no duration and no word, for a process long gone: it now
    says `unfinished` and why under it, as `status` words it; a run under way (its lock held by a
    live process) is `running`. `history --json` keeps the recorded status."""
    from killed_runs import kill_a_running_run
    from test_status import row, status

    from engine.state import StateStore
    tenants(tmp_path, {"acme.yaml": "id: acme\n", "bau.yaml": "id: bau\n", "city.yaml": "id: city\n"})
    url = default_store(tmp_path)
    record(url, "acme", "ok", "2026-12-02T02:30:04Z")
    pid = kill_a_running_run(url, "acme")                           # its lock left behind, stale
    record(url, "bau", "running", "2026-12-03T02:30:04Z")           # its end never recorded, no lock
    done = history(tmp_path, "acme")
    assert done.returncode == 0, done.stderr
    killed, ok = table(done.stdout)[1:]
    assert killed[1:3] == ["-", "unfinished"] and ok[2] == "ok"
    [why] = [line for line in done.stdout.splitlines() if line.startswith("      ")]
    assert why.startswith("      ended without finishing (its lock is stale: its process is gone (host ")
    assert f"pid {pid}" in why and why.endswith("); the next run records it as failed")
    assert [e["status"] for e in json.loads(history(tmp_path, "acme", "--json").stdout)] == ["running", "ok"]
    bau = history(tmp_path, "bau").stdout
    assert table(bau)[1][2] == "unfinished"
    assert "      ended without finishing (no run holds the tenant's lock); the next run records it as failed" in \
        bau.splitlines()
    out = status(tmp_path).stdout
    assert row(out, "acme")[:2] == ["acme", "failed"] and "unfinished" in row(out, "acme")
    store = StateStore(url)
    try:
        with store.lock("city"):                                    # a run of this (live) process under way
            store.start_run("city")
            under_way = history(tmp_path, "city").stdout
            assert table(under_way)[1][2] == "running" and "ended without finishing" not in under_way
            assert row(status(tmp_path).stdout, "city")[:2] == ["city", "running"]
            assert "running" in row(status(tmp_path).stdout, "city")[2:]
    finally:
        store.close()


def test_a_run_refused_by_the_lock_has_no_duration_in_the_tables(tmp_path):
    """A run refused by the lock (exit 7) did not run: its duration is `-`, not `0.0 s`, which read
    as a run that ended at once; --json keeps its 0 s from refusal to record."""
    from test_status import row, status
    tenants(tmp_path, {"acme.yaml": "id: acme\n"})
    url = default_store(tmp_path)
    record(url, "acme", "ok", "2026-12-02T02:30:04Z", seconds=3)
    record(url, "acme", "locked", "2026-12-03T02:30:04Z", message="tenant 'acme' is locked by another run")
    refused, ok = table(history(tmp_path, "acme").stdout)[1:]
    assert (refused[1:3], ok[1:3]) == (["-", "locked"], ["3.0 s", "ok"])
    assert json.loads(history(tmp_path, "acme", "--json").stdout)[0]["duration_s"] == 0.0
    assert row(status(tmp_path).stdout, "acme")[:5] == ["acme", "locked", "2026-12-03T02:30:04Z", "-", "locked"]


def test_a_limit_past_what_sql_takes_is_a_usage_error_naming_the_range(tmp_path):
    """--limit 99999999999999999999 reached the state store's LIMIT and ended in a traceback (exit 70)."""
    tenants(tmp_path, {"acme.yaml": "id: acme\n"})
    record(default_store(tmp_path), "acme", "ok", "2026-12-01T02:30:04Z", counts={"users": {"create": 5}}, findings={})
    done = history(tmp_path, "acme", "--limit", "99999999999999999999")
    assert done.returncode == 2, done.stderr
    assert "argument --limit: '99999999999999999999' is not a number of runs: give 1 to 1,000,000,000" in done.stderr
    assert history(tmp_path, "acme", "--limit", "1000000000").returncode == 0
