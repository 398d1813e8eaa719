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


def test_one_id_in_a_yaml_and_a_yml_file_is_not_due_and_both_files_are_named(tmp_path):
    """`run nord` with tenants/nord.yaml and tenants/nord.yml stops (exit 3, two tenant files):
    `due` does not print the id, and says once that neither file runs until one is removed (also
    where the .yaml file's id is wrong, which `run` does not read before it stops)."""
    nightly = "schedule: {cron: '30 3 * * *', timezone: Europe/Berlin}\n"
    for n, yaml_text in enumerate((f"id: nord\n{nightly}", f"id: kopie\n{nightly}")):
        folder = tenants(tmp_path / str(n), {"nord.yaml": yaml_text, "nord.yml": f"id: nord\n{nightly}",
                           "sued.yaml": f"id: sued\n{nightly}"})
        done = due(folder, "--at", "2026-12-03T02:30:00Z")
        assert done.stdout.split() == ["sued"] and done.returncode == 3, (done.stdout, done.stderr)
        assert done.stderr.splitlines() == [
            "idwell-sync due: tenants/nord.yaml: tenant 'nord' is also tenants/nord.yml: neither file runs "
            "(`idwell-sync run nord` stops, two tenant files) until one of them is removed"], done.stderr
    run = subprocess.run([sys.executable, "-m", "engine", "run", "nord"], cwd=folder, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 3 and "two tenant files" in run.stderr, run.stderr


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


@pytest.mark.parametrize("at", ["9999-12-31T23:59Z", "0001-01-01T00:00Z"])
def test_a_time_past_the_calendars_edge_is_a_usage_error_naming_the_range(tmp_path, at):
    """It ended in a traceback (exit 70): the cron code went past the year 1 or 9999."""
    done = due(tenants(tmp_path, SCHEDULES), "--at", at)
    assert done.returncode == 2, done.stderr
    assert f"argument --at: '{at}' is out of range: give a time in the years 1970 to 9998" in done.stderr


def test_the_last_year_is_ticked_to_its_end_and_a_yearly_schedule_with_no_time_left_is_not_due(tmp_path):
    folder = tenants(tmp_path, SCHEDULES | {"yearly.yaml": "id: yearly\nschedule: {cron: '0 0 1 1 *', timezone: UTC}\n",
                                            "leap.yaml": "id: leap\nschedule: {cron: '0 0 29 2 *', timezone: UTC}\n"})
    done = due(folder, "--at", "9998-12-31T02:32Z", "--ticks-file", ".due-ticks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["berlin"]
    done = due(folder, "--at", "1970-01-01T00:02Z")
    assert done.returncode == 0 and done.stdout.split() == ["yearly"], done.stderr


# --ticks-file: the ticks that did not happen are made up inside each tenant's window

QUIET = {
    "quiet.yaml": "id: quiet\nschedule: {cron: '30 3 * * *', timezone: Europe/Berlin, "
                  "window: {start: '03:00', end: '06:00'}}\n",                      # 02:30 UTC in winter
    "plain.yaml": "id: plain\nschedule: {cron: '30 3 * * *', timezone: Europe/Berlin}\n",   # no window
    "later.yaml": "id: later\nschedule: {cron: '45 4 * * *', timezone: Europe/Berlin, "
                  "window: {start: '04:00', end: '06:00'}}\n",                      # 03:45 UTC
    "none.yaml": "id: none\nname: no schedule\n",
}


def tick(folder: Path, at: str, ticks: str = ".due-ticks") -> subprocess.CompletedProcess:
    return due(folder, "--at", at, "--ticks-file", ticks)


def tick_after(folder: Path, last_end: str, at: str) -> subprocess.CompletedProcess:
    """A tick at `at` whose ticks file says the ticks before it ended at `last_end`."""
    (folder / ".due-ticks").write_text(f"{last_end}\n", encoding="utf-8")
    return tick(folder, at)


def test_the_first_tick_after_an_outage_makes_a_cron_time_up_once(tmp_path):
    """Ticks until 01:00 UTC, none for two hours (03:30 in Berlin passes), then every five
    minutes again: quiet comes up at the first tick after the outage and at no later one; plain
    has no window and is not made up; later's cron time comes after the outage, as usual."""
    folder = tenants(tmp_path, QUIET)
    first = tick(folder, "2026-12-03T01:00:12Z")
    assert first.returncode == 0 and first.stdout.split() == [], first.stderr
    assert (folder / ".due-ticks").read_text(encoding="utf-8") == "2026-12-03T01:00:00Z\n"
    after = tick(folder, "2026-12-03T03:00:40Z")
    assert after.returncode == 0 and after.stdout.split() == ["quiet"], after.stderr
    assert "no tick handed out the cron times up to 2026-12-03T02:55:00Z (the last tick's (--ticks-file) period " \
           "ended 2026-12-03T01:00:00Z): made up tenant quiet" in after.stderr
    assert "not tenant plain (no schedule.window, or the tick is outside it): `idwell-sync status` shows them as " \
           "missed" in after.stderr
    following = [f"2026-12-03T03:{m:02d}:00Z" for m in range(5, 60, 5)] + ["2026-12-03T04:00:00Z"]
    printed = [name for at in following for name in tick(folder, at).stdout.split()]
    assert printed == ["later"]
    assert (folder / ".due-ticks").read_text(encoding="utf-8") == "2026-12-03T04:00:00Z\n"


@pytest.mark.parametrize("at, expected, left", [
    ("2026-12-03T02:35:00Z", ["quiet"], "tenant plain"),          # 03:35 in Berlin: right after the cron time
    ("2026-12-03T03:00:00Z", ["quiet"], "tenant plain"),          # 04:00: later's cron time (04:45) is to come
    ("2026-12-03T04:55:00Z", ["later", "quiet"], "tenant plain"),  # 05:55: both windows open, in file order
    ("2026-12-03T05:00:00Z", [], "3 tenants: later, plain, quiet"),  # 06:00: the windows have ended
    ("2026-12-03T08:00:00Z", [], "3 tenants: later, plain, quiet"),
])
def test_a_missed_cron_time_is_made_up_only_inside_the_tenants_window(tmp_path, at, expected, left):
    folder = tenants(tmp_path, QUIET)
    done = tick_after(folder, "2026-12-03T01:00:00Z", at)
    assert done.returncode == 0 and done.stdout.split() == expected, done.stderr
    assert f"not {left} (no schedule.window, or the tick is outside it)" in done.stderr


@pytest.mark.parametrize("at, expected", [
    ("2026-12-03T22:45:00Z", ["night"]),            # 23:45 in Berlin
    ("2026-12-04T01:00:00Z", ["night"]),            # 02:00 the next day: the window runs over midnight
    ("2026-12-04T04:05:00Z", []),                   # 05:05: past its end
    ("2026-12-03T21:55:00Z", []),                   # 22:55: not yet, and no cron time was missed
])
def test_a_window_over_midnight(tmp_path, at, expected):
    folder = tenants(tmp_path, {"night.yaml": "id: night\nschedule: {cron: '30 23 * * *', timezone: Europe/Berlin, "
                                              "window: {start: 23:00, end: 05:00}}\n"})
    done = tick_after(folder, "2026-12-03T21:00:00Z", at)
    assert done.returncode == 0 and done.stdout.split() == expected, done.stderr


@pytest.mark.parametrize("content", [
    None,                                       # the first tick with the option
    "2026-12-03T05:00:00Z\n",                   # after this tick: the clock was set back
])
def test_without_a_recorded_end_before_this_tick_nothing_is_made_up(tmp_path, content):
    folder = tenants(tmp_path, QUIET)
    if content is not None:
        (folder / ".due-ticks").write_text(content, encoding="utf-8")
    done = tick(folder, "2026-12-03T03:00:00Z")          # quiet's window is open, its cron time 30 minutes past
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (folder / ".due-ticks").read_text(encoding="utf-8") == "2026-12-03T03:00:00Z\n"
    done = tick(folder, "2026-12-03T03:45:00Z")
    assert (done.returncode, done.stdout.split()) == (0, ["later"]), done.stderr


@pytest.mark.parametrize("content, said", [
    (b"yesterday\n", "holds 'yesterday', not the end of a tick (e.g. 2026-12-03T02:35:00Z)"),
    (b"", "is empty, not the end of a tick"),
    (b"\xff\xfe\x00", "cannot be read (UnicodeDecodeError), not the end of a tick"),
])
def test_a_garbled_ticks_file_is_named_and_written_anew(tmp_path, content, said):
    """The tick's own tenants are still printed; what was missed before is not made up (when,
    the file does not say), and `status` shows it."""
    folder = tenants(tmp_path, QUIET)
    (folder / ".due-ticks").write_bytes(content)
    done = tick(folder, "2026-12-03T03:45:00Z")
    assert done.returncode == 3 and done.stdout.split() == ["later"]         # not quiet (02:30 UTC)
    assert f"idwell-sync due: error: .due-ticks (--ticks-file) {said}" in done.stderr
    assert "It is written anew now; ticks that did not happen before this one are not made up: `idwell-sync " \
           "status` shows the tenants that missed their night" in done.stderr
    assert (folder / ".due-ticks").read_text(encoding="utf-8") == "2026-12-03T03:45:00Z\n"
    done = tick(folder, "2026-12-03T03:50:00Z")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.parametrize("ticks, said", [
    ("nowhere/.due-ticks", "nowhere/.due-ticks (--ticks-file) cannot be written: there is no folder nowhere. "
                           "This tick's own tenants are printed, but ticks that do not happen are not made up until "
                           "it can be: create the folder nowhere, or give another --ticks-file"),
])
def test_a_ticks_file_that_cannot_be_written_is_named_and_the_tick_still_printed(tmp_path, ticks, said):
    folder = tenants(tmp_path, QUIET)
    (folder / "folder").mkdir()
    done = tick(folder, "2026-12-03T02:30:00Z", ticks)
    assert done.returncode == 3 and done.stdout.split() == ["plain", "quiet"]
    assert f"idwell-sync due: error: {said}" in done.stderr
    assert not (folder / "nowhere").exists() and (folder / "folder").is_dir()


def test_a_folder_given_as_ticks_file_is_a_usage_error_that_says_to_give_a_file(tmp_path):
    """Not "cannot be read ... written anew" and then "cannot be written" each tick: the entry
    names a folder where a file belongs. The tick's own tenants are still printed."""
    folder = tenants(tmp_path, QUIET)
    (folder / "state").mkdir()
    done = tick(folder, "2026-12-03T02:30:00Z", "state")
    assert done.returncode == 2 and done.stdout.split() == ["plain", "quiet"]
    assert done.stderr == ("idwell-sync due: error: --ticks-file state is a folder, not a file: give the path of a "
                           "file, e.g. --ticks-file state/.due-ticks (the first tick creates it). This tick's own "
                           "tenants are printed, but ticks that do not happen are not made up until then\n")
    assert list((folder / "state").iterdir()) == [] and not (folder / "state.lock").exists()
    done = tick(folder, "2026-12-03T02:35:00Z", "state/.due-ticks")
    assert (done.returncode, done.stderr) == (0, "") and (folder / "state" / ".due-ticks").is_file()


def test_a_tick_that_cannot_record_its_end_makes_nothing_up(tmp_path):
    """Else every tick would make the same cron times up again until the file can be written."""
    folder = tenants(tmp_path, QUIET)
    (folder / ".due-ticks").write_text("2026-12-03T01:00:00Z\n", encoding="utf-8")
    (folder / ".due-ticks.tmp").mkdir()                 # where the new end is written first
    done = tick(folder, "2026-12-03T03:00:00Z")
    assert done.returncode == 3 and done.stdout.split() == [], "quiet is not made up"
    assert ".due-ticks (--ticks-file) cannot be written: .due-ticks.tmp is a folder." in done.stderr
    assert (folder / ".due-ticks").read_text(encoding="utf-8") == "2026-12-03T01:00:00Z\n"
    done = tick(folder, "2026-12-03T02:30:00Z")
    assert done.returncode == 3 and done.stdout.split() == ["plain", "quiet"], "its own tenants are printed"


@pytest.mark.parametrize("at, expected", [
    ("2026-12-07T03:00:00Z", ["monthly"]),      # its cron time (1 December, 02:30 UTC) is 6 days back
    ("2026-12-08T03:00:00Z", []),               # 7 days and a half: not made up
])
def test_cron_times_more_than_7_days_back_are_not_made_up(tmp_path, at, expected):
    folder = tenants(tmp_path, {"monthly.yaml": "id: monthly\nschedule: {cron: '30 3 1 * *', timezone: Europe/Berlin, "
                                                "window: {start: '03:00', end: '06:00'}}\n"})
    done = tick_after(folder, "2026-11-30T00:00:00Z", at)
    assert done.returncode == 0 and done.stdout.split() == expected, done.stderr


def day_of_ticks(folder: Path, gap: range = range(0)) -> tuple[list[str], list[str]]:
    """Every id printed by ticks every five minutes through 4 December 2026 (UTC), each a few
    seconds to minutes late, except the ticks whose index is in `gap`; and what they said on
    standard error. Through engine.cli.main in this process: 288 interpreters would take minutes."""
    import contextlib
    import datetime as dt
    import io

    from engine.cli import main
    printed, said = [], []
    for k in range(24 * 12):
        if k in gap:
            continue
        at = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=5 * k, seconds=37 * k % 300)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["due", "--tenants-dir", str(folder / "tenants"), "--ticks-file", str(folder / ".due-ticks"),
                         "--at", at.isoformat()])
        assert code == 0, err.getvalue()
        printed += out.getvalue().split()
        said += [f"{at:%H:%M} {err.getvalue()}"] if err.getvalue() else []
    return printed, said


def day_tenants(folder: Path) -> Path:
    """A tenant for each hour of the day in four time zones (one half an hour off UTC), each with a
    window from its hour for four hours, over midnight late in the day; two without a window; one
    whose short window has ended by noon."""
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
    files = {f"h{h:02d}.yaml": f"id: h{h:02d}\nschedule: {{cron: '{h * 7 % 60} {h} * * *', timezone: {zones[h % 4]}, "
                               f"window: {{start: '{h:02d}:00', end: '{(h + 4) % 24:02d}:00'}}}}\n" for h in range(24)}
    files["bare-in-gap.yaml"] = "id: bare-in-gap\nschedule: {cron: '30 10 * * *', timezone: UTC}\n"
    files["bare.yaml"] = "id: bare\nschedule: {cron: '30 14 * * *', timezone: UTC}\n"
    files["shut.yaml"] = "id: shut\nschedule: {cron: '15 10 * * *', timezone: UTC, " \
                         "window: {start: '10:00', end: '11:00'}}\n"
    return tenants(folder, files)


def test_a_day_of_ticks_hands_out_every_tenant_once(tmp_path):
    """Consecutive ticks make nothing up: no tick is missing between them."""
    folder = day_tenants(tmp_path)
    printed, said = day_of_ticks(folder)
    assert sorted(printed) == sorted(p.stem for p in (folder / "tenants").iterdir())
    assert said == []


def test_a_day_with_two_hours_without_ticks_makes_up_each_windowed_tenant_once(tmp_path):
    """No tick from 10:00 to 11:55 UTC: the tick at 12:00 makes up the tenants whose cron times
    fell in those hours and whose window is still open (h06 at 06:42 in New York, h15 at 15:45 in
    Kolkata), none twice; bare-in-gap (no window) and shut (its window ended at 11:00) stay missed."""
    folder = day_tenants(tmp_path)
    printed, said = day_of_ticks(folder, gap=range(10 * 12, 12 * 12))
    assert sorted(printed) == sorted(p.stem for p in (folder / "tenants").iterdir()
                                     if p.stem not in ("bare-in-gap", "shut"))
    assert len(said) == 1 and said[0].startswith("12:03 idwell-sync due: no tick handed out the cron times up to "
                                                 "2026-12-04T11:55:00Z (the last tick's (--ticks-file) period ended "
                                                 "2026-12-04T09:55:00Z): made up 2 tenants: h06, h15"), said
    assert "not 2 tenants: bare-in-gap, shut" in said[0]


def test_an_overlapping_tick_waits_and_does_not_make_up_what_the_other_handed_out(tmp_path):
    """A tick after an outage (02:55 UTC, made quiet up) still holds the lock when the next one
    starts: the next one waits, then reads that tick's end and makes nothing up again."""
    import fcntl
    import time
    folder = tenants(tmp_path, QUIET)
    ticks = folder / ".due-ticks"
    ticks.write_text("2026-12-03T01:00:00Z\n", encoding="utf-8")
    with open(f"{ticks}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        later = subprocess.Popen([sys.executable, "-m", "engine", "due", "--at", "2026-12-03T03:00:00Z",
                                  "--ticks-file", ".due-ticks"], cwd=folder, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while later.poll() is None and time.monotonic() < deadline \
                and not any(line.split()[1:2] == ["->"] and str(later.pid) in line.split()
                            for line in Path("/proc/locks").read_text().splitlines()):
            time.sleep(0.05)
        assert later.poll() is None, later.communicate()
        ticks.write_text("2026-12-03T02:55:00Z\n", encoding="utf-8")         # the earlier tick's end
    out, err = later.communicate(timeout=60)
    assert (later.returncode, out, err) == (0, "", "")


def test_a_tick_that_keeps_the_lock_does_not_hold_up_the_next_for_longer_than_the_wait(tmp_path, monkeypatch):
    """A tick that hangs with the lock (its output unread, say) must not stop every later tick:
    after the wait, the next one prints its own tenants, makes nothing up, and says why (exit 3)."""
    import contextlib
    import fcntl
    import io
    import time

    from engine.cli import main
    from engine.commands import _ticks
    monkeypatch.setattr(_ticks, "LOCK_WAIT", 0.5)
    early = "id: early\nschedule: {cron: '0 2 * * *', timezone: Europe/Berlin, window: {start: '01:00', end: '06:00'}}\n"
    folder = tenants(tmp_path, {"berlin.yaml": SCHEDULES["berlin.yaml"], "early.yaml": early})
    ticks = folder / ".due-ticks"
    ticks.write_text("2026-12-03T00:00:00Z\n", encoding="utf-8")         # a gap: something to make up
    out, err = io.StringIO(), io.StringIO()
    with open(f"{ticks}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["due", "--tenants-dir", str(folder / "tenants"), "--ticks-file", str(ticks),
                         "--at", "2026-12-03T02:30:00Z"])
        waited = time.monotonic() - started
    assert (code, out.getvalue().split()) == (3, ["berlin"]), err.getvalue()
    assert f"{ticks}.lock (--ticks-file) has been held by another tick for 0 s" in err.getvalue(), err.getvalue()
    assert "early" not in out.getvalue(), "made up only once the lock is had"
    assert 0.4 < waited < 30
    assert ticks.read_text(encoding="utf-8") == "2026-12-03T00:00:00Z\n", "the file is left to the tick that holds it"
