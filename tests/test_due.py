"""`idwell-sync due`: which tenants' schedules fall due, in their own time zones, for one
scheduler entry that runs every few minutes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def tenants(folder: Path, files: dict[str, str]) -> Path:
    (folder / "tenants").mkdir(parents=True)
    for name, text in files.items():
        (folder / "tenants" / name).write_text(text, encoding="utf-8")
    return folder


def due(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "due", *args], cwd=folder, capture_output=True,
                          text=True, timeout=60)


SCHEDULES = {
    "berlin.yaml": "id: berlin\nschedule: {cron: '30 3 * * *', timezone: Europe/Berlin}\n",
    "utc.yaml": "id: utc\nschedule: {cron: '30 3 * * *', timezone: UTC}\n",
    "weekdays.yml": "id: weekdays\nschedule: {cron: '0 4 * * 1-5', timezone: Europe/Berlin}\n",
    "none.yaml": "id: none\nname: no schedule\n",
}


@pytest.mark.parametrize("at, expected", [
    ("2026-12-03T02:30:00Z", ["berlin"]),            # winter: 03:30 in Berlin is 02:30 UTC
    ("2026-12-03T02:34:59Z", ["berlin"]),            # a tick a few minutes late still has it
    ("2026-12-03T02:29:00Z", []),
    ("2026-12-03T02:35:00Z", []),                    # the next tick does not run it again
    ("2026-07-03T01:30:00Z", ["berlin"]),            # summer time: 03:30 in Berlin is 01:30 UTC
    ("2026-07-03T03:32:00Z", ["utc"]),
    ("2026-12-04T03:00:00Z", ["weekdays"]),          # Friday 04:00 in Berlin
    ("2026-12-05T03:00:00Z", []),                    # Saturday
    ("2026-12-04T04:00:00+01:00", ["weekdays"]),     # the same instant written with its offset
])
def test_a_tenant_is_due_in_the_minutes_after_its_cron_time_in_its_time_zone(tmp_path, at, expected):
    done = due(tenants(tmp_path, SCHEDULES), "--at", at)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected


def test_ticks_within_minutes_apart_run_each_tenant_once_a_night(tmp_path):
    """Every five minutes through a whole day: each tenant comes up exactly once."""
    folder = tenants(tmp_path, SCHEDULES)
    import datetime as dt
    from engine.commands.due import due as is_due, read_head
    schedules = {p.stem: read_head(p).schedule for p in (folder / "tenants").iterdir()}
    start = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)
    seen = [name for k in range(24 * 12) for name, s in sorted(schedules.items())
            if s and is_due(s, start + dt.timedelta(minutes=5 * k, seconds=7), 5)]
    assert sorted(seen) == ["berlin", "utc", "weekdays"]


@pytest.mark.parametrize("late", [0, 10, 70, 299])
def test_late_ticks_still_give_each_cron_time_to_exactly_one_tick(tmp_path, late):
    """cron starts ticks late now and then (a busy host): a tick up to one period late still
    covers its own five minutes, not a window shifted with it."""
    import datetime as dt
    from engine.commands.due import due as is_due, tick_end
    schedules = [{"cron": f"{m} {h} * * *", "timezone": "UTC"} for h in (2, 3) for m in range(60)]
    start = dt.datetime(2026, 12, 4, 1, 55, tzinfo=dt.timezone.utc)
    ticks = [start + dt.timedelta(minutes=5 * k, seconds=late if k % 3 == 1 else 0) for k in range(30)]
    runs = [sum(is_due(s, tick_end(t, 5), 5) for t in ticks) for s in schedules]
    assert runs == [1] * len(schedules)


def test_a_yml_tenant_that_is_due_can_be_run_by_its_id(tmp_path):
    """`due` prints the ids of .yml files too; `run ID` finds them (tenants/ID.yml)."""
    import shutil
    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path
    (folder / "tenants").mkdir()
    shutil.copytree(repo / "mappings", folder / "mappings")
    text = (repo / "tenants" / "demo.yaml").read_text(encoding="utf-8").replace("id: demo", "id: nord")
    (folder / "tenants" / "nord.yml").write_text(text.replace("url: sqlite:///var/demo/erp.sqlite",
                                                              "url: sqlite:///var/missing.sqlite"), encoding="utf-8")
    done = due(folder, "--at", "2026-12-03T02:30:00Z")
    assert done.stdout.split() == ["nord"], done.stderr
    done = subprocess.run([sys.executable, "-m", "engine", "run", "nord"], cwd=folder, capture_output=True,
                          text=True, timeout=60)
    assert "no tenant file" not in done.stderr and done.returncode == 4, done.stderr   # found; its ERP is missing


def test_the_night_the_clocks_go_back_runs_a_tenant_once():
    """02:30 comes twice in Berlin on 25 October 2026 (00:30 and 01:30 UTC): cron runs a job at a
    fixed time once, so does `due`; a schedule of every hour runs in both passes."""
    import datetime as dt
    from engine.commands.due import due as is_due
    nightly = {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}
    ticks = [dt.datetime(2026, 10, 24, 22, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=5 * k) for k in range(72)]
    assert [t.isoformat() for t in ticks if is_due(nightly, t, 5)] == ["2026-10-25T00:30:00+00:00"]
    hourly = {"cron": "30 * * * *", "timezone": "Europe/Berlin"}
    assert sum(is_due(hourly, t, 5) for t in ticks) == 6       # 22:30 to 03:30 UTC, 02:30 twice
    spring = [dt.datetime(2026, 3, 28, 22, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=5 * k) for k in range(72)]
    assert len([t for t in spring if is_due(nightly, t, 5)]) == 1, "02:30 does not exist that night: run once"


def test_a_file_whose_id_is_not_its_name_is_named_and_not_run(tmp_path):
    """`run ID` finds tenants/ID.yaml: a copy that kept another tenant's id would run that one
    at its own time and never itself."""
    folder = tenants(tmp_path, {**SCHEDULES, "berlin-copy.yaml": SCHEDULES["berlin.yaml"].replace("30 3", "0 5")})
    done = due(folder, "--at", "2026-12-03T04:00:00Z")
    assert done.returncode == 3 and done.stdout.split() == []
    assert "berlin-copy.yaml: the tenant id 'berlin' differs from the file name berlin-copy.yaml" in done.stderr
    done = due(folder, "--at", "2026-12-03T02:30:00Z")
    assert done.returncode == 3 and done.stdout.split() == ["berlin"]


def test_a_broken_file_is_named_and_the_others_are_still_printed(tmp_path):
    folder = tenants(tmp_path, {**SCHEDULES, "broken.yaml": "id: broken\nschedule: {cron: '61 3 * * *'}\n",
                                "garbled.yaml": "id: [unclosed\n",
                                "halfwindow.yaml": "id: halfwindow\nschedule: {cron: '30 3 * * *', "
                                                   "window: {start: '03:00'}}\n"})
    done = due(folder, "--at", "2026-12-03T02:30:00Z")
    assert done.returncode == 3
    assert done.stdout.split() == ["berlin"]
    assert "tenant 'broken': schedule.cron '61 3 * * *' is not a cron expression" in done.stderr
    assert "garbled.yaml: cannot be read" in done.stderr
    assert "tenant 'halfwindow': schedule.window {'start': '03:00'} is not a start and an end" in done.stderr


def test_the_window_is_read_as_validate_and_run_read_it(tmp_path):
    """`end: 23:00` without quotes is the time 23:00 for the config loader (YAML 1.2), not
    YAML 1.1's sexagesimal 1380: the head that `due` reads says the same."""
    from engine.commands.due import read_head
    folder = tenants(tmp_path, {**SCHEDULES, "night.yaml": "id: night\nschedule: {cron: '30 23 * * *', "
                                                           "window: {start: 23:00, end: 05:00}}\n"})
    assert read_head(folder / "tenants" / "night.yaml").window == {"start": "23:00", "end": "05:00"}
    assert read_head(folder / "tenants" / "berlin.yaml").window is None
    done = due(folder, "--at", "2026-12-03T22:30:00Z")
    assert done.returncode == 0 and done.stdout.split() == ["night"], done.stderr


def test_wrong_arguments_are_said_as_such(tmp_path):
    folder = tenants(tmp_path, SCHEDULES)
    done = due(folder, "--at", "tomorrow")
    assert done.returncode == 2 and "'tomorrow' is not a time" in done.stderr
    for period in ("0", "7", "90"):
        done = due(folder, "--within", period)
        assert done.returncode == 2 and "not a period the ticks can keep" in done.stderr, period
    done = due(folder, "--tenants-dir", "nowhere")
    assert done.returncode == 2 and "no tenants folder at nowhere" in done.stderr
