"""`idwell-sync status`: the morning overview of every tenant. An operator with hundreds of tenants
sees each one's last run and a verdict (ok, running, never, failed, rejected, deletes_held,
missed, unreadable), and a monitoring check gets exit code 1 when any needs attention.

Runs are recorded with the state store's own API (start_run / finish_run, the clock set to the
run's start and end), the schedules judged with --at, so that every time is known."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from killed_runs import kill_a_running_run

import engine.state_runs
from engine.state import StateStore

REPO = Path(__file__).resolve().parents[1]
NIGHTLY = "schedule: {cron: '30 3 * * *', timezone: Europe/Berlin}\n"       # 02:30 UTC in winter


OLD = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp()


def tenants(folder: Path, files: dict[str, str]) -> Path:
    """The tenant files, as if written on 1 November 2026, before the nights the tests judge (a
    tenant that never ran is `new` until a cron time passes after its file changed)."""
    (folder / "tenants").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / "tenants" / name).write_text(text, encoding="utf-8")
        os.utime(folder / "tenants" / name, (OLD, OLD))
    return folder


def status(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    return subprocess.run([sys.executable, "-m", "engine", "status", *args], cwd=folder, capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


def status_json(folder: Path, *args: str, code: int = 1, **kw) -> dict[str, dict]:
    done = status(folder, *args, "--json", **kw)
    assert done.returncode == code, done.stderr
    entries = json.loads(done.stdout)
    assert [e["tenant"] for e in entries] == sorted(e["tenant"] for e in entries)
    return {e["tenant"]: e for e in entries}


def default_store(folder: Path) -> str:
    return f"sqlite:///{folder / 'var' / 'state.sqlite'}"


def record(url: str, tenant: str, status: str, started: str, *, seconds: float = 200, **finish) -> None:
    """A run of `tenant` that started at `started` (UTC) and ended `seconds` later with `status`
    (`running`: never ended; `locked`: refused by the run lock, `message` naming the holder),
    recorded through the state store as `run` records it."""
    start = dt.datetime.fromisoformat(started.rstrip("Z"))
    store = StateStore(url)
    try:
        with mock.patch.object(engine.state_runs, "_now", lambda: start):
            if status == "locked":
                store.record_locked(tenant, finish["message"])
                return
            run_id = store.start_run(tenant)
        if status != "running":
            with mock.patch.object(engine.state_runs, "_now", lambda: start + dt.timedelta(seconds=seconds)):
                store.finish_run(run_id, status=status, **finish)
    finally:
        store.close()


def row(text: str, tenant: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.split()[:1] == [tenant]]
    return line.split()


AT = "2026-12-03T07:00:00Z"
LAST_NIGHT = "2026-12-03T02:30:04Z"


def night(folder: Path) -> Path:
    """Five tenants after a night: one ok, one failed, one whose portal refused records, one with
    deletes held back, one without a schedule that never ran."""
    tenants(folder, {f"{t}.yaml": f"id: {t}\n{NIGHTLY}" for t in ("acme", "bau", "city", "dach")}
            | {"ohne.yaml": "id: ohne\nname: no schedule\n"})
    url = default_store(folder)
    record(url, "acme", "ok", LAST_NIGHT, seconds=192, counts={"users": {"create": 1200, "update": 34, "delete": 0},
                                                               "units": {"create": 0, "update": 0, "delete": 3}},
           findings={"email_invalid": 5, "unit_phantom": 7})
    record(url, "bau", "failed", LAST_NIGHT, seconds=3,
           message="tenant 'bau': the ERP cannot be reached: login failed for user 'sync'")
    record(url, "city", "rejected", LAST_NIGHT, counts={"users": {"create": 10, "rejected": 2}}, findings={})
    record(url, "dach", "deletes_held", LAST_NIGHT, counts={"units": {"create": 0, "held": 40}}, findings={},
           message="deletes held back: units: 40 of 100 records would be archived (max_share 0.1)")
    return folder


def test_each_tenant_has_one_line_with_its_last_run_and_verdict_and_a_count_line(tmp_path):
    done = status(night(tmp_path), "--at", AT)
    assert done.returncode == 1, done.stderr                   # bau, city and dach need attention
    out = done.stdout
    assert out.splitlines()[0] == (f"5 tenant files in tenants at {AT} (state store {default_store(tmp_path)})")
    tenant_lines = [line.split()[0] for line in out.splitlines() if line.startswith("  ")][1:]
    assert tenant_lines == ["acme", "bau", "city", "dach", "ohne"]
    assert row(out, "acme") == ["acme", "ok", LAST_NIGHT, "3", "min", "12", "s", "ok", "1,237", "12"]
    assert row(out, "bau")[:5] == ["bau", "failed", LAST_NIGHT, "3.0", "s"]
    assert "the ERP cannot be reached: login failed for user 'sync'" in out
    assert row(out, "city")[:2] == ["city", "rejected"] and "the portal refused 2 records" in out
    assert row(out, "dach")[:2] == ["dach", "deletes_held"]
    assert "deletes held back: units: 40 of 100 records would be archived" in out
    assert row(out, "ohne") == ["ohne", "never", "-", "-", "-", "-", "-"]
    assert out.splitlines()[-1] == "1 ok, 1 never, 1 failed, 1 rejected, 1 deletes_held; 3 need attention"


def test_json_has_one_object_per_tenant_with_the_last_run_as_history_shows_it(tmp_path):
    folder = night(tmp_path)
    entries = status_json(folder, "--at", AT)
    assert set(entries) == {"acme", "bau", "city", "dach", "ohne"}
    acme = entries["acme"]
    assert set(acme) == {"tenant", "file", "verdict", "attention", "message", "schedule", "scheduled_at",
                         "state_store", "last_run", "last_outcome", "holder_run", "pending_writes", "lock"}
    assert acme["holder_run"] is None                                   # its last run was not refused
    assert (acme["pending_writes"], entries["bau"]["pending_writes"]) == (None, 0), "counted where a run failed"
    assert (acme["verdict"], acme["attention"], acme["message"], acme["lock"]) == ("ok", False, None, None)
    assert acme["file"] == "tenants/acme.yaml" and acme["state_store"] == default_store(folder)
    assert acme["schedule"] == {"cron": "30 3 * * *", "timezone": "Europe/Berlin"}
    assert acme["scheduled_at"] == "2026-12-03T02:30:00Z"
    from engine.commands.history import history_entry
    store = StateStore(default_store(folder))
    try:
        assert acme["last_run"] == history_entry(store.runs("acme")[0])     # as `history --json` shows it
    finally:
        store.close()
    assert acme["last_run"]["writes"] == {"create": 1200, "update": 34, "delete": 3}
    assert acme["last_run"]["findings"] == 12 and acme["last_run"]["duration_s"] == 192.0
    assert (entries["bau"]["verdict"], entries["bau"]["attention"]) == ("failed", True)
    assert entries["bau"]["message"] == "tenant 'bau': the ERP cannot be reached: login failed for user 'sync'"
    assert [entries[t]["verdict"] for t in ("city", "dach")] == ["rejected", "deletes_held"]
    assert entries["dach"]["message"].startswith("deletes held back: ")
    assert entries["dach"]["last_run"]["held"] == 40
    ohne = entries["ohne"]
    assert (ohne["verdict"], ohne["attention"], ohne["schedule"], ohne["scheduled_at"], ohne["last_run"]) == \
        ("never", False, None, None, None)


def test_exit_0_and_quiet_prints_nothing_when_no_tenant_needs_attention(tmp_path):
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "ohne.yaml": "id: ohne\n"})
    record(default_store(tmp_path), "acme", "ok", LAST_NIGHT)
    done = status(tmp_path, "--at", AT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "1 ok, 1 never; none needs attention"
    quiet = status(tmp_path, "--at", AT, "--quiet")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_quiet_prints_only_the_tenants_that_need_attention(tmp_path):
    done = status(night(tmp_path), "--at", AT, "--quiet")
    assert done.returncode == 1, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")][1:]
    assert listed == ["bau", "city", "dach"]
    assert done.stdout.splitlines()[-1].endswith("; 3 need attention")


def test_a_tenant_whose_cron_time_passed_without_a_run_is_missed(tmp_path):
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "neu.yaml": f"id: neu\n{NIGHTLY}"})
    record(default_store(tmp_path), "acme", "ok", "2026-12-02T02:30:04Z")         # the night before
    done = status(tmp_path, "--at", AT)
    assert done.returncode == 1
    assert row(done.stdout, "acme")[:2] == ["acme", "missed"]
    assert ("no run started since its cron time 2026-12-03 03:30 Europe/Berlin (2026-12-03T02:30:00Z)"
            in done.stdout)
    assert row(done.stdout, "neu")[:2] == ["neu", "missed"], "a tenant with a schedule that never ran"
    entries = status_json(tmp_path, "--at", AT)
    assert entries["acme"]["last_run"]["status"] == "ok" and entries["acme"]["attention"] is True
    assert entries["neu"]["scheduled_at"] == "2026-12-03T02:30:00Z" and entries["neu"]["last_run"] is None


def test_a_missed_tenant_says_what_to_do_with_its_cron_time_in_its_time_zone(tmp_path):
    """The night operator learns where to look (cron, the tick's mail, not the lock) and how to
    start the run; the `due --at` it names does list the tenant."""
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "ok.yaml": f"id: ok\n{NIGHTLY}"})
    record(default_store(tmp_path), "acme", "ok", "2026-12-02T02:30:04Z")         # the night before
    record(default_store(tmp_path), "ok", "ok", LAST_NIGHT)
    done = status(tmp_path, "--at", AT, "--quiet")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    head = lines.index("what to do, missed (acme at 2026-12-03 03:30 Europe/Berlin): no run was started at its "
                       "cron time")
    advice = "\n".join(lines[head + 1:head + 6])
    assert all(line.startswith("  - ") for line in lines[head + 1:head + 6]) and lines[head + 6] == ""
    assert "`idwell-sync due` entry" in advice and "crontab -l" in advice and "journalctl -u cron" in advice
    assert "`idwell-sync due --at 2026-12-03T03:30+01:00` prints 'acme'" in advice
    assert "the mail cron sent for that tick" in advice and "a run it refused is shown as `locked`" in advice
    assert lines[head + 5] == "  - then start the run by hand: `idwell-sync run acme`"
    due = subprocess.run([sys.executable, "-m", "engine", "due", "--at", "2026-12-03T03:30+01:00"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert due.returncode == 0 and due.stdout.split() == ["acme", "ok"], due.stderr
    tenants(tmp_path, {"neu.yaml": "id: neu\nschedule: {cron: '0 2 * * *', timezone: America/New_York}\n"})
    many = status(tmp_path, "--at", "2026-12-03T09:00:00Z").stdout
    assert ("what to do, missed (acme at 2026-12-03 03:30 Europe/Berlin, neu at 2026-12-03 02:00 America/New_York): "
            "no run of these tenants was started at their cron time") in many
    assert "  - then start the run by hand: `idwell-sync run TENANT` for each" in many
    assert status_json(tmp_path, "--at", AT)["acme"]["message"] == \
        "no run started since its cron time 2026-12-03 03:30 Europe/Berlin (2026-12-03T02:30:00Z)"
    assert "what to do" not in status(night(tmp_path / "other"), "--at", AT).stdout, "only for missed"


def test_a_tenant_added_after_its_cron_time_is_new_until_its_next_cron_time_passes(tmp_path):
    """A tenant file added at 10:00 for a nightly run at 03:30 was not there when cron's tick at
    03:30 looked: the scheduler could not have run it, and the morning after it is not `missed`
    but `new`, naming when its first run is due; once that cron time passes without a run it is
    `missed`. The file's modification time is all there is to go by: an edit moves it too, so a
    tenant that never ran and whose file was edited after its cron time is `new` until the next
    one. A tenant that has run is judged by its runs, whenever its file changed."""
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    cron_at = now - dt.timedelta(hours=3)                           # its cron time passed three hours ago
    schedule = f"schedule: {{cron: '{cron_at.minute} {cron_at.hour} * * *', timezone: UTC}}\n"
    tenants(tmp_path, {"neu.yaml": f"id: neu\n{schedule}", "alt.yaml": f"id: alt\n{schedule}"})
    record(default_store(tmp_path), "alt", "ok", utc(cron_at - dt.timedelta(days=2)))   # not the night before

    def changed(hours_ago: float) -> None:
        when = (now - dt.timedelta(hours=hours_ago)).timestamp()
        for name in ("neu.yaml", "alt.yaml"):
            os.utime(tmp_path / "tenants" / name, (when, when))

    changed(2)                                                      # added (or edited) after the cron time
    at = utc(now)
    done = status(tmp_path, "--at", at)
    assert done.returncode == 1, done.stderr                        # alt: missed
    assert row(done.stdout, "neu") == ["neu", "new", "-", "-", "-", "-", "-", "first", "run", "due",
                                       *f"{cron_at + dt.timedelta(days=1):%Y-%m-%d %H:%M}".split(), "UTC;", "its",
                                       "file", "changed", *f"{now - dt.timedelta(hours=2):%Y-%m-%d %H:%M}".split(),
                                       "UTC,",
                                       "after", "its", "last", "cron", "time"]
    assert row(done.stdout, "alt")[:2] == ["alt", "missed"], "an edit hides no miss of a tenant that has run"
    assert done.stdout.splitlines()[-1] == "1 new, 1 missed; 1 needs attention"
    assert "neu" not in status(tmp_path, "--at", at, "--quiet").stdout
    neu = status_json(tmp_path, "--at", at)["neu"]
    assert (neu["verdict"], neu["attention"], neu["last_run"]) == ("new", False, None)
    assert (neu["scheduled_at"], neu["last_outcome"]) == (utc(cron_at), None)
    later = utc(cron_at + dt.timedelta(days=1, minutes=16))         # its first cron time passed without a run
    assert status_json(tmp_path, "--at", later)["neu"]["verdict"] == "missed"
    assert status_json(tmp_path, "--at", utc(cron_at + dt.timedelta(days=1, minutes=10)))["neu"]["verdict"] == "new"
    changed(4)                                                      # the file was there at the cron time
    assert status_json(tmp_path, "--at", at)["neu"]["verdict"] == "missed"


def utc(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


BEFORE = "2026-12-02T02:30:04Z"                    # the night before the one missed
MISSED = "no run started since its cron time 2026-12-03 03:30 Europe/Berlin (2026-12-03T02:30:00Z)"


@pytest.mark.parametrize("runs, outcome, why", [
    ([dict(status="failed", seconds=1800, message="stopped (SIGTERM)")], "failed", "stopped (SIGTERM)"),
    ([dict(status="running")], "failed",                     # killed: its end never recorded, its lock gone
     "ended without finishing (no run holds the tenant's lock); the next run records it as failed"),
    ([dict(status="rejected", counts={"users": {"create": 10, "rejected": 2}}, findings={})], "rejected",
     "the portal refused 2 records; the next run sends them again"),
    ([dict(status="failed", seconds=7200, message="the ERP cannot be reached"),      # a run refused by the lock
      dict(status="locked", started="2026-12-02T03:30:02Z", message="tenant 'acme' is locked by another run")],
     "failed", "the ERP cannot be reached; the run at 2026-12-02T03:30:02Z did not start (`locked`, exit 7): this "
               "one still held the lock"),
])
def test_a_missed_tenant_whose_last_run_did_not_end_ok_says_that_too(tmp_path, runs, outcome, why):
    """The night before, the tenant's run failed (or was killed, or the portal refused records);
    tonight no run started. `missed` alone hid the failure: the table showed the old run's status
    at most, the message and --json's verdict only the missed cron time, and the run by hand it
    advises may stop the same way. The message goes on to the last run's outcome, --json has it as
    `last_outcome`, and the advice under the table names it with its reason."""
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "gut.yaml": f"id: gut\n{NIGHTLY}"})
    url = default_store(tmp_path)
    for run in runs:
        record(url, "acme", **{"started": BEFORE, **run})
    record(url, "gut", "ok", BEFORE)
    entries = status_json(tmp_path, "--at", AT)
    acme, gut = entries["acme"], entries["gut"]
    assert (acme["verdict"], acme["attention"], acme["last_outcome"]) == ("missed", True, outcome)
    assert acme["message"] == f"{MISSED}; the last run (at {BEFORE}) was `{outcome}`: {why}"
    assert (gut["verdict"], gut["last_outcome"], gut["message"]) == ("missed", "ok", MISSED), "an ok run: no note"
    out = status(tmp_path, "--at", AT, "--quiet").stdout
    assert row(out, "acme")[:3] == ["acme", "missed", BEFORE], "the line shows the run the note is about"
    lines = out.splitlines()
    advice = lines.index("  - the run before the missed cron time did not end ok: what stopped it may stop the run "
                         "by hand too (`idwell-sync history acme` shows the runs)")
    assert lines[advice + 1] == f"      acme: the last run (at {BEFORE}) was `{outcome}`: {why}"
    assert lines[advice + 2] == "  - then start the run by hand: `idwell-sync run TENANT` for each"
    assert "gut:" not in out


def test_last_outcome_is_the_verdict_of_the_last_run_and_null_without_one(tmp_path):
    entries = status_json(night(tmp_path), "--at", AT)
    assert {t: e["last_outcome"] for t, e in entries.items()} == \
        {"acme": "ok", "bau": "failed", "city": "rejected", "dach": "deletes_held", "ohne": None}


@pytest.mark.parametrize("cron, started, at, grace, verdict", [
    # grace: a cron time counts as missed once it is --grace minutes past (default 15)
    ("30 3 * * *", "2026-12-02T02:30:04Z", "2026-12-03T02:40:00Z", None, "ok"),
    ("30 3 * * *", "2026-12-02T02:30:04Z", "2026-12-03T02:46:00Z", None, "missed"),
    ("30 3 * * *", "2026-12-02T02:30:04Z", "2026-12-03T02:40:00Z", "5", "missed"),
    ("30 3 * * *", "2026-12-02T02:30:04Z", "2026-12-03T02:40:00Z", "0", "missed"),
    # summer time: 03:30 in Berlin is 01:30 UTC, not 02:30 (nor 03:30, as in UTC)
    ("30 3 * * *", "2026-07-02T03:40:00Z", "2026-07-03T01:50:00Z", None, "missed"),
    ("30 3 * * *", "2026-07-02T03:40:00Z", "2026-07-03T01:40:00Z", None, "ok"),
    # 29 March 2026: 02:30 does not exist in Berlin, the run starts at 03:00 CEST (01:00 UTC) as due starts it
    ("30 2 * * *", "2026-03-28T01:30:04Z", "2026-03-29T01:20:00Z", None, "missed"),
    ("30 2 * * *", "2026-03-29T01:00:04Z", "2026-03-29T06:00:00Z", None, "ok"),
    # 25 October 2026: 02:30 comes twice (00:30 and 01:30 UTC); the run at the first is that night's run
    ("30 2 * * *", "2026-10-25T00:30:04Z", "2026-10-25T06:00:00Z", None, "ok"),
    ("30 2 * * *", "2026-10-24T00:30:04Z", "2026-10-25T00:50:00Z", None, "missed"),
    # every hour: both passes of the repeated hour are run, so both are missed if not
    ("30 * * * *", "2026-10-25T00:30:04Z", "2026-10-25T01:50:00Z", None, "missed"),
])
def test_missed_uses_the_schedules_cron_times_in_its_time_zone_with_a_grace(tmp_path, cron, started, at, grace,
                                                                             verdict):
    tenants(tmp_path, {"acme.yaml": f"id: acme\nschedule: {{cron: '{cron}', timezone: Europe/Berlin}}\n"})
    record(default_store(tmp_path), "acme", "ok", started)
    entries = status_json(tmp_path, "--at", at, *(("--grace", grace) if grace else ()),
                          code=0 if verdict == "ok" else 1)
    assert entries["acme"]["verdict"] == verdict, entries["acme"]


def test_a_run_that_holds_the_lock_is_running_not_missed(tmp_path):
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}"})
    url = default_store(tmp_path)
    record(url, "acme", "ok", "2026-11-01T02:30:04Z")                        # long before the last cron time
    store = StateStore(url)
    try:
        with store.lock("acme"):            # a run of this process (alive) has just taken the lock
            done = status(tmp_path, "--at", AT)
            entries = status_json(tmp_path, "--at", AT, code=0)
    finally:
        store.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "acme")[:2] == ["acme", "running"]
    acme = entries["acme"]
    assert (acme["verdict"], acme["attention"], acme["last_run"]["status"]) == ("running", False, "ok")
    assert acme["lock"]["pid"] == os.getpid() and acme["lock"]["stale"] is None
    assert acme["message"].startswith(f"a run holds the lock (host {socket.gethostname()!r}, pid {os.getpid()}")
    assert status_json(tmp_path, "--at", AT)["acme"]["verdict"] == "missed", "the lock released, the old run counts"




def test_a_killed_run_is_failed_whether_its_lock_was_left_behind_or_not(tmp_path):
    tenants(tmp_path, {"acme.yaml": "id: acme\n", "bau.yaml": "id: bau\n"})
    url = default_store(tmp_path)
    pid = kill_a_running_run(url, "acme")                           # kill -9: its lock stays
    record(url, "bau", "running", "2026-12-03T02:30:04Z")           # its end never recorded, no lock
    entries = status_json(tmp_path, "--at", AT)
    acme, bau = entries["acme"], entries["bau"]
    assert (acme["verdict"], acme["last_run"]["status"], acme["attention"]) == ("failed", "running", True)
    assert acme["lock"]["pid"] == pid and acme["lock"]["stale"].startswith("its process is gone")
    assert acme["message"].startswith("ended without finishing (its lock is stale: its process is gone (host ")
    assert acme["message"].endswith("the next run records it as failed")
    assert (bau["verdict"], bau["lock"]) == ("failed", None)
    assert bau["message"] == ("ended without finishing (no run holds the tenant's lock); "
                              "the next run records it as failed")


REFUSED = "2026-12-03T03:30:02Z"                  # a later tick's run, refused: the night's run held the lock
HELD = "tenant '{}' is locked by another run: host 'sync1', pid 4711, since 2026-12-03 02:30:04 UTC (59 min ago)"


@pytest.mark.parametrize("holder, verdict, message", [
    (dict(status="failed", seconds=3600, message="stopped (SIGTERM)"), "failed",
     "stopped (SIGTERM); the run at 2026-12-03T03:30:02Z did not start (`locked`, exit 7): this one still held "
     "the lock"),
    (dict(status="running"), "failed",                 # killed (kill -9) after the refusal, its lock gone
     "ended without finishing (no run holds the tenant's lock); the next run records it as failed; the run at "
     "2026-12-03T03:30:02Z did not start (`locked`, exit 7): this one still held the lock"),
    (dict(status="deletes_held", seconds=3600, counts={"units": {"held": 40}}, findings={},
          message="deletes held back: units: 40 of 100 records would be archived (max_share 0.1)"), "deletes_held",
     "deletes held back: units: 40 of 100 records would be archived (max_share 0.1); the run at "
     "2026-12-03T03:30:02Z did not start (`locked`, exit 7): this one still held the lock"),
    (dict(status="ok", seconds=3600, counts={"users": {"create": 3}}, findings={}), "locked",
     HELD.format("acme") + "; that run has since ended ok (at 2026-12-03T03:30:04Z, after 1 h 00 min)"),
])
def test_a_run_refused_by_the_lock_is_judged_by_the_run_that_held_it_once_that_run_ended(tmp_path, holder, verdict,
                                                                                          message):
    """The night's run still held the lock at the next cron time (a later tick's run exits 7 and is
    recorded `locked`), then ended. The verdict is what became of that run: a failure, a kill, held
    deletes need attention as such (status said `locked`, naming a process long gone, and only
    `history` showed the failure); one that ended ok leaves `locked`: the runs overlap the schedule."""
    tenants(tmp_path, {"acme.yaml": "id: acme\nschedule: {cron: '30 3,4 * * *', timezone: Europe/Berlin}\n"})
    url = default_store(tmp_path)
    record(url, "acme", "ok", "2026-12-02T02:30:04Z")                  # the night before
    record(url, "acme", started=LAST_NIGHT, **holder)
    record(url, "acme", "locked", REFUSED, message=HELD.format("acme"))
    entries = status_json(tmp_path, "--at", AT)
    acme = entries["acme"]
    assert (acme["verdict"], acme["attention"], acme["message"]) == (verdict, True, message)
    assert acme["last_run"]["status"] == "locked" and acme["last_run"]["started_at"] == REFUSED
    assert (acme["holder_run"]["status"], acme["holder_run"]["started_at"]) == (holder["status"], LAST_NIGHT)
    line = row(status(tmp_path, "--at", AT).stdout, "acme")
    assert line[:2] == ["acme", verdict]
    assert line[2] == (REFUSED if verdict == "locked" else LAST_NIGHT), "the line shows the run the verdict is about"


def test_a_lock_held_without_a_run_leaves_the_refused_run_locked(tmp_path):
    """A refusal whose lock was held by no recorded run (the run before it had ended before the
    refusal: e.g. a tool held the lock) is `locked`, naming the holder, not judged by that run."""
    tenants(tmp_path, {"acme.yaml": "id: acme\nschedule: {cron: '30 3,4 * * *', timezone: Europe/Berlin}\n"})
    url = default_store(tmp_path)
    record(url, "acme", "failed", LAST_NIGHT, seconds=60, message="the ERP cannot be reached")
    record(url, "acme", "locked", REFUSED, message=HELD.format("acme"))
    acme = status_json(tmp_path, "--at", AT)["acme"]
    assert (acme["verdict"], acme["message"], acme["holder_run"]) == ("locked", HELD.format("acme"), None)


def test_unreadable_files_are_named_with_the_reason_and_the_others_still_shown(tmp_path):
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}",
                       "kopie.yaml": f"id: acme\n{NIGHTLY}",                       # copied, id kept
                       "bau.yaml": "id: bau\n", "bau.yml": "id: bau\n",            # one id, two files
                       "garbled.yaml": "id: [unclosed\n",
                       "cron.yaml": "id: cron\nschedule: {cron: '61 3 * * *'}\n",
                       "geheim.yaml": "id: geheim\nstate_url: 'sqlite:///${env:GEHEIM_STATE}'\n"})
    record(default_store(tmp_path), "acme", "ok", LAST_NIGHT)
    done = status(tmp_path, "--at", AT)
    assert done.returncode == 1, done.stderr
    assert row(done.stdout, "acme")[:2] == ["acme", "ok"] and row(done.stdout, "cron")[:2] == ["cron", "unreadable"]
    entries = {e["file"]: e for e in json.loads(status(tmp_path, "--at", AT, "--json").stdout)}
    assert "tenants/bau.yml" not in entries, "one id, one entry: its two files are named in it"
    unreadable = {f: e["message"] for f, e in entries.items() if e["verdict"] == "unreadable"}
    assert unreadable == {
        "tenants/kopie.yaml": "tenants/kopie.yaml: the tenant id 'acme' differs from the file name kopie.yaml: it is "
                              "not run; make the two equal (`idwell-sync validate tenants/kopie.yaml`)",
        "tenants/bau.yaml": "tenants/bau.yaml: tenant 'bau' is also tenants/bau.yml: neither file runs (`idwell-sync "
                            "run bau` stops, two tenant files) until one of them is removed",
        "tenants/garbled.yaml": "tenants/garbled.yaml: cannot be read (ParserError); "
                                "`idwell-sync validate tenants/garbled.yaml` says why",
        "tenants/cron.yaml": "tenants/cron.yaml: tenant 'cron': schedule.cron '61 3 * * *' is not a cron expression; "
                             "`idwell-sync validate tenants/cron.yaml` says why",
        "tenants/geheim.yaml": "tenants/geheim.yaml: tenant 'geheim': state store: environment variable GEHEIM_STATE "
                               "is not set (referenced as ${env:GEHEIM_STATE})",
    }
    assert all(entries[f]["attention"] for f in unreadable)
    quiet = status(tmp_path, "--at", AT, "--quiet")
    listed = [line.split()[:2] for line in quiet.stdout.splitlines() if line.startswith("  ")][1:]
    assert listed == [["bau", "unreadable"], ["cron", "unreadable"], ["garbled", "unreadable"],
                      ["geheim", "unreadable"], ["kopie", "unreadable"]]
    assert done.stdout.splitlines()[-1] == "1 ok, 5 unreadable; 5 need attention"


def test_a_tenant_in_a_yaml_and_a_yml_file_counts_as_two_files_and_the_header_says_neither_runs(tmp_path):
    """tenants/bau.yaml and tenants/bau.yml: two tenant files, one tenant, which `due` refuses
    (neither file runs until one is removed). The header counts both files and says so, also
    with --quiet; the table has one line for the tenant."""
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "bau.yaml": f"id: bau\n{NIGHTLY}",
                       "bau.yml": f"id: bau\n{NIGHTLY}"})
    record(default_store(tmp_path), "acme", "ok", LAST_NIGHT)
    blocked = ("(tenant 'bau' is in two of them, tenants/bau.yaml and tenants/bau.yml: neither file runs "
               "(`idwell-sync run bau` stops, two tenant files) until one of them is removed)")
    for args in ((), ("--quiet",)):
        done = status(tmp_path, "--at", AT, *args)
        assert done.returncode == 1, done.stderr
        lines = done.stdout.splitlines()
        assert lines[:2] == [f"3 tenant files in tenants at {AT} (state store {default_store(tmp_path)})", blocked]
        assert row(done.stdout, "bau")[:2] == ["bau", "unreadable"]
    tenants(tmp_path, {"city.yaml": f"id: city\n{NIGHTLY}", "city.yml": f"id: city\n{NIGHTLY}"})
    both = status(tmp_path, "--at", AT).stdout.splitlines()
    assert both[:2] == [f"5 tenant files in tenants at {AT} (state store {default_store(tmp_path)})",
                        "(tenants 'bau' and 'city' are each in two of them, ID.yaml and ID.yml: neither file of "
                        "each runs (`idwell-sync run ID` stops, two tenant files) until one of them is removed)"]


def test_a_tenant_with_its_own_state_url_is_read_from_its_store_each_store_opened_once(tmp_path):
    own = tmp_path / "elsewhere" / "own.sqlite"
    tenants(tmp_path, {"acme.yaml": "id: acme\n", "bau.yaml": "id: bau\n",
                       "eigen.yaml": "id: eigen\nstate_url: 'sqlite:///${env:EIGEN_STORE}'\n"})
    record(default_store(tmp_path), "acme", "ok", LAST_NIGHT)
    record(default_store(tmp_path), "eigen", "failed", LAST_NIGHT, message="in the wrong store")
    record(f"sqlite:///{own}", "eigen", "ok", "2026-12-02T02:30:04Z", counts={"users": {"create": 7}})
    done = status(tmp_path, "-v", "--at", AT, env={"EIGEN_STORE": str(own)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert row(done.stdout, "eigen") == ["eigen", "ok", "2026-12-02T02:30:04Z", "3", "min", "20", "s", "ok", "7", "-"]
    # a value given by reference is masked wherever it shows (engine.redact), a path too
    assert f"state stores {default_store(tmp_path)}; sqlite:///***" in done.stdout.splitlines()[0]
    assert str(own) not in done.stdout + done.stderr
    opened = [line for line in done.stderr.splitlines() if ": state store sqlite:///" in line]
    assert len(opened) == 2, done.stderr
    assert any("tenants 'acme', 'bau': state store" in line for line in opened)
    entries = status_json(tmp_path, "--at", AT, code=0, env={"EIGEN_STORE": str(own)})
    assert entries["eigen"]["state_store"] == "sqlite:///***"
    assert entries["eigen"]["last_run"]["writes"]["create"] == 7
    # --state names one store for all, as for `run`: there eigen's last run failed
    entries = status_json(tmp_path, "--at", AT, "--state", default_store(tmp_path), env={"EIGEN_STORE": str(own)})
    assert (entries["eigen"]["verdict"], entries["eigen"]["message"]) == ("failed", "in the wrong store")
    # $IDWELL_STATE_URL names the store of the tenants without a state_url
    entries = status_json(tmp_path, "--at", AT, code=0,
                          env={"EIGEN_STORE": str(own), "IDWELL_STATE_URL": f"sqlite:///{own}"})
    assert [entries[t]["verdict"] for t in ("acme", "bau", "eigen")] == ["never", "never", "ok"]


def test_a_store_that_is_not_there_yet_holds_no_runs_and_is_not_created(tmp_path):
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}", "ohne.yaml": "id: ohne\n"})
    entries = status_json(tmp_path, "--at", AT)
    assert entries["acme"]["verdict"] == "missed" and entries["ohne"]["verdict"] == "never"
    done = status(tmp_path, "--at", AT)
    assert "(no such file yet: no runs recorded)" in done.stdout.splitlines()[0]
    assert not (tmp_path / "var").exists()


def test_a_store_that_cannot_be_opened_exits_10_naming_it_and_its_tenants_without_the_password(tmp_path):
    secret = "pa:ss@word"
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}",
                       "pg1.yaml": "id: pg1\nstate_url: 'postgresql+psycopg://sync:${env:PG_PW}@127.0.0.1:1/state'\n",
                       "pg2.yaml": "id: pg2\nstate_url: 'postgresql+psycopg://sync:${env:PG_PW}@127.0.0.1:1/state'\n",
                       "pg3.yaml": "id: pg3\nstate_url: 'postgresql+psycopg://sync@127.0.0.1:1/state?sslmode=disable"
                                   "&password=${env:PG_PW}'\n",
                       "kaputt.yaml": "id: kaputt\nstate_url: sqlite:///damaged.sqlite\n"})
    (tmp_path / "damaged.sqlite").write_bytes(b"this is not a database file" * 100)
    record(default_store(tmp_path), "acme", "ok", LAST_NIGHT)
    done = status(tmp_path, "--at", AT, env={"PG_PW": secret})
    assert done.returncode == 10
    assert row(done.stdout, "acme")[:2] == ["acme", "ok"], "the other stores' tenants are still shown"
    assert [row(done.stdout, t)[1] for t in ("kaputt", "pg1", "pg2", "pg3")] == ["unknown"] * 4
    assert "idwell-sync status: error: tenants 'pg1', 'pg2': cannot open the state store " \
           "postgresql+psycopg://sync:***@127.0.0.1:1/state: " in done.stderr
    assert "idwell-sync status: error: tenant 'pg3': cannot open the state store " \
           "postgresql+psycopg://sync@127.0.0.1:1/state?password=***&sslmode=disable: " in done.stderr
    assert "idwell-sync status: error: tenant 'kaputt': cannot open the state store sqlite:///damaged.sqlite: " \
           in done.stderr
    assert "what to do: check --state" in done.stderr and "Traceback" not in done.stderr
    as_json = status(tmp_path, "--at", AT, "--json", env={"PG_PW": secret})
    assert as_json.returncode == 10
    entries = {e["tenant"]: e for e in json.loads(as_json.stdout)}
    assert entries["pg1"]["state_store"] == "postgresql+psycopg://sync:***@127.0.0.1:1/state"
    assert entries["pg1"]["attention"] is True
    for text in (done.stdout, done.stderr, as_json.stdout, as_json.stderr):
        assert secret not in text and "pa%3Ass%40word" not in text


def test_no_secret_of_a_tenant_file_appears(tmp_path):
    """status reads only id, schedule and state_url: the source's password is never resolved or shown."""
    secret = "s3cr3t-Passw0rd"
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}source: {{type: sql, url: "
                                    f"'mssql+pyodbc://sync:${{env:ACME_PW}}@erp/domus'}}\n"
                                    "state_url: 'sqlite:///${env:ACME_STATE}'\n"})
    store = tmp_path / "acme.sqlite"
    record(f"sqlite:///{store}", "acme", "failed", LAST_NIGHT, message="tenant 'acme': login failed")
    env = {"ACME_PW": secret, "ACME_STATE": str(store)}
    outputs = [status(tmp_path, "--at", AT, *args, env=env) for args in ((), ("--json",), ("-vv",))]
    assert all(done.returncode == 1 for done in outputs), outputs[0].stderr
    assert "login failed" in outputs[0].stdout
    assert all(secret not in done.stdout + done.stderr for done in outputs)


def test_the_demo_tenant_after_a_real_run(tmp_path):
    """The real demo run: its summary's writes and findings are the ones status shows."""
    shutil.copytree(REPO / "tenants", tmp_path / "tenants")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    demo = subprocess.run([sys.executable, "-m", "engine", "demo", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    summary = json.loads(demo.stdout)
    done = status(tmp_path)                                     # now: the run has just started and ended
    assert done.returncode == 0, done.stdout + done.stderr
    line = row(done.stdout, "demo")
    assert line[1] == "ok" and f"{summary['writes']:,}" in line and f"{sum(summary['findings'].values()):,}" in line


def test_wrong_arguments_are_said_as_such(tmp_path):
    tenants(tmp_path, {"acme.yaml": "id: acme\n"})
    done = status(tmp_path, "--grace", "-5")
    assert done.returncode == 2 and "'-5' is not a number of minutes" in done.stderr
    done = status(tmp_path, "--at", "morgen")
    assert done.returncode == 2 and "'morgen' is not a time" in done.stderr
    done = status(tmp_path, "--json", "--quiet")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    done = status(tmp_path, "--tenants-dir", "nowhere")
    assert done.returncode == 2 and "no tenants folder at nowhere" in done.stderr


@pytest.mark.parametrize("args, said", [
    (("--grace", "999999999999"), "argument --grace: '999999999999' is not a number of minutes: give 0 to 44640"),
    (("--at", "9999-12-31T23:59Z"), "argument --at: '9999-12-31T23:59Z' is out of range: give a time in the years "
                                     "1970 to 9998"),
    (("--at", "0001-01-01T00:00Z"), "argument --at: '0001-01-01T00:00Z' is out of range"),
    (("--at", "0001-01-01T00:30+01:00"), "argument --at: '0001-01-01T00:30+01:00' is out of range"),
])
def test_values_past_the_calendars_edge_are_usage_errors_naming_the_option_and_the_range(tmp_path, args, said):
    """They ended in a traceback (exit 70): the cron code went past the year 1 or 9999."""
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}"})
    done = status(tmp_path, *args)
    assert done.returncode == 2 and said in done.stderr, done.stderr


@pytest.mark.parametrize("at, code, verdict", [("1970-01-01T00:00Z", 0, "new"), ("9998-12-31T23:59Z", 1, "missed")])
def test_the_first_and_last_times_status_takes_are_judged(tmp_path, at, code, verdict):
    """The files changed in 2026, after the cron times of 1970 (`new`); in the last year a
    schedule of 29 February has no cron time left before the calendar ends."""
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}",
                       "yearly.yaml": "id: yearly\nschedule: {cron: '0 0 29 2 *', timezone: Pacific/Kiritimati}\n"})
    done = status(tmp_path, "--at", at, "--grace", "44640", "--json")
    assert done.returncode == code, done.stderr
    assert {e["tenant"]: e["verdict"] for e in json.loads(done.stdout)} == {"acme": verdict, "yearly": verdict}


def test_a_run_that_ends_while_status_reads_the_store_is_not_called_failed(tmp_path, monkeypatch, capsys):
    """status reads the runs, then the locks: a run that records its end and releases its lock in
    between (hundreds of tenants end their runs during the night) was judged by its row as
    `running` and by the locks as holding none, i.e. killed."""
    from engine.cli import main
    tenants(tmp_path, {"acme.yaml": "id: acme\n"})
    store = StateStore(default_store(tmp_path))
    held = store.lock("acme")
    held.__enter__()                                    # a run under way: its lock, then its row
    run_id = store.start_run("acme")
    read_locks = StateStore.locks

    def locks_once_the_run_has_ended(self, names):
        if run_id in store._run_tenants:           # the first read of the locks only
            store.finish_run(run_id, status="ok", counts={"users": {"create": 1}}, findings={})
            held.__exit__(None, None, None)             # as run_tenant: the row closed, then the lock released
        return read_locks(self, names)

    monkeypatch.setattr(StateStore, "locks", locks_once_the_run_has_ended)
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["status", "--json"])
    finally:
        store.close()
    [acme] = json.loads(capsys.readouterr().out)
    assert (acme["verdict"], acme["last_run"]["status"], acme["lock"], code) == ("ok", "ok", None, 0), acme


@pytest.mark.postgres
def test_a_monitoring_role_that_may_only_read_sees_the_runs_and_creates_nothing(tmp_path):
    """status and history only read: as a PostgreSQL role without CREATE they work, on an empty
    schema (no run yet: nothing created, no error) and on one the runs filled."""
    import uuid

    import sqlalchemy as sa
    from pgcluster import require
    admin_url = os.environ.get("IDWELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        admin = sa.create_engine(admin_url, connect_args={"connect_timeout": 3})
        admin.connect().close()
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        require(False, f"PostgreSQL at {admin_url} is unreachable: {type(exc).__name__}")
    name = f"status_ro_{uuid.uuid4().hex[:10]}"
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE SCHEMA {name}"))
        c.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
        c.execute(sa.text(f"GRANT USAGE ON SCHEMA {name} TO {name}"))
        c.execute(sa.text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT ON TABLES TO {name}"))
    base = sa.make_url(admin_url)
    options = {"options": f"-csearch_path={name}"}
    reader = base.set(username=name, query=options).render_as_string(hide_password=False)
    writer = base.set(query=options).render_as_string(hide_password=False)
    tenants(tmp_path, {"acme.yaml": f"id: acme\n{NIGHTLY}"})
    try:
        before = status_json(tmp_path, "--state", reader, "--at", AT)
        assert before["acme"]["verdict"] == "missed" and before["acme"]["last_run"] is None
        with admin.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                             {"s": name}).scalar() == 0, "a command that only reads created tables"
        record(writer, "acme", "ok", LAST_NIGHT)
        after = status_json(tmp_path, "--state", reader, "--at", AT, code=0)
        assert after["acme"]["verdict"] == "ok" and after["acme"]["last_run"]["status"] == "ok"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
            c.execute(sa.text(f"DROP OWNED BY {name}"))
            c.execute(sa.text(f"DROP ROLE {name}"))
        admin.dispose()


def run_broken_demo(folder: Path, file_name: str, tenant: str) -> subprocess.CompletedProcess:
    """`run TENANT` of the demo tenant file saved as tenants/FILE_NAME with a typo in a value."""
    shutil.copytree(REPO / "mappings", folder / "mappings")
    text = (REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8")
    tenants(folder, {file_name: text.replace("policy: merge_partnership", "policy: merge_partnershp")})
    return subprocess.run([sys.executable, "-m", "engine", "run", tenant, "--quiet"], cwd=folder,
                          capture_output=True, text=True, timeout=60)


def test_a_nightly_run_of_an_invalid_tenant_file_is_failed_with_the_error_not_missed(tmp_path):
    """cron starts the run of a tenant whose file someone broke (a typo in a value); the run stops
    with exit 3 before it reads the ERP. The morning check says the run failed and why, and
    `history` shows it: `missed` would send the operator to look at cron, which did its job."""
    run = run_broken_demo(tmp_path, "demo.yaml", "demo")
    assert run.returncode == 3, run.stderr
    assert "'merge_partnershp' is not a valid value" in run.stderr
    demo = status_json(tmp_path)["demo"]                          # now: the run's cron time is before it
    assert (demo["verdict"], demo["attention"]) == ("failed", True)
    assert demo["message"].startswith("tenants/demo.yaml:") and "'merge_partnershp' is not a valid value" in \
        demo["message"]
    history = subprocess.run([sys.executable, "-m", "engine", "history", "demo", "--json"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert history.returncode == 0, history.stderr
    [last] = json.loads(history.stdout)
    assert (last["status"], last["message"]) == ("failed", demo["message"])


def test_an_invalid_file_whose_id_is_another_tenants_leaves_that_tenants_history_alone(tmp_path):
    """A broken copy of the demo file saved as kopie.yaml still says `id: demo`: its failed run
    must not land in demo's history (status would call demo failed)."""
    run = run_broken_demo(tmp_path, "kopie.yaml", "tenants/kopie.yaml")
    assert run.returncode == 3, run.stderr
    store = tmp_path / "var" / "state.sqlite"
    if store.exists():
        state = StateStore(f"sqlite:///{store}")
        try:
            assert state.runs("demo") == [] and state.runs("kopie") == []
        finally:
            state.close()


def test_a_message_cut_in_the_table_says_where_the_whole_text_is(tmp_path):
    folder = tenants(tmp_path, {"long.yaml": "id: long\n" + NIGHTLY, "short.yaml": "id: short\n" + NIGHTLY})
    why = "the ERP cannot be reached: " + "connection refused by 10.0.0.7:1433; " * 6 + "THE END"
    record(default_store(folder), "long", "failed", LAST_NIGHT, message=why)
    record(default_store(folder), "short", "failed", LAST_NIGHT, message="the ERP cannot be reached")
    out = status(folder, "--at", AT).stdout
    assert "THE END" not in out and "\u2026" in row(out, "long")[-1]
    assert "\n(the message of long is cut: `idwell-sync history TENANT` or `status --json` has the whole text)" in out
    assert status_json(folder, "--at", AT)["long"]["message"] == why


def test_a_cut_message_of_a_file_that_cannot_be_read_is_not_sent_to_history(tmp_path):
    """An unreadable tenant file has no run: `history TENANT` cannot show its message (it cannot
    read the file either), so the note names `status --json` only."""
    folder = tenants(tmp_path, {"short.yaml": "id: short\n" + NIGHTLY,
                                "abrechnung-hausverwaltung-sued.yaml": "id: x\nsource: [\n"})
    record(default_store(folder), "short", "failed", LAST_NIGHT, message="the ERP cannot be reached")
    done = status(folder, "--at", AT)
    assert done.returncode == 1, done.stderr
    assert "\u2026" in row(done.stdout, "abrechnung-hausverwaltung-sued")[-1]
    assert "\n(the message of abrechnung-hausverwaltung-sued is cut: `idwell-sync status --json` has the whole " \
           "text)" in done.stdout
    assert "history TENANT" not in done.stdout


UNCONFIRMED = ("sent without an answer (unconfirmed): the portal may or may not have made {}; the next complete run "
               "checks {} and sends again what the portal did not make")


def test_a_run_stopped_with_writes_in_flight_says_so_under_its_line(tmp_path):
    """A run stopped (SIGTERM) with batches in flight to the portal: it may or may not have made
    those writes. `history` and `status --json` count them (`unconfirmed`), but the table of
    `status` said nothing of them: the night operator saw `stopped (SIGTERM)` and could not tell
    it from a stop that left nothing open. A line under the tenant's says how many there are and
    what happens next, also for a tenant that missed its night after such a run and with --quiet.
    A run that failed with every answer, or ended ok, has no such line, and the table no new column."""
    tenants(tmp_path, {f"{t}.yaml": f"id: {t}\n{NIGHTLY}" for t in ("acme", "bau", "city", "dach")})
    url = default_store(tmp_path)
    record(url, "acme", "ok", LAST_NIGHT, counts={"users": {"create": 5}}, findings={})
    record(url, "bau", "failed", LAST_NIGHT, seconds=1800, message="stopped (SIGTERM)",
           counts={"users": {"create": 300, "update": 12, "unconfirmed": 1200}})
    record(url, "city", "failed", LAST_NIGHT, seconds=60, message="the portal stopped answering",
           counts={"users": {"create": 10}})                    # every write it sent was answered
    record(url, "dach", "failed", BEFORE, message="stopped (SIGTERM)", counts={"units": {"unconfirmed": 1}})
    done = status(tmp_path, "--at", AT)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    tenant_lines = [i for i, line in enumerate(lines) if line.startswith("  ") and line.split()[0] in
                    ("acme", "bau", "city", "dach")]
    assert lines[tenant_lines[0] - 1].split() == ["tenant", "verdict", "started", "(UTC)", "duration", "status",
                                                  "writes", "findings", "message"], "no column was added"
    assert row(done.stdout, "bau") == ["bau", "failed", LAST_NIGHT, "30", "min", "00", "s", "failed", "312", "-",
                                       "stopped", "(SIGTERM)"]
    many = "      1,200 writes " + UNCONFIRMED.format("them", "them")
    assert lines[tenant_lines[1] + 1] == many
    assert row(done.stdout, "dach")[:3] == ["dach", "missed", BEFORE], "the line shows the run the note is about"
    assert lines[tenant_lines[3] + 1] == "      1 write " + UNCONFIRMED.format("it", "it")
    assert [lines[i + 1] for i in (tenant_lines[0], tenant_lines[2])] == [lines[tenant_lines[1]],
                                                                          lines[tenant_lines[3]]], "none for acme, city"
    quiet = status(tmp_path, "--at", AT, "--quiet").stdout.splitlines()
    assert many in quiet and not [line for line in quiet if line.split()[:1] == ["acme"]]
    entries = status_json(tmp_path, "--at", AT)
    assert [entries[t]["last_run"]["unconfirmed"] for t in ("acme", "bau", "city", "dach")] == [0, 1200, 0, 1]
    assert entries["bau"]["message"] == "stopped (SIGTERM)", "--json is as it was"


PENDING = ("left unconfirmed (pending in the state store): the portal may or may not have made {}; the next "
           "complete run checks {} and sends again what the portal did not make, or archives a record the ERP no "
           "longer has once the deletion guard lets it")


def pending(url: str, tenant: str, n: int) -> None:
    """`n` users' writes left pending in the state store, as a run that was killed or stopped
    with writes in flight leaves them (engine.record)."""
    store = StateStore(url)
    try:
        store.remember_pending(tenant, "users", [{"external_id": str(i), "email": f"p{i}@example.org"}
                                                 for i in range(n)])
    finally:
        store.close()


def test_writes_left_pending_in_the_state_store_are_shown_while_the_last_run_did_not_complete(tmp_path):
    """status read only the last run's own `unconfirmed`: a run killed with kill -9 records none
    (its row never ends), and a run after one stopped with writes in flight that failed before it
    sent anything (the ERP could not be reached) records none either. The portal may hold values
    the engine has not confirmed all the same: they are pending in the state store until a complete
    run settles them. A tenant whose last run did not complete has a line under its own saying how
    many (`pending_writes` in --json), also when it missed its night after such a run and with
    --quiet; where its run's own line says as many, that line stays. A run under way (its writes
    noted ahead) and a last run that completed (the writes the portal refused stay pending) have
    no such line, and no line of a healthy tenant is longer."""
    tenants(tmp_path, {f"{t}.yaml": f"id: {t}\n{NIGHTLY}" for t in ("acme", "bau", "city", "dach", "emil", "fritz")})
    url = default_store(tmp_path)
    for t in ("acme", "bau", "city", "dach", "emil", "fritz"):
        record(url, t, "ok", "2026-12-01T02:30:04Z", counts={"users": {"create": 5}}, findings={})
    record(url, "acme", "ok", LAST_NIGHT, counts={"users": {"update": 5}}, findings={})
    record(url, "bau", "failed", LAST_NIGHT, seconds=1, message="tenant 'bau': the ERP cannot be reached")
    pending(url, "bau", 1200)
    record(url, "city", "running", BEFORE)                          # killed (kill -9), then the night missed
    pending(url, "city", 1)
    record(url, "dach", "rejected", LAST_NIGHT, counts={"users": {"update": 2, "rejected": 1}}, findings={})
    pending(url, "dach", 1)                                         # its write refused: kept pending
    record(url, "emil", "failed", LAST_NIGHT, message="stopped (SIGTERM)", counts={"users": {"unconfirmed": 7}})
    pending(url, "emil", 7)
    record(url, "fritz", "ok", LAST_NIGHT, counts={"users": {"update": 5}}, findings={})
    pending(url, "fritz", 9)
    store = StateStore(url)
    try:
        with store.lock("fritz"):                                   # a run under way, its writes noted ahead
            done = status(tmp_path, "--at", AT)
            entries = status_json(tmp_path, "--at", AT)
            quiet = status(tmp_path, "--at", AT, "--quiet").stdout.splitlines()
    finally:
        store.close()
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    at = {line.split()[0]: i for i, line in enumerate(lines) if line.startswith("  ") and line.split()[0] in entries}
    assert lines[at["bau"] + 1] == "      1,200 writes " + PENDING.format("them", "them")
    assert row(done.stdout, "city")[:5] == ["city", "missed", BEFORE, "-", "unfinished"]
    assert lines[at["city"] + 1] == "      1 write " + PENDING.format("it", "it")
    assert lines[at["emil"] + 1] == "      7 writes " + UNCONFIRMED.format("them", "them"), "its run's own line"
    assert [t for t, i in at.items() if lines[i + 1].startswith("      ")] == ["bau", "city", "emil"]
    assert row(done.stdout, "acme") == ["acme", "ok", LAST_NIGHT, "3", "min", "20", "s", "ok", "5", "0"]
    assert "      1,200 writes " + PENDING.format("them", "them") in quiet
    assert {t: entries[t]["pending_writes"] for t in entries} == \
        {"acme": None, "bau": 1200, "city": 1, "dach": None, "emil": 7, "fritz": None}


def test_a_state_store_in_a_folder_the_reader_may_not_write_is_read(tmp_path):
    """A monitoring account may read the SQLite state store but not write its folder. SQLite wants
    to create a WAL store's -shm file beside it; `status` and `history` read it all the same.
    The folder is made read-only with a read-only bind mount in a mount namespace of its own
    (root could write past file permissions)."""
    folder = tenants(tmp_path, {"acme.yaml": "id: acme\n" + NIGHTLY})
    record(default_store(folder), "acme", "ok", LAST_NIGHT)
    var = folder / "var"
    assert not list(var.glob("state.sqlite-*")), "the writer closed: no -wal, no -shm file"
    script = (f"mount --bind -o ro {var} {var} && touch {var}/probe 2>/dev/null && exit 99; "
              f"{sys.executable} -m engine status --at {AT}; echo status=$?; "
              f"{sys.executable} -m engine history acme --state sqlite:///{var}/state.sqlite; echo history=$?")
    clean = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=folder, capture_output=True, text=True,
                          timeout=120, env=clean)
    if done.returncode != 0 or "status=" not in done.stdout:
        reason = f"a read-only bind mount is not possible here: {done.stderr.strip()[-200:]} (exit {done.returncode})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert "status=0" in done.stdout and row(done.stdout, "acme")[:2] == ["acme", "ok"], done.stdout + done.stderr
    assert "history=0" in done.stdout and "the last run" in done.stdout, done.stdout + done.stderr
    assert not list(var.glob("state.sqlite-*")), "nothing was created beside the store"
