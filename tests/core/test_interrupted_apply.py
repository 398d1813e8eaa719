"""A run whose target fails part-way remembers what the portal accepted: the next run must not
report the engine's own writes as edits made in the portal (drift)."""
from __future__ import annotations

import pytest

from engine.demo import REFERENCE_DATE as RUN_DATE
from engine.errors import TargetError
from engine.pipeline import run_tenant
from engine.targets.local import LocalStore


class FailsHalfway:
    """The local portal store, but the connection 'drops' after half of the changes."""
    name = "local"

    def __init__(self, path):
        self.store = LocalStore(path)

    def read(self, entity):
        return self.store.read(entity)

    def apply(self, changes, progress=None):
        accepted = self.store.apply(changes[: len(changes) // 2], progress)
        error = TargetError("the portal stopped answering")
        error.partial_outcomes = accepted
        raise error

    def close(self):
        self.store.close()


class FailsAtOnce(FailsHalfway):
    """The connection 'drops' before the portal accepted anything."""

    def apply(self, changes, progress=None):
        error = TargetError("the portal stopped answering")
        error.partial_outcomes = []
        raise error


def fail_part_way(ws, tenant, target_class) -> None:
    """A run of `tenant` against the portal store through `target_class`, which fails it."""
    target, state = target_class(ws.portal_path), ws.state()
    try:
        with pytest.raises(TargetError):
            run_tenant(tenant, state, run_date=RUN_DATE, target=target)
    finally:
        target.close()
        state.close()


def test_writes_accepted_before_a_failure_are_not_reported_as_drift_later(ws):
    tenant = ws.tenant()
    assert ws.run(tenant).exit_code == 0
    people = [r["adressnr"] for r in ws.erp_rows("SELECT adressnr FROM adresse ORDER BY adressnr")]
    ws.erp_execute(*[("UPDATE adresse SET nachname = nachname || ' I' WHERE adressnr = ?", (p,)) for p in people])
    fail_part_way(ws, tenant, FailsHalfway)
    ws.erp_execute(*[("UPDATE adresse SET nachname = nachname || 'I' WHERE adressnr = ?", (p,)) for p in people])
    night3 = ws.run(tenant)
    assert night3.summary["entities"]["users"]["update"] > 0
    assert [f for f in night3.findings if f.code == "drift"] == []


class LandsUnanswered(FailsHalfway):
    """Half of the changes answered; the next quarter written by the portal but its answer lost
    (batches in flight when the run stopped): those are `in_flight`, the rest never sent."""

    def apply(self, changes, progress=None):
        half, more = len(changes) // 2, len(changes) * 3 // 4
        accepted = self.store.apply(changes[:half], progress)
        self.store.apply(changes[half:more])
        error = TargetError("stopped (SIGTERM)")
        error.partial_outcomes, error.in_flight = accepted, list(changes[half:more])
        raise error


@pytest.mark.parametrize("erp_changes_again", ["the next night", "the night after"])
def test_writes_that_landed_without_an_answer_are_not_reported_as_drift(ws, erp_changes_again):
    """The records of batches in flight when a run stopped: the portal wrote them, the engine never
    heard so. Changed in the ERP the next night, or the night after a quiet one, they are updates,
    not edits made in the portal."""
    tenant = ws.tenant()
    assert ws.run(tenant).exit_code == 0
    people = [r["adressnr"] for r in ws.erp_rows("SELECT adressnr FROM adresse ORDER BY adressnr")]
    rename = [("UPDATE adresse SET nachname = nachname || ' I' WHERE adressnr = ?", (p,)) for p in people]
    ws.erp_execute(*rename)
    fail_part_way(ws, tenant, LandsUnanswered)
    if erp_changes_again == "the night after":
        quiet = ws.run(tenant)                      # writes what was never sent; the rest is in the portal
        assert quiet.exit_code == 0 and [f for f in quiet.findings if f.code == "drift"] == []
    ws.erp_execute(*[(sql.replace("' I'", "'I'"), args) for sql, args in rename])
    night = ws.run(tenant)
    assert night.summary["entities"]["users"]["update"] > 0
    assert [f for f in night.findings if f.code == "drift"] == []
    assert ws.run(tenant).summary["writes"] == 0


def test_writes_a_stopped_run_left_unconfirmed_stay_in_sight_after_a_run_that_could_not_reach_the_erp(ws):
    """The night after a run stopped with batches in flight, the run cannot reach the ERP and fails
    before it sends anything: its history row counts no unconfirmed writes, and `status` showed
    `failed` with the ERP's error only, though the portal may still hold the stopped run's writes
    unconfirmed. It says how many the state store holds pending (`pending_writes`) until a
    complete run settles them."""
    import json
    tenant = ws.tenant()
    assert ws.run(tenant).exit_code == 0
    people = [r["adressnr"] for r in ws.erp_rows("SELECT adressnr FROM adresse ORDER BY adressnr")]
    ws.erp_execute(*[("UPDATE adresse SET nachname = nachname || ' I' WHERE adressnr = ?", (p,)) for p in people])
    fail_part_way(ws, tenant, LandsUnanswered)
    [stopped, _] = json.loads(ws.cli("history", "demo", "--json").stdout)
    ws.tenant_file(source_url="postgresql+psycopg://sync@127.0.0.1:1/erp")   # connection refused
    assert ws.cli("run", "demo").returncode == 4
    folder = str(ws.root / "tenants")
    said = [line for line in ws.cli("status", "--tenants-dir", folder).stdout.splitlines() if "unconfirmed" in line]
    assert said == [f"      {stopped['unconfirmed']:,} writes left unconfirmed (pending in the state store): the "
                    "portal may or may not have made them; the next complete run checks them and sends again what the "
                    "portal did not make, or archives a record the ERP no longer has once the deletion guard lets it"]
    [entry] = json.loads(ws.cli("status", "--json", "--tenants-dir", folder).stdout)
    assert (entry["last_run"]["unconfirmed"], entry["pending_writes"]) == (None, stopped["unconfirmed"])
    night = ws.run(ws.tenant())
    assert night.exit_code == 0 and night.summary["settled"]["users"]["landed"] == stopped["unconfirmed"]
    assert "unconfirmed" not in ws.cli("status", "--tenants-dir", folder).stdout


def test_a_run_that_failed_while_applying_shows_in_the_history_what_the_portal_accepted(ws):
    """Its writes are not null (nothing written) but what the portal accepted before the failure."""
    import json
    tenant = ws.tenant()
    fail_part_way(ws, tenant, FailsHalfway)
    accepted = sum(len(records) for records in ws.portal().records.values())
    [failed] = json.loads(ws.cli("history", "demo", "--json").stdout)
    assert failed["status"] == "failed" and "the portal stopped answering" in failed["message"]
    assert failed["writes"] == {"create": accepted, "update": 0, "delete": 0} and accepted > 0
    [entry] = [e for e in json.loads(ws.cli("status", "--json", "--tenants-dir", str(ws.root / "tenants")).stdout)
               if e["tenant"] == "demo"]
    assert entry["last_run"]["writes"] == failed["writes"], entry


def test_a_disk_that_fills_during_a_run_is_named_with_the_tenant_and_the_next_run_writes_it_all(ws):
    """The local store's disk fills (SQLite's max_page_count on the target's own connection):
    the run fails with the target's error, which names the tenant, the store and SQLite's
    reason, and is recorded as failed; with room again, the next run writes everything."""
    from engine.targets import open_target
    tenant = ws.tenant()
    target, state = open_target(tenant), ws.state()
    conn = target.store.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 2}")
    try:
        with pytest.raises(TargetError) as err:
            run_tenant(tenant, state, run_date=RUN_DATE, target=target)
        assert state.runs("demo")[0].status == "failed"
    finally:
        target.close()
        state.close()
    message = str(err.value)
    assert message.startswith(f"tenant 'demo': writing to the local portal store {ws.portal_path} failed after 0 of ")
    assert "changes: database or disk is full" in message and "check free disk space" in message
    assert err.value.exit_code == 5
    again = ws.run(tenant)
    assert again.exit_code == 0 and again.summary["writes"] > 0
    assert ws.portal()["users"]


def test_a_run_that_failed_before_the_portal_accepted_anything_shows_no_writes_not_unknown(ws):
    """It failed while applying: its writes are zero, as `run --json` says, not null (failed before it applied)."""
    import json
    tenant = ws.tenant()
    fail_part_way(ws, tenant, FailsAtOnce)
    [failed] = json.loads(ws.cli("history", "demo", "--json").stdout)
    assert failed["status"] == "failed" and failed["writes"] == {"create": 0, "update": 0, "delete": 0}


def test_writes_in_flight_when_a_run_stopped_are_counted_unconfirmed_and_settled_by_the_next_run(ws):
    """The history of a run stopped with batches in flight counts them apart, as `unconfirmed`,
    beside what the portal accepted, and `status` says so under the tenant's line; the next
    complete run says how it found them: landed here (the portal wrote them), and the writes that
    were never sent it sends as its own. Then `status` has no such line."""
    import json
    tenant = ws.tenant()
    assert ws.run(tenant).exit_code == 0
    people = [r["adressnr"] for r in ws.erp_rows("SELECT adressnr FROM adresse ORDER BY adressnr")]
    ws.erp_execute(*[("UPDATE adresse SET nachname = nachname || ' I' WHERE adressnr = ?", (p,)) for p in people])
    fail_part_way(ws, tenant, LandsUnanswered)
    planned = ws.plan(tenant)                   # what the stopped run sent: planned again, minus what landed
    [stopped, _] = json.loads(ws.cli("history", "demo", "--json").stdout)
    assert stopped["status"] == "failed"
    answered, unconfirmed = stopped["writes"]["update"], stopped["unconfirmed"]
    assert answered > 0 and unconfirmed > 0, stopped
    assert stopped["settled"] is None
    folder = str(ws.root / "tenants")
    said = [line for line in ws.cli("status", "--tenants-dir", folder).stdout.splitlines() if "unconfirmed" in line]
    assert said == [f"      {unconfirmed:,} writes sent without an answer (unconfirmed): the portal may or may not "
                    "have made them; the next complete run checks them and sends again what the portal did not make"]
    never_sent = planned.plan.writes
    night = ws.run(tenant)
    assert night.exit_code == 0 and night.summary["writes"] == never_sent > 0
    assert night.summary["settled"] == {"users": {"landed": unconfirmed, "sent_again": 0, "refused": 0, "gone": 0}}
    [settling, again, _] = json.loads(ws.cli("history", "demo", "--json").stdout)
    assert settling["settled"] == night.summary["settled"]["users"] and settling["unconfirmed"] == 0
    assert again == stopped
    assert "unconfirmed" not in ws.cli("status", "--tenants-dir", folder).stdout, "settled: no line under the run"
    text = ws.cli("history", "demo").stdout
    assert f"{unconfirmed:,} writes sent without an answer (unconfirmed)" in text
    assert f"{unconfirmed:,} writes an earlier run left unconfirmed: {unconfirmed:,} had landed" in text
    quiet = ws.run(tenant)                      # settled: the next run finds nothing left to settle
    assert quiet.summary["settled"] is None and quiet.summary["writes"] == 0
