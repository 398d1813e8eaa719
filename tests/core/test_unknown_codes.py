"""A code that a field's code table does not hold (TypCode 6 where unit_types knows 1-5, a
salutation 'Eheleute Dr.') becomes the table's default, and the run says so: one finding
`code_not_in_table` per entity, field and code, with how many records carry it and a few of their
ERP keys; in the summary's counts and in the data-quality report. Null and blank codes are not
reported: the table's default is meant for them."""
from __future__ import annotations

import csv

from engine.findings import CATALOGUE

CONTRACT = ("2020-01-01", None)      # current on the demo's run date


def unknown_codes(findings) -> list[tuple[str, str, str, str]]:
    return [(f.entity, f.key, f.field, f.message) for f in findings if f.code == "code_not_in_table"]


def alter_erp(ws) -> dict[str, list[int]]:
    """Five new units with TypCode 6, one with 7; three persons with a contract whose salutation
    the table lacks (two spellings of one code), one such person without a contract (not sent,
    not counted), one with a blank salutation (the default is meant)."""
    building = ws.in_scope_building()
    six = [ws.add_unit(building, f"Hobbyraum {i}", typcode=6) for i in range(5)]
    seven = [ws.add_unit(building, "Werkstatt", typcode=7)]
    couple = [ws.add_person("Albers", "Jan", "jan.albers@example.org", anrede="Eheleute Dr."),
              ws.add_person("Brandt", "Uta", "uta.brandt@example.org", anrede="EHELEUTE DR. ")]
    other = ws.add_person("Claasen", "Ole", "ole.claasen@example.org", anrede="Herr Ing.")
    ws.add_person("Dorn", "Eva", "eva.dorn@example.org", anrede="Eheleute Dr.")       # no contract
    blank = ws.add_person("Ernst", "Kai", "kai.ernst@example.org", anrede="  ")
    for person, unit in zip([*couple, other, blank], six):
        ws.add_contract(unit, "M", *CONTRACT, [person])
    [demo] = ws.manifest.keys("salutation_not_in_table", "adressnr")
    return {"six": six, "seven": seven, "couple": couple, "other": [other], "blank": [blank], "demo": str(demo)}


def test_each_unknown_code_is_one_finding_with_its_records_and_the_value_sent(ws):
    keys = alter_erp(ws)
    prepared = ws.plan()
    six, couple = [str(k) for k in keys["six"]], [str(k) for k in keys["couple"]]
    assert unknown_codes(prepared.findings) == [
        ("units", six[0], "type", f"TypCode 6 is not in the code table 'unit_types': type became 'other' "
                                  f"(5 records: {six[0]}, {six[1]}, {six[2]}, ...)"),
        ("units", str(keys["seven"][0]), "type", "TypCode 7 is not in the code table 'unit_types': type became "
                                                 f"'other' (1 record: {keys['seven'][0]})"),
        ("users", couple[0], "salutation",
         "Anrede 'Eheleute Dr.' is not in the code table 'salutations': salutation became null "
         f"(2 records: {couple[0]}, {couple[1]})"),
        ("users", keys["demo"], "salutation",           # the demo's own (hard case salutation_not_in_table)
         "Anrede 'Herr Dipl.-Ing.' is not in the code table 'salutations': salutation became null "
         f"(1 record: {keys['demo']})"),
        ("users", str(keys["other"][0]), "salutation",
         "Anrede 'Herr Ing.' is not in the code table 'salutations': salutation became null "
         f"(1 record: {keys['other'][0]})"),
    ]
    units, users = prepared.data["units"].records, prepared.data["users"].records
    assert {units[k].data["type"] for k in six} == {"other"}
    assert users[couple[0]].data["salutation"] is None
    assert users[str(keys["blank"][0])].data["salutation"] is None       # blank: no finding above
    severity, dropped, fix = CATALOGUE["code_not_in_table"]
    assert (severity, dropped) == ("warning", False)
    assert "overrides.code_tables" in fix and "correct it in the ERP" in fix


def test_the_demo_erp_has_one_unknown_code_its_hard_case(demo_run):
    [person] = demo_run.manifest.keys("salutation_not_in_table", "adressnr")
    assert [(entity, key, name) for entity, key, name, _ in unknown_codes(demo_run.result.findings)] == \
        [("users", str(person), "salutation")]
    assert demo_run.result.summary["findings"]["code_not_in_table"] == 1


def test_the_summary_counts_and_the_report_shows_each_unknown_code(ws):
    keys = alter_erp(ws)
    path = ws.tenant_file()
    code, summary, err = ws.cli_json("plan", str(path), "--no-out", "--date", "2026-06-01",
                                     "--findings", "report.csv")
    assert code == 0, err
    assert summary["findings"]["code_not_in_table"] == 5           # four codes of alter_erp, the demo's own
    with open(ws.root / "report.csv", encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["code"] == "code_not_in_table"]
    assert len(rows) == 5
    row = next(r for r in rows if r["erp_key"] == str(keys["seven"][0]))
    assert row["severity"] == "warning" and row["entity"] == "units" and row["field"] == "type"
    assert row["message"].startswith("TypCode 7 is not in the code table 'unit_types'")
    assert row["what_to_fix"] == CATALOGUE["code_not_in_table"][2]


def test_a_code_added_to_the_tenants_code_table_is_no_longer_reported(ws):
    keys = alter_erp(ws)
    tenant = ws.tenant(overrides={"code_tables": {"unit_types": {"values": {"6": "storage", "7": "commercial"}},
                                                  "salutations": {"values": {"eheleute dr.": "family",
                                                                             "herr ing.": "mr",
                                                                             "Herr Dipl.-Ing.": "mr"}}}})
    prepared = ws.plan(tenant)
    assert unknown_codes(prepared.findings) == []
    assert prepared.data["units"].records[str(keys["six"][0])].data["type"] == "storage"
    assert prepared.data["users"].records[str(keys["couple"][1])].data["salutation"] == "family"


def test_units_filtered_out_are_not_counted(ws):
    """A phantom unit (type 90, 91, 99: filtered) or a unit under an excluded building is not
    sent: its code is not counted; a unit sent is."""
    keys = alter_erp(ws)
    ws.erp_execute(f"UPDATE einheit SET fiktiv = 1 WHERE einheitid IN ({keys['six'][1]}, {keys['six'][2]})")
    findings = unknown_codes(ws.plan().findings)
    assert "TypCode 6 " in findings[0][3] and "(3 records: " in findings[0][3]
    assert str(keys["six"][1]) not in findings[0][3]


def test_a_unit_that_is_not_sent_is_not_counted_for_its_unknown_code(ws, monkeypatch):
    """TypCode 6 on a unit of the test object (excluded: unit_of_excluded_building) and on one of
    an object in scope: the finding counts and names only the unit that is sent, by both paths
    (the run's second process or not); a code only unsent units carry has no finding."""
    from engine import parallel
    sent = ws.add_unit(ws.in_scope_building(), "Hobbyraum", typcode=6)
    [test_object] = ws.manifest.keys("test_object", "objektnr")
    unsent = [ws.add_unit(test_object, "Lager", typcode=6), ws.add_unit(test_object, "Keller", typcode=8)]
    for on in ("0", "1"):
        monkeypatch.setenv(parallel.ENVIRONMENT, on)
        prepared = ws.plan()
        assert [(e, k, m) for e, k, _, m in unknown_codes(prepared.findings) if e == "units"] == [
            ("units", str(sent), "TypCode 6 is not in the code table 'unit_types': type became 'other' "
                                 f"(1 record: {sent})")], on
        assert {prepared.data["units"].excluded[str(u)] for u in unsent} == {"unit_of_excluded_building"}
