"""Dedup policy `fail` stops plan and run when persons share an e-mail address (exit 8, nothing
written to the portal). The property manager still needs the list of what to fix: `--findings
FILE` writes the data-quality report of what the run found up to the stop, with one
`email_shared_failed` row per person sharing an address (all of them, where the error message
names the first 20 groups), beside every other finding. The error says where the list is."""
from __future__ import annotations

import csv
import re

import pytest

FAIL = {"dedup": {"email": {"policy": "fail", "fallback": None, "joiner": None}}}


def _shared_groups(ws) -> dict[str, set[str]]:
    """E-mail -> the persons the ERP gives it, for addresses of two or more persons (plain ones)."""
    groups: dict[str, set[str]] = {}
    for row in ws.erp_rows("SELECT adressnr, email FROM adresse WHERE email IS NOT NULL"):
        email = row["email"].strip().lower()
        if re.fullmatch(r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}", email):
            groups.setdefault(email, set()).add(str(row["adressnr"]))
    return {e: ms for e, ms in groups.items() if len(ms) > 1}


@pytest.mark.parametrize("command", ["plan", "run"])
def test_dedup_fail_still_writes_the_findings_report(ws, command):
    path = ws.tenant_file(**FAIL)
    report = ws.root / "report.csv"

    done = ws.cli(command, str(path), "--findings", str(report))
    assert done.returncode == 8, done.stderr
    assert "Traceback" not in done.stderr
    assert f"the data-quality report {report}" in done.stderr      # where the whole list is
    count = int(re.search(r"(\d+) e-mail address(?:es)? (?:is|are) shared", done.stderr).group(1))

    with report.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    failed = [r for r in rows if r["code"] == "email_shared_failed"]
    assert {r["severity"] for r in failed} == {"error"}
    named = {m.group(1) for r in failed if (m := re.match(r"(\S+) is shared by", r["message"]))}
    assert len(named) == count > 20                                 # every group, not the error's first 20
    shared = _shared_groups(ws)
    for email in named & shared.keys():
        assert {r["erp_key"] for r in failed if r["message"].startswith(f"{email} ")} >= shared[email]
    assert {"phone_invalid", "contract_ended"} <= {r["code"] for r in rows}   # the rest of the report too
    assert not ws.portal_path.exists() or ws.portal()["users"] == {}


def test_dedup_fail_without_a_report_says_how_to_get_the_list(ws):
    path = ws.tenant_file(**FAIL)
    done = ws.cli("plan", str(path), "--no-out")
    assert done.returncode == 8, done.stderr
    assert f"`idwell-sync plan {path} --findings FILE`" in done.stderr      # the tenant as given: a path here
