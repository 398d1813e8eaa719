"""`idwell-sync discover` names the records of its sample that break an expression of the mapping
other than the external_id (a field a run computes after it): a run stops on such a record with
exit 3, so discover shows it, as the API sent it, with the expression and the error, and still
exits 0. The same data then stops `idwell-sync run` with exit 3 on the record discover named.

Against the Cloud Connect stand-in (a real HTTP server on 127.0.0.1) serving a copy of the demo
ERP in which one apartment has no floor."""
from __future__ import annotations

import json
import sqlite3

import pytest

from cloud_connect import CloudConnect
from test_api_discover import KEY, _cli, discover, key_set, write_tenant  # noqa: F401 (key_set: a fixture)

NAME = "join(' ', [name, floor])"       # an apartment without a floor breaks it
WHY = (f"units 100003: the field 'name' cannot be computed for this ERP record: {NAME} gives JMESPathTypeError: "
       "In function join(), invalid type for value: None")
SUMMARY = ("1 of 251 records read breaks an expression of the mapping; a run would stop on it (exit 3): correct the "
           "expression in the tenant's overrides or the mapping, or the data in the ERP")


@pytest.fixture
def floorless(erp):
    """The ERP with unit 100003 (an apartment, on the first page of /units) without a floor."""
    with sqlite3.connect(erp) as con:
        con.execute("UPDATE einheit SET etage = NULL WHERE einheitid = 100003")
    con.close()
    return erp


@pytest.mark.parametrize("erp", ["copy"], indirect=True)
def test_a_record_that_breaks_a_field_is_shown_and_the_run_stops_on_it(floorless, tmp_path, capsys, key_set):
    with CloudConnect(str(floorless), KEY) as cc:
        tenant = write_tenant(tmp_path, cc.url, units={"fields": {"name": NAME}})
        code, out, err = discover(capsys, str(tenant))
        assert code == 0, err
        lines = out.splitlines()
        # the six units of the first page without a floor that the phantom filters leave out are not counted:
        # a run does not map them further
        said = ("  the mapping's field 'name' cannot be computed for 1 of these 20 records (a run stops on it, "
                f"exit 3); the first: {WHY}")
        assert any(line.startswith(said) for line in lines), out
        shown = lines[lines.index("  the record, as the API sent it:") + 1]
        assert json.loads(shown) == {"id": 100003, "objectNumber": 1000, "number": "003", "name": "Wohnung 3 1. OG",
                                     "typeCode": 1, "fictitious": False, "floor": None, "area": 88}
        assert lines[-1] == SUMMARY

        code, out, err = discover(capsys, str(tenant), "--format", "json")
        assert code == 0, err
        listing = json.loads(out)
        units = listing["endpoints"][1]
        assert units["external_id_errors"] == []
        errors = units["expression_errors"]
        assert (errors["checked"], errors["records"], errors["fields"]) == (20, 1, {"name": 1})
        [first] = errors["first"]
        assert (first["key"], first["field"], first["expression"]) == ("100003", "name", NAME)
        assert first["error"].startswith(WHY) and first["record"]["floor"] is None
        assert listing["expression_errors"] == {"checked": 251, "records": 1, "message": SUMMARY}

        code, out, err = discover(capsys, str(tenant), "units", "--rows", "2")
        assert code == 0, err
        broken = out.split("the 1 record that breaks an expression of the mapping, as the API sent it:\n")[1]
        rows = broken.splitlines()
        assert [c.strip() for c in rows[2].split("|")] == ["100003", "1000", "003", "Wohnung 3 1. OG", "1", "false",
                                                           "null", "88"]
        assert rows[3].startswith(f"  {WHY}")

        run = _cli(tmp_path, "run", str(tenant), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}", key=KEY)
        doctor = _cli(tmp_path, "doctor", str(tenant), "--format", "json", key=KEY)
    assert run.returncode == 3, run.stderr
    assert f"tenant 'kunde': {WHY}" in run.stderr
    # doctor, which reads the same first page, fails the endpoint's step with the run's message
    assert doctor.returncode == 1, doctor.stderr
    steps = {s["name"]: s for s in json.loads(doctor.stdout)["steps"]}
    assert steps["endpoint:units"]["status"] == "fail"
    assert steps["endpoint:units"]["detail"].startswith(f"tenant 'kunde': {WHY}")
    assert steps["endpoint:units"]["hint_en"].startswith("correct the expression")
    assert {steps[f"endpoint:{e}"]["status"] for e in ("buildings", "users", "occupancies")} == {"ok"}


def test_a_contract_outside_the_window_is_not_counted_for_the_fields_a_run_does_not_map(tmp_path, key_set):
    """A run maps only the window's fields of a contract outside the contract window (the gate):
    what such a record breaks in another field does not stop it, and discover does not count it;
    the same break in a contract inside the window is counted."""
    from engine.config import load_tenant
    from engine.discover_fields import check_records, sample_gate
    role = "join('', [kind])"
    tenant = load_tenant(write_tenant(tmp_path, "http://127.0.0.1:9/v1", occupancies={"fields": {"role": role}}))
    occupancies = tenant.entities["occupancies"]
    running = {"contractNumber": 5000001, "personId": 1000001, "unitId": 100001, "kind": None,
               "start": "2020-01-01", "end": None}
    ended = {**running, "contractNumber": 5000002, "end": "2001-12-31"}
    from engine.references import tenant_today
    gate, ungated = sample_gate(tenant, occupancies, tenant_today(tenant))
    check = check_records(occupancies, [running, ended], None, gate, ungated)
    assert [b.index for b in check.broken] == [0] and dict(check.by_field) == {"role": 1}
    assert check.broken[0].errors[0].message.startswith(
        f"occupancies 5000001/1000001: the field 'role' cannot be computed for this ERP record: {role} gives ")


def test_doctor_warns_where_only_the_users_gate_decides_whether_a_run_computes_the_field(erp, tmp_path, key_set):
    """A person's field that a record of the first page breaks stops a run only if a contract in the
    window names the person, which the first page cannot tell: doctor warns (exit 0) and says so,
    where an endpoint whose every record is computed fails."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = write_tenant(tmp_path, cc.url, users={"fields": {"title": "join('', [title])"}})
        doctor = _cli(tmp_path, "doctor", str(tenant), "--format", "json", key=KEY)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    users = {s["name"]: s for s in json.loads(doctor.stdout)["steps"]}["endpoint:users"]
    assert users["status"] == "warn"
    assert "field 'title' cannot be computed" in users["detail"]
    assert "only for a person with a contract in the contract window" in users["detail"]
    assert "the run skips it" in users["hint_en"]
