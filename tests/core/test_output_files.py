"""Output files that cannot be written (docs/summary.md: exit 2, one line naming the file and the
cause): a plan stops without a traceback; a run that was applied and recorded stays so, says
that only its report failed and exits 2. The tests run as root, for whom no folder is read-only:
a path below a regular file stands for a place that cannot be written, /dev/full for a full disk."""
from __future__ import annotations

import json

import pytest

FULL = "/dev/full"                  # every write fails with ENOSPC


@pytest.mark.parametrize("case", ["--findings full", "--out full", "--findings below a file", "--out below a file",
                                  "--findings full, a workbook", "--findings below a file, a workbook",
                                  "var/plans is a file"])
def test_an_output_file_that_cannot_be_written_stops_plan_with_exit_2_and_one_line(ws, case):
    """Also for the findings as an Excel workbook (--findings FILE.xlsx): report.xlsx, a link to
    /dev/full, is a full disk for a workbook."""
    path = ws.tenant_file()
    blocker = ws.root / "not-a-folder"
    blocker.write_text("x")
    if case == "var/plans is a file":           # the default plan file's folder
        (ws.root / "var").mkdir()
        (ws.root / "var" / "plans").write_text("x")
        args, line = (), ("the plan file var/plans/demo.json: var/plans is a file, not a folder")
    else:
        option, where = case.split(" ", 1)
        where, workbook = where.removesuffix(", a workbook"), where.endswith(", a workbook")
        if workbook and where == "full":
            (ws.root / "report.xlsx").symlink_to(FULL)
            file = "report.xlsx"
        else:
            file = FULL if where == "full" else str(blocker / ("report.xlsx" if workbook else "report.csv"))
        args = (option, file)
        line = f"{option} {file}: " + ("cannot be written: No space left on device" if where == "full"
                                       else f"{blocker} is a file, not a folder")
    code, summary, err = ws.cli_json("plan", str(path), "--date", "2026-06-01", *args)
    assert code == 2, err
    assert err == f"idwell-sync plan: error: {line}\n"
    assert (summary["status"], summary["exit_code"], summary["error"]["message"]) == ("failed", 2, line)
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("report", [FULL, "report.xlsx"])
def test_a_run_whose_report_cannot_be_written_is_still_applied_and_recorded_and_exits_2(ws, report):
    """The run wrote to the portal and recorded its end before the report failed: its status
    stays ok (summary, history), the error says so and names the report, and the exit code is 2,
    also with --quiet, which then prints the summary as for any exit code but 0. The same for the
    report as an Excel workbook (report.xlsx, a link to /dev/full)."""
    path = ws.tenant_file()
    if report != FULL:
        (ws.root / report).symlink_to(FULL)
    code, summary, err = ws.cli_json("run", str(path), "--date", "2026-06-01", "--findings", report)
    assert code == 2, err
    message = (f"tenant 'demo': --findings {report}: cannot be written: No space left on device; the run itself was "
               "applied and recorded (status ok, exit code 0 without this), only the report file failed")
    assert f"idwell-sync run: error: {message}\n  what to do: make room, or give --findings a file" in err
    assert "Traceback" not in err and "internal error" not in err
    assert (summary["status"], summary["exit_code"], summary["error"]["message"]) == ("ok", 2, message)
    assert summary["writes"] > 0 and len(ws.portal()["units"]) == summary["entities"]["units"]["create"]
    latest = json.loads(ws.cli("history", str(path), "--json").stdout)[0]
    assert (latest["status"], latest["writes"]["create"]) == ("ok", summary["writes"])

    done = ws.cli("run", str(path), "--date", "2026-06-01", "--findings", report, "--quiet")
    assert done.returncode == 2 and "tenant demo: run ok" in done.stdout, done.stderr
    assert "(status ok, exit code 0 without this)" in done.stderr and "findings written" not in done.stdout


@pytest.mark.parametrize("args, said", [
    (("--out", "-"), "argument --out: '-' is not standard output here (the command prints its summary there): "
                     "give a file name"),
    (("--findings", "-"), "argument --findings: '-' is not standard output here (the command prints its summary "
                          "there): give a file name"),
    (("--findings", ""), "argument --findings: the path is empty: give a file name"),
    (("--out", ""), "argument --out: the path is empty: give a file name")])
def test_an_output_option_that_names_no_file_is_a_usage_error(ws, args, said):
    """`--out -` wrote a file named `-`, and `--findings ''` said `--findings .: is a folder`."""
    done = ws.cli("plan", str(ws.tenant_file()), "--date", "2026-06-01", *args)
    assert done.returncode == 2 and done.stderr.splitlines()[-1] == f"idwell-sync plan: error: {said}", done.stderr
    assert not (ws.root / "-").exists() and not (ws.root / "var" / "plans").exists()


def test_a_plan_that_stops_before_its_plan_is_written_leaves_no_plans_folder(ws):
    """A secret not set (exit 3), an ERP that cannot be read (exit 4): no empty var/plans/ behind;
    the folder is made with the plan."""
    path = ws.tenant_file(target={"type": "idwell", "path": None, "base_url": "http://127.0.0.1:9/import/v1",
                                  "token": "${env:DEMO_TOKEN_NOT_SET}"})
    done = ws.cli("plan", str(path), "--date", "2026-06-01")
    assert done.returncode == 3 and "DEMO_TOKEN_NOT_SET is not set" in done.stderr, done.stderr
    assert not (ws.root / "var" / "plans").exists()
    path = ws.tenant_file(source_url=f"sqlite:///{ws.root / 'no-erp-here.sqlite'}")
    done = ws.cli("plan", str(path), "--date", "2026-06-01")
    assert done.returncode == 4, done.stderr
    assert not (ws.root / "var" / "plans").exists()
    done = ws.cli("plan", str(ws.tenant_file()), "--date", "2026-06-01", "--findings", "reports/findings.csv")
    assert done.returncode == 0, done.stderr
    assert (ws.root / "var" / "plans" / "demo.json").is_file() and (ws.root / "reports" / "findings.csv").is_file()
