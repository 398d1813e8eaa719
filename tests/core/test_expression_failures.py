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
