"""The data-quality report for the property manager (`--findings FILE`): one row per finding, as
CSV or, for a file named `.xlsx`, as an Excel workbook (docs/summary.md, "The data-quality report").

The report holds values from the ERP (keys, names, the portal's messages) and is opened in
Excel: a cell that starts like a formula must never run as one there. The CSV gives such a
cell a leading apostrophe; the workbook stores it as text, as it is.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Mapping

from engine.findings import CATALOGUE, Finding, by_severity, code_info, count_by_code
from engine.report import write_whole

COLUMNS = ("severity", "code", "entity", "erp_key", "field", "message", "what_to_fix")
CODE_COLUMNS = ("severity", "code", "findings", "what_to_fix")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")     # what a spreadsheet reads as the start of a formula (OWASP)
SHEET_ROWS = 1_048_576                               # the rows of an Excel sheet, its header included
CELL_LIMIT = 32_767                                  # the characters an Excel cell holds
WIDEST = 80                                          # a column's width at most, in characters
# what an .xlsx file cannot hold: XML 1.0's control characters, and lone surrogates (UTF-8 cannot encode them)
NOT_IN_XLSX = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


Codes = Mapping[str, tuple[str, bool, str]]
"""code -> (severity, dropped?, what to fix): engine.findings.CATALOGUE, or a tenant's
(engine.findings.tenant_codes), which holds its filters' own reasons with their severity and advice."""


def write_findings(findings: list[Finding], path: Path, *, delimiter: str = ",", codes: Codes = CATALOGUE) -> None:
    """The report in the format its file name asks for: `.xlsx` (in any case) a workbook, any
    other name CSV with `delimiter` between the cells."""
    if is_workbook(path):
        write_findings_xlsx(findings, path, codes=codes)
    else:
        write_findings_csv(findings, path, delimiter=delimiter, codes=codes)


def is_workbook(path: Path) -> bool:
    return path.suffix.lower() == ".xlsx"


def row(f: Finding, codes: Codes = CATALOGUE) -> tuple[str, ...]:
    """A finding's cells, in the order of COLUMNS."""
    severity, fix = code_info(f.code, codes)
    return (severity, f.code, f.entity, f.key, f.field or "", f.message, fix)


def write_findings_csv(findings: list[Finding], path: Path, *, delimiter: str = ",", codes: Codes = CATALOGUE) -> None:
    """UTF-8 with a byte order mark (without it Excel reads umlauts as two characters each),
    `delimiter` between the cells (a German Excel expects ';'); a cell starting with one of FORMULA_START gets a leading apostrophe, so that Excel shows it as
    text instead of running it (`'=HYPERLINK(...)`, `'-5`). Text that UTF-8 cannot encode (a lone
    surrogate from an API source's JSON) is written as its escape, `\\ud800`."""
    def write(fh) -> None:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(COLUMNS)
        for f in findings:
            w.writerow([not_formula(cell) for cell in row(f, codes)])
    write_whole(path, write, encoding="utf-8-sig", newline="", errors="backslashreplace")


def not_formula(cell: str) -> str:
    """The cell as a spreadsheet shows it as text; a lone '-' (the key of a finding about a whole
    entity) is text already."""
    return "'" + cell if cell.startswith(FORMULA_START) and cell != "-" else cell


def write_findings_xlsx(findings: list[Finding], path: Path, *, sheet_rows: int = SHEET_ROWS,
                        codes: Codes = CATALOGUE) -> None:
    """An Excel workbook: the sheet `findings` (COLUMNS, one row per finding) and the sheet
    `per code` (CODE_COLUMNS, one row per code, errors first), each with a bold header row that
    stays in view, an autofilter, and columns as wide as their text (up to WIDEST). Every cell
    but the counts is text: an ERP key 0012 stays 0012, 1/12 is no date, and a cell starting
    with one of FORMULA_START is stored as text and marked to stay text when edited (Excel's
    leading apostrophe, which it does not show). More findings than a sheet holds
    (`sheet_rows`, with the header) go on to `findings 2`, `findings 3`, ..."""
    from openpyxl import Workbook
    book = Workbook(write_only=True)
    rows = [tuple(xlsx_text(cell) for cell in row(f, codes)) for f in findings]
    per_sheet = sheet_rows - 1
    whole = io.BytesIO()        # then one write: a full disk fails that, not openpyxl's save halfway
    try:
        for n, start in enumerate(range(0, max(len(rows), 1), per_sheet), 1):
            _add_sheet(book, "findings" if n == 1 else f"findings {n}", COLUMNS, rows[start:start + per_sheet])
        counts = []
        for code, n in by_severity(count_by_code(findings), codes):
            severity, fix = code_info(code, codes)
            counts.append((severity, code, n, fix))
        _add_sheet(book, "per code", CODE_COLUMNS, counts)
        book.save(whole)
    except BaseException:       # a stop (SIGTERM, Ctrl-C) or an error halfway: nothing to say at exit
        _abandon(book)
        raise
    write_whole(path, lambda fh: fh.write(whole.getbuffer()), binary=True)


def _abandon(book) -> None:
    """Close the row writers of a workbook left halfway. A write-only sheet writes through
    generators into a temporary file; left open, each is closed when it is collected, after that
    file is gone, and Python prints "Exception ignored ... I/O operation on closed file" with a
    traceback on standard error below the message that says why the report was not written."""
    import contextlib
    for sheet in book.worksheets:
        writer = getattr(sheet, "_writer", None)
        for generator in (getattr(sheet, "_rows", None), getattr(writer, "xf", None)):
            if generator is not None:
                with contextlib.suppress(Exception):
                    generator.close()


def xlsx_text(cell: str) -> str | None:
    """A cell's text as the workbook can hold it: empty is no value; a character XML or UTF-8
    cannot carry is written as its escape (`\\x0b`, `\\ud800`)."""
    if not cell:
        return None
    cell = NOT_IN_XLSX.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), cell)
    if len(cell) > CELL_LIMIT:              # Excel's limit; openpyxl would cut it without a mark
        mark = f" [... cut: {len(cell):,} characters, the CSV report has them all]"
        cell = cell[:CELL_LIMIT - len(mark)] + mark
    return cell


def _add_sheet(book, title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    bold = Font(bold=True)
    sheet = book.create_sheet(title)
    sheet.freeze_panes = "A2"
    for i, name in enumerate(header):
        longest = max((len(str(r[i])) for r in rows if r[i] is not None), default=0)
        sheet.column_dimensions[get_column_letter(i + 1)].width = min(max(longest, len(name)), WIDEST) + 2
    sheet.append([_cell(sheet, name, font=bold) for name in header])
    for r in rows:
        if any(isinstance(v, str) and v.startswith(FORMULA_START) for v in r):
            r = [_cell(sheet, v, text=True) if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in r]
        sheet.append(r)
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(header))}{len(rows) + 1}"


def _cell(sheet, value: str, *, font=None, text: bool = False):
    """A cell with a style of its own (write-only sheets take plain values or such cells).
    `text`: kept as text by Excel, also once edited, where openpyxl would make `=...` a formula."""
    from openpyxl.cell import WriteOnlyCell
    cell = WriteOnlyCell(sheet, value)
    if font is not None:
        cell.font = font
    if text:
        cell.data_type = "s"
        cell.quotePrefix = True
    return cell
