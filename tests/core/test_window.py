"""The contract window's edges: an end date exactly `grace_days` before the reference date is kept, one
day earlier is not; a start exactly `future_days` after it is kept, one day later is not. Moving the
window by one day moves exactly the edge cases across it."""
from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest

from engine.demo import FUTURE_DAYS, GRACE_DAYS, REFERENCE_DATE
from engine.pipeline import prepare
from engine.targets.local import LocalStore

EDGES = {   # hard-case code -> kept with the demo window
    "contract_ended_grace_edge": True,
    "contract_ended_beyond_grace_edge": False,
    "contract_future_window_edge": True,
    "contract_future_beyond_window_edge": False,
}


def planned_occupancies(prepared) -> set[str]:
    return {c.external_id.split("-")[0] for c in prepared.plan.changes
            if c.entity == "occupancies" and c.action == "create"}


def fate(prepared, manifest, code: str) -> bool:
    """True when the edge contract is planned for the portal, False when it is dropped by the window
    (with its finding); anything else fails."""
    (inst,) = manifest.cases[code]
    (v,) = inst["vertragnr"]
    kept = str(v) in planned_occupancies(prepared)
    window_findings = {f.code for f in prepared.findings if f.entity == "occupancies" and f.key.startswith(f"{v}/")}
    if kept:
        assert not window_findings & {"contract_ended", "contract_future"}
    else:
        assert window_findings == {"contract_ended" if "ended" in code else "contract_future"}, window_findings
    return kept


@pytest.fixture
def plan_window(ws):
    def plan(run_date: dt.date = REFERENCE_DATE, **window):
        tenant = ws.tenant(contract_window={"reference_date": REFERENCE_DATE.isoformat(),
                                            "grace_days": GRACE_DAYS, "future_days": FUTURE_DAYS, **window})
        target = LocalStore(ws.root / "empty-portal.sqlite")
        try:
            return prepare(tenant, target, None, run_date=run_date)
        finally:
            target.close()
    return plan


def test_the_edges_with_the_demo_window(plan_window, manifest):
    prepared = plan_window()
    assert {code: fate(prepared, manifest, code) for code in EDGES} == EDGES


@pytest.mark.parametrize("window, flipped", [
    ({"reference_date": (REFERENCE_DATE + dt.timedelta(days=1)).isoformat()},
     {"contract_ended_grace_edge": False, "contract_future_beyond_window_edge": True}),
    ({"reference_date": (REFERENCE_DATE - dt.timedelta(days=1)).isoformat()},
     {"contract_ended_beyond_grace_edge": True, "contract_future_window_edge": False}),
    ({"grace_days": GRACE_DAYS + 1}, {"contract_ended_beyond_grace_edge": True}),
    ({"grace_days": GRACE_DAYS - 1}, {"contract_ended_grace_edge": False}),
    ({"future_days": FUTURE_DAYS + 1}, {"contract_future_beyond_window_edge": True}),
    ({"future_days": FUTURE_DAYS - 1}, {"contract_future_window_edge": False}),
], ids=["ref+1", "ref-1", "grace+1", "grace-1", "future+1", "future-1"])
def test_moving_the_window_by_one_day_moves_exactly_the_edge_cases(plan_window, manifest, window, flipped):
    prepared = plan_window(**window)
    assert {code: fate(prepared, manifest, code) for code in EDGES} == EDGES | flipped


def test_without_a_reference_date_the_run_date_is_the_reference(ws, manifest):
    """`--date` sets the run date; a tenant without reference_date measures the window from it."""
    path = ws.tenant_file(contract_window={"reference_date": None, "grace_days": GRACE_DAYS,
                                           "future_days": FUTURE_DAYS})
    for run_date, grace_edge_kept in ((REFERENCE_DATE, True), (REFERENCE_DATE + dt.timedelta(days=1), False)):
        out = ws.root / f"plan-{run_date}.json"
        code, summary, err = ws.cli_json("plan", str(path), "--date", run_date.isoformat(), "--out", str(out))
        assert code == 0, err
        assert summary["reference_date"] == run_date.isoformat()
        (v,) = manifest.cases["contract_ended_grace_edge"][0]["vertragnr"]
        plan = json.loads(out.read_text("utf-8"))
        planned = {c["external_id"].split("-")[0] for c in plan["changes"] if c["entity"] == "occupancies"}
        assert (str(v) in planned) is grace_edge_kept, run_date


@pytest.mark.parametrize("tenant_zone, machine_zone", [("Pacific/Kiritimati", "Pacific/Pago_Pago"),
                                                       ("Pacific/Pago_Pago", "Pacific/Kiritimati")])
def test_without_date_a_run_is_as_of_the_day_in_the_tenants_time_zone(ws, monkeypatch, tenant_zone, machine_zone):
    """The run date, and with it the window of a tenant without reference_date, is the day it is in
    the time zone of the tenant's schedule, not on the sync server: a server in UTC that runs a
    Berlin tenant at 00:30 Berlin time is still on the day before. UTC+14 and UTC-11 are 25 hours
    apart, so the two days differ at any moment, whatever the clock of the machine that tests."""
    path = ws.tenant_file(contract_window={"reference_date": None, "grace_days": GRACE_DAYS,
                                           "future_days": FUTURE_DAYS},
                          schedule={"cron": "30 3 * * *", "timezone": tenant_zone, "window": None})
    monkeypatch.setenv("TZ", machine_zone)            # the machine's own clock: the other day
    days = lambda: {dt.datetime.now(zoneinfo.ZoneInfo(tenant_zone)).date().isoformat()}   # noqa: E731
    before = days()
    code, summary, err = ws.cli_json("plan", str(path), "--no-out")
    assert code == 0, err
    assert summary["run_date"] in before | days(), (summary["run_date"], tenant_zone, machine_zone)
    assert summary["reference_date"] == summary["run_date"]
    machine = dt.datetime.now(zoneinfo.ZoneInfo(machine_zone)).date().isoformat()
    assert summary["run_date"] != machine


@pytest.mark.parametrize("window, run_date", [({"future_days": 3_000_000, "grace_days": 99_999_999}, None),
                                              ({}, "9999-12-01"), ({}, "0001-01-05")])
def test_a_window_that_reaches_past_the_calendar_ends_at_its_edge(ws, window, run_date):
    """`future_days: 3000000` (meant as "any move-in ahead"), a huge grace or a --date near the
    calendar's end reached past the year 9999: the plan crashed with OverflowError (exit 70). The
    window now ends at the calendar's first or last day: no ERP date lies beyond it."""
    changes = {"reference_date": None} if run_date else {"reference_date": REFERENCE_DATE.isoformat(), **window}
    path = ws.tenant_file(contract_window=changes)
    code, summary, err = ws.cli_json("plan", str(path), "--no-out", *(["--date", run_date] if run_date else []))
    assert code == 0, err
    assert "Traceback" not in err
    if not run_date:            # every contract's end and start lie inside the window
        assert "contract_future" not in summary["findings"] and "contract_ended" not in summary["findings"]


@pytest.mark.parametrize("parallel", ["1", "0"])
@pytest.mark.parametrize("dropped, reason", [("end_date", "contract_ended"), ("start_date", "contract_future")])
def test_a_mapping_without_a_window_date_keeps_those_contracts_in_the_window(ws, manifest, monkeypatch,
                                                                           parallel, dropped, reason):
    """The import API does not require start_date or end_date: a mapping that leaves one out plans
    (it stopped with an internal error, exit 70), and no contract leaves the window by the missing date."""
    import yaml
    monkeypatch.setenv("IDWELL_SYNC_PARALLEL", parallel)
    ws.tenant_file()                                   # copies the mappings into the workspace
    path = ws.root / "mappings" / "domus-sql.yaml"
    doc = yaml.safe_load(path.read_text("utf-8"))
    del doc["entities"]["occupancies"]["fields"][dropped]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    tenant = ws.tenant(contract_window={"reference_date": REFERENCE_DATE.isoformat(),
                                        "grace_days": GRACE_DAYS, "future_days": FUTURE_DAYS})
    target = LocalStore(ws.root / "empty-portal.sqlite")
    try:
        prepared = prepare(tenant, target, None, run_date=REFERENCE_DATE)
    finally:
        target.close()
    assert not [f for f in prepared.findings if f.code == reason]
    edge = "contract_ended_beyond_grace_edge" if dropped == "end_date" else "contract_future_beyond_window_edge"
    (inst,) = manifest.cases[edge]
    (v,) = inst["vertragnr"]
    assert str(v) in planned_occupancies(prepared), "outside the window only by the date the mapping leaves out"
    other = "contract_future" if reason == "contract_ended" else "contract_ended"
    assert [f for f in prepared.findings if f.code == other], "the other edge of the window still applies"


@pytest.mark.parametrize("ends, starts", [
    (["2020-01-01", None, "2099-12-31"], ["2019-01-01", "2099-01-01", None]),      # ISO texts: compared as they are
    (["2020-01-01", dt.date(2020, 1, 1)], [None, dt.date(2099, 1, 1)]),          # dates from the source
    (["2020-01-01", ""], ["01.01.2099", None]),                                 # a blank and a German text
    (["2020-01-01", ["2020-01-01"]], [None, None]),                             # a list (a JSON path): no set of it
    (["2020-13-01", "2020-01-01"], [None, None]),                               # ten characters, no date
])
def test_the_window_gate_over_columns_gives_what_it_gives_record_by_record(ends, starts):
    """The window gate checks a slice's dates column-wise where all are ISO texts (or null), else
    value by value: either way each contract gets the reason the record-by-record check gives."""
    from engine.config.model import ContractWindow
    from engine.references import WindowGate
    gate = WindowGate(ContractWindow(reference_date=dt.date(2024, 6, 1), grace_days=30, future_days=60),
                      dt.date(2024, 6, 1))
    ids = [str(i) for i in range(len(ends))]
    by_record = [gate({"end_date": e, "start_date": s}) for e, s in zip(ends, starts)]
    assert gate.over_columns({"end_date": ends, "start_date": starts}, ids) == by_record
    assert "contract_ended" in by_record


def test_occupancies_mapped_behind_a_window_are_checked_again_only_against_another_one():
    """transform applies the window again (a no-op after extract); records that extraction marked
    as gated by the same window are not looked at twice, but a different window, or records
    without the mark, are still checked: an out-of-window contract is dropped with its finding."""
    from engine.config.model import ContractWindow
    from engine.entity_data import EntityData, Rec
    from engine.references import WindowGate, apply_window
    window = ContractWindow(reference_date=dt.date(2024, 6, 1), grace_days=30, future_days=60)
    run_date = dt.date(2024, 6, 1)

    def occ(mark):
        data = EntityData("occupancies", records={
            "1-1": Rec("1/1", {"external_id": "1-1", "start_date": "2020-01-01", "end_date": "2020-12-31"}),
            "2-2": Rec("2/2", {"external_id": "2-2", "start_date": "2023-01-01", "end_date": None})})
        data.window = mark
        return data

    same = WindowGate(window, run_date).bounds
    wider = ContractWindow(reference_date=dt.date(2024, 6, 1), grace_days=2000, future_days=60)
    other = WindowGate(wider, run_date).bounds      # a window 1-1 is in
    for mark in (None, other):
        data, found = occ(mark), []
        apply_window(data, window, run_date, found)
        assert list(data.records) == ["2-2"] and data.excluded == {"1-1": "contract_ended"}
        assert [(f.code, f.key) for f in found] == [("contract_ended", "1/1")]
    data, found = occ(same), []          # the mark says every record passed this very window
    apply_window(data, window, run_date, found)
    assert list(data.records) == ["1-1", "2-2"] and found == []


def test_extraction_marks_the_occupancies_with_the_window_they_passed(ws):
    """The mark is what the run's own gate was: prepare's occupancies carry the bounds of the
    tenant's window on the run date, and every one of them lies within it."""
    from engine.references import WindowGate
    tenant = ws.tenant()
    target = LocalStore(ws.root / "empty-portal.sqlite")
    try:
        prepared = prepare(tenant, target, None, run_date=REFERENCE_DATE)
    finally:
        target.close()
    occ = prepared.data["occupancies"]
    gate = WindowGate(tenant.window, REFERENCE_DATE)
    assert occ.window == gate.bounds and occ.records
    assert all(gate(rec.data) is None for rec in occ.records.values())
