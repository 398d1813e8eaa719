"""An expression of the tenant's mapping that a record of the ERP breaks (a jmespath built-in given
a null: `starts_with(Etage, 'K')` for a unit without a floor, `join` over a person without a first
name) stops plan and run with exit code 3 and a message that names the record, the field or filter
and the expression, with what to do; no traceback, no exit 70 "internal error (a bug)", nothing
written to the portal (docs/functions.md, README "Exit codes")."""
from __future__ import annotations

import re

import pytest

STARTS_WITH = {"name": "cellar", "reason": "cellar_unit", "expr": "starts_with(Etage, 'K')"}
JOIN = "join(' ', [Vorname, Nachname])"


def test_a_filter_that_a_record_breaks_stops_the_run_naming_it(ws):
    path = ws.tenant_file(overrides={"entities": {"units": {"filters": [STARTS_WITH]}}})

    done = ws.cli("run", str(path))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    first, hint = done.stderr.strip().splitlines()
    found = re.match(r"idwell-sync run: error: tenant 'demo': units (\d+): the filter 'cellar' cannot be computed "
                     r"for this ERP record: starts_with\(Etage, 'K'\) gives JMESPathTypeError: ", first)
    assert found, first
    [row] = ws.erp_rows("SELECT etage, bezeichnung FROM einheit WHERE einheitid = ?", (int(found.group(1)),))
    assert row["etage"] is None                                 # the record the filter breaks on
    assert hint.startswith("  what to do: correct the expression") and "docs/functions.md" in hint
    assert not ws.portal_path.exists() or ws.portal()["units"] == {}

    history = ws.cli("history", str(path))
    assert history.returncode == 0, history.stderr
    assert "failed" in history.stdout and "the filter 'cellar' cannot be computed" in history.stdout


@pytest.mark.parametrize("parallel", ["1", "0"])
def test_a_field_that_a_record_breaks_stops_the_plan_naming_it(ws, monkeypatch, parallel):
    """The users are extracted by a second process (IDWELL_SYNC_PARALLEL=1, the default for an SQL
    source) or by the run itself: the same error either way, and no warning about the process."""
    monkeypatch.setenv("IDWELL_SYNC_PARALLEL", parallel)
    path = ws.tenant_file(overrides={"entities": {"users": {"fields": {"first_name": JOIN}}}})

    code, summary, err = ws.cli_json("plan", str(path), "--no-out")
    assert code == 3, err
    assert "Traceback" not in err and "second process failed" not in err
    message = summary["error"]["message"]
    found = re.match(r"tenant 'demo': users (\d+): the field 'first_name' cannot be computed for this ERP record: "
                     + re.escape(JOIN) + " gives JMESPathTypeError: ", message)
    assert found, message
    [row] = ws.erp_rows("SELECT vorname, nachname FROM adresse WHERE adressnr = ?", (int(found.group(1)),))
    assert row["vorname"] is None or row["nachname"] is None
    assert summary["status"] == "failed" and summary["exit_code"] == 3
    assert "concat" in summary["error"]["hint"]


def _doctor(ws, path) -> tuple[int, dict]:
    import json
    done = ws.cli("doctor", str(path), "--format", "json")
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {s["name"]: s for s in json.loads(done.stdout)["steps"]}


@pytest.mark.parametrize("overrides, what", [
    ({"fields": {"floor": STARTS_WITH["expr"]}}, "the field 'floor'"),
    ({"filters": [STARTS_WITH]}, "the filter 'cellar'"),
], ids=["field", "filter"])
def test_doctor_fails_the_query_step_of_an_expression_a_record_breaks(ws, overrides, what):
    """What stops `run` with exit 3 fails doctor's query step, with the record, the expression and
    what to do; the other steps still run."""
    path = ws.tenant_file(overrides={"entities": {"units": overrides}})
    assert ws.cli("plan", str(path), "--no-out").returncode == 3

    code, steps = _doctor(ws, path)
    assert code == 1
    units = steps["query:units"]
    assert units["status"] == "fail"
    found = re.match(r"units (\d+): " + re.escape(what) + r" cannot be computed for this ERP record: "
                     r"starts_with\(Etage, 'K'\) gives JMESPathTypeError: ", units["detail"])
    assert found, units["detail"]
    [row] = ws.erp_rows("SELECT etage FROM einheit WHERE einheitid = ?", (int(found.group(1)),))
    assert row["etage"] is None
    assert units["hint_en"].startswith("correct the expression") and "docs/functions.md" in units["hint_en"]
    assert [s["status"] for n, s in steps.items() if n.startswith("query:") and n != "query:units"] == ["ok"] * 3
    assert steps["umlauts"]["status"] == "ok" and steps["target"]["status"] == "ok"


def test_doctor_fails_a_users_field_that_a_record_the_run_maps_breaks(ws):
    path = ws.tenant_file(overrides={"entities": {"users": {"fields": {"first_name": JOIN}}}})
    code, steps = _doctor(ws, path)
    assert code == 1 and steps["query:users"]["status"] == "fail"
    assert re.match(r"users \d+: the field 'first_name' cannot be computed", steps["query:users"]["detail"])
    assert steps["query:occupancies"]["status"] == "ok"


def test_doctor_passes_an_expression_that_only_records_the_run_skips_break(ws):
    """A person without a contract in the window is not mapped by a run (users_without_occupancy:
    skip), so an expression that only such a person breaks does not fail doctor either."""
    nr = ws.add_person("Ohnevertrag", None, "ohne.vertrag@example.org")
    overrides = {"entities": {"users": {"fields": {
        "first_name": f"AdressNr == `{nr}` && join(' ', [Vorname, Nachname]) || Vorname"}}}}
    path = ws.tenant_file(overrides=overrides)
    assert ws.cli("plan", str(path), "--no-out").returncode == 0
    code, steps = _doctor(ws, path)
    assert steps["query:users"]["status"] == "ok", steps["query:users"]
    assert code == 0

    sent = ws.tenant_file(overrides=overrides, rules={"users_without_occupancy": "send"})   # now mapped: both fail
    assert ws.cli("plan", str(sent), "--no-out").returncode == 3
    code, steps = _doctor(ws, sent)
    assert code == 1 and steps["query:users"]["detail"].startswith(f"users {nr}: the field 'first_name'")
