"""A filter's reason of the tenant's own, as the property manager reads it: the text summary, the
--json summary and the data-quality report (CSV, workbook) show it as info, 'nothing: excluded by
the filter ...', unless the filter declares its severity and advice; the report's own codes keep
theirs (docs/config.md, "Filters")."""
from __future__ import annotations

import csv

from openpyxl import load_workbook

from engine.findings import CATALOGUE

OWNERS_ONLY = {"name": "no_tenants", "reason": "tenant_contract", "field": "Art", "in": ["M"]}


def tenant_contracts(ws) -> int:
    rows = ws.erp_rows("SELECT count(*) AS n FROM vertragpartner p JOIN vertrag v USING (vertragnr) WHERE v.art = 'M'")
    return rows[0]["n"]


def test_a_reason_of_the_tenants_own_is_info_and_names_its_filter(ws):
    path = ws.tenant_file(overrides={"entities": {"occupancies": {"filters": [OWNERS_ONLY]}}})
    advice = "nothing: excluded by the filter 'no_tenants'"

    text = ws.cli("plan", str(path), "--no-out", "--findings", "report.csv")
    assert text.returncode == 0, text.stderr
    [line] = [line for line in text.stdout.splitlines() if " tenant_contract " in line]
    assert line.split()[0] == "info" and line.endswith(advice), line
    assert "check the record in the ERP" not in text.stdout

    code, summary, err = ws.cli_json("plan", str(path), "--no-out")
    assert code == 0, err
    assert summary["findings"]["tenant_contract"] > 0
    assert summary["finding_codes"]["tenant_contract"] == {"severity": "info", "advice": advice}
    assert summary["finding_codes"]["phantom_unit"] == {"severity": "info", "advice": CATALOGUE["phantom_unit"][2]}
    assert set(summary["finding_codes"]) == set(summary["findings"])

    with open(ws.root / "report.csv", encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["code"] == "tenant_contract"]
    assert len(rows) == summary["findings"]["tenant_contract"] <= tenant_contracts(ws)
    assert {(r["severity"], r["what_to_fix"]) for r in rows} == {("info", advice)}


def test_a_filter_declares_the_severity_and_advice_of_its_reason(ws):
    advice = "end the Mietvertrag's portal access in DOMUS (Art M is not meant for the portal)"
    declared = {**OWNERS_ONLY, "severity": "warning", "advice": advice}
    path = ws.tenant_file(overrides={"entities": {"occupancies": {"filters": [declared]}}})

    code, summary, err = ws.cli_json("run", str(path), "--findings", "report.xlsx")
    assert code == 0, err
    assert summary["finding_codes"]["tenant_contract"] == {"severity": "warning", "advice": advice}

    book = load_workbook(ws.root / "report.xlsx")
    rows = [r for r in book["findings"].iter_rows(min_row=2, values_only=True) if r[1] == "tenant_contract"]
    assert len(rows) == summary["findings"]["tenant_contract"] > 0
    assert {(r[0], r[6]) for r in rows} == {("warning", advice)}
    per_code = {r[1]: r for r in book["per code"].iter_rows(min_row=2, values_only=True)}
    assert per_code["tenant_contract"] == ("warning", "tenant_contract", len(rows), advice)
    severities = [r[0] for r in book["per code"].iter_rows(min_row=2, values_only=True)]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)   # among the warnings

    text = ws.cli("plan", str(path), "--no-out")
    [line] = [line for line in text.stdout.splitlines() if " tenant_contract " in line]
    assert line.split()[0] == "warning" and line.endswith(advice), line
