"""The data-quality report for the property manager (`--findings FILE`): one row per finding, as CSV.

The report holds values from the ERP (keys, names, the portal's messages) and is opened in
Excel: a cell that starts like a formula must never run as one there, so the CSV gives such a
cell a leading apostrophe.
"""
from __future__ import annotations

import csv
from pathlib import Path

from engine.findings import Finding
from engine.report import write_whole

COLUMNS = ("severity", "code", "entity", "erp_key", "field", "message", "what_to_fix")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")     # what a spreadsheet reads as the start of a formula (OWASP)


def row(f: Finding) -> tuple[str, ...]:
    """A finding's cells, in the order of COLUMNS."""
    return (f.severity, f.code, f.entity, f.key, f.field or "", f.message, f.fix)


def write_findings_csv(findings: list[Finding], path: Path) -> None:
    """UTF-8 with a byte order mark (without it Excel reads umlauts as two characters each); a
    cell starting with one of FORMULA_START gets a leading apostrophe, so that Excel shows it as
    text instead of running it (`'=HYPERLINK(...)`, `'-5`). Text that UTF-8 cannot encode (a lone
    surrogate from an API source's JSON) is written as its escape, `\\ud800`."""
    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for f in findings:
            w.writerow([not_formula(cell) for cell in row(f)])
    write_whole(path, write, encoding="utf-8-sig", newline="", errors="backslashreplace")


def not_formula(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_START) else cell
