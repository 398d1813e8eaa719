"""`idwell-sync due`: the tenants whose schedule falls due now, for one scheduler entry for all.

A tenant file's `schedule` (cron, time zone) says when its nightly run starts. Rather than one
crontab line or systemd timer per tenant, kept in step with hundreds of files by hand, one entry
runs every few minutes

    */5 * * * *  cd /srv/tenants && idwell-sync due --ticks-file .due-ticks | xargs -r -n 1 idwell-sync run --quiet

and `due` prints the id of every tenant whose cron time, in its own time zone (summer time
included), lies in the last `--within` minutes (5): the period ends at the tick's time rounded down
to a multiple of `within` minutes since midnight UTC (tick_end), so that ticks `within` minutes
apart give every cron time to exactly one tick, also a tick that starts late (by less than
`within` minutes). Only the `id` and `schedule` of each file are
used (validate checks the rest, in CI). A file that cannot be read or whose schedule is broken is
named on standard error and makes the exit code 3; the other tenants are still printed.

A tick that does not happen (the host is down, cron stopped) would leave its tenants without
their night. With `--ticks-file FILE` each tick records in FILE the end of the period it handed
out (engine.commands._ticks: under a lock, so that overlapping ticks do not both hand out the
same cron times), and the next tick also prints the tenants whose cron time lies between that
end and the start of its own period (Gap): only those whose `schedule.window` (the customer's
quiet hours) the tick's time is inside, because nothing else says when a late run is welcome,
and only cron times of the last 7 days (LOOK_BACK). Each id is printed once per tick, in file
order. No FILE yet, or one that holds no time, is as without the option (the latter is named,
exit code 3, and written anew); an end after this tick's start (the clock set back) is no gap.
A FILE that cannot be written is named (exit code 3) and nothing is made up, the tick's own
tenants are still printed; a folder given as FILE is a usage error (exit code 2) that says to give
a file, the tick's own tenants printed too. `--at` is a tick at that time with the file too (it reads and
writes FILE): to look without changing it, give a copy.

`idwell-sync status` lists the same tenant files (tenant_heads) and asks the same cron code for a
schedule's most recent cron time (last_cron_time).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import re
import sys
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.commands._ticks import TicksFile, TicksFileError
from engine.commands.history import utc_text
from engine.errors import ExitCode

HELP = "print the ids of the tenants whose schedule falls due now (for one scheduler entry for all)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants-dir", type=Path, default=Path("tenants"),
                        help="where the tenant files are (default: tenants)")
    parser.add_argument("--within", type=_minutes, default=5, metavar="MINUTES",
                        help="how far back a cron time counts as due: the scheduler's period (default: 5)")
    parser.add_argument("--at", type=instant, default=None, metavar="TIME",
                        help="as if it were this time (ISO 8601, e.g. 2026-12-04T03:30+01:00; without an offset: "
                             "UTC; default: now); with --ticks-file a tick at that time, which reads and writes FILE")
    parser.add_argument("--ticks-file", type=Path, default=None, metavar="FILE",
                        help="remember in FILE the end of each tick's period and make up the ticks that did not "
                             "happen since (the host was down): a tenant whose cron time fell in them is printed too "
                             "if the tick's time is inside its schedule.window, for cron times up to 7 days back "
                             "(FILE.lock beside it keeps overlapping ticks apart)")


def _minutes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1 or not (60 % n == 0 or n % 60 == 0 and 1440 % n == 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a period the ticks can keep: give minutes that divide an "
                                         "hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) or hours that divide a day")
    return n


def tick_end(now: dt.datetime, within: int) -> dt.datetime:
    """The end of the window a tick at `now` covers: `now` rounded down to a multiple of `within`
    minutes since midnight UTC. Consecutive windows then meet without a gap or an overlap
    whatever second each tick starts at (up to `within` minutes late)."""
    now = now.astimezone(dt.timezone.utc)
    minute = now.hour * 60 + now.minute
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(minutes=minute - minute % within)


FIRST_YEAR, LAST_YEAR = 1970, 9998
"""The years --at may name (`due`, `status`): the cron code looks days and weeks either side of
the time (the period, the grace, 7 days of made-up ticks, croniter's step back) and in every time
zone, which the years 1 and 9999 leave no room for; nothing a scheduler does lies outside them."""


def instant(text: str) -> dt.datetime:
    """--at: an aware time (UTC when written without an offset) in the years FIRST_YEAR to LAST_YEAR."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: write e.g. 2026-12-04T03:30+01:00") from None
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    try:
        year = when.astimezone(dt.timezone.utc).year
    except OverflowError:                               # 0001-01-01T00:00+01:00: before the year 1 in UTC
        year = 0 if when.year == 1 else 10000
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: give a time in the years {FIRST_YEAR} to "
                                         f"{LAST_YEAR}")
    return when


def main(args) -> int:
    at = args.at or dt.datetime.now(dt.timezone.utc)
    now = tick_end(at, args.within)
    if not args.tenants_dir.is_dir():
        print(f"idwell-sync due: error: no tenants folder at {args.tenants_dir} (--tenants-dir)", file=sys.stderr)
        return ExitCode.USAGE
    if args.ticks_file is None:
        return hand_out(args.tenants_dir, now, args.within)
    if args.ticks_file.is_dir():
        return _ticks_file_is_a_folder(args.tenants_dir, args.ticks_file, now, args.within)
    return _tick_with_file(args, at, now)


def _ticks_file_is_a_folder(tenants_dir: Path, folder: Path, now: dt.datetime, within: int) -> int:
    """--ticks-file names a folder: a mistake in the scheduler's entry (exit 2, usage), said as
    such rather than as a file that cannot be read and then cannot be written each tick. As with
    every problem of the ticks file, the tick's own tenants are still printed (a night is not lost
    to it); nothing is made up."""
    print(f"idwell-sync due: error: --ticks-file {folder} is a folder, not a file: give the path of a file, e.g. "
          f"--ticks-file {folder / '.due-ticks'} (the first tick creates it). This tick's own tenants are printed, "
          "but ticks that do not happen are not made up until then", file=sys.stderr)
    hand_out(tenants_dir, now, within)
    return ExitCode.USAGE


def _tick_with_file(args, at: dt.datetime, now: dt.datetime) -> int:
    """A tick that also makes up the ticks that did not happen since the end FILE records, and
    records its own end there (engine.commands._ticks says in which order, and why)."""
    problems = []
    with contextlib.ExitStack() as stack:
        try:
            ticks = stack.enter_context(TicksFile.locked(args.ticks_file))
            last, garbled = ticks.read_last()
            problems += [garbled] if garbled else []
            ticks.prepare(now)
        except TicksFileError as exc:
            problems.append(str(exc))
            ticks = last = None
        code = hand_out(args.tenants_dir, now, args.within, Gap.since(last, now, args.within, at))
        if ticks is not None:
            try:
                ticks.commit()
            except TicksFileError as exc:
                problems.append(str(exc))
    for problem in problems:
        print(f"idwell-sync due: error: {problem}", file=sys.stderr)
    return ExitCode.CONFIG if problems else code


def hand_out(folder: Path, now: dt.datetime, within: int, gap: Gap | None = None) -> int:
    """Print the id of every tenant due in the period of `within` minutes that ends at `now`,
    and of every tenant `gap` makes up; name the broken files (exit code 3) and, on standard
    error, the tenants whose cron time fell in the gap."""
    broken, made_up, left = 0, [], []
    for path, head, problem in tenant_heads(folder):
        if head is None:
            print(f"idwell-sync due: {path}: {problem}", file=sys.stderr)
            broken += 1
        elif head.schedule is None:
            continue
        elif due(head.schedule, now, within):
            print(head.id, flush=True)
        elif gap is not None and gap.holds(head.schedule):
            if gap.open_for(head):
                print(head.id, flush=True)
                made_up.append(head.id)
            else:
                left.append(head.id)
    if made_up or left:
        print(f"idwell-sync due: {gap.report(made_up, left)}", file=sys.stderr)
    return ExitCode.CONFIG if broken else ExitCode.OK


LOOK_BACK = dt.timedelta(days=7)
"""How far back a tick makes missed cron times up: a night's run a week late is no longer it."""


@dataclass(frozen=True)
class Gap:
    """The ticks that did not happen between the tick the ticks file records (`last`, the end of
    its period) and this one: the cron times after `after` and at or before `until` (the start of
    this tick's period). A tenant with a cron time in it is made up when the tick's time `at` is
    inside its schedule.window."""
    last: dt.datetime
    after: dt.datetime
    until: dt.datetime
    at: dt.datetime

    @classmethod
    def since(cls, last: dt.datetime | None, now: dt.datetime, within: int, at: dt.datetime) -> Gap | None:
        """None when there is no gap: no end recorded, the previous tick's period meets this one's,
        or it ends after this one starts (the clock was set back; it is not made up again)."""
        until = now - dt.timedelta(minutes=within)
        if last is None or last >= until:
            return None
        return cls(last, max(last, now - LOOK_BACK), until, at)

    def holds(self, schedule: dict) -> bool:
        return next(cron_times(schedule, self.after, self.until), None) is not None

    def open_for(self, head: TenantHead) -> bool:
        zone = zoneinfo.ZoneInfo(head.schedule["timezone"])
        return head.window is not None and in_window(head.window, self.at.astimezone(zone).time())

    def report(self, made_up: list[str], left: list[str]) -> str:
        since = f"the last tick's (--ticks-file) period ended {utc_text(self.last)}" + \
            (f"; cron times before {utc_text(self.after)} are more than 7 days back" if self.after > self.last else "")
        parts = [f"made up {_names(made_up)} (inside their schedule.window)"] if made_up else []
        if left:
            parts.append(f"not {_names(left)} (no schedule.window, or the tick is outside it): `idwell-sync status` "
                         "shows them as missed, start them by hand (`idwell-sync run TENANT`)")
        return f"no tick handed out the cron times up to {utc_text(self.until)} ({since}): " + "; ".join(parts)


def _names(ids: list[str]) -> str:
    shown = ", ".join(ids[:10])
    return f"tenant {shown}" if len(ids) == 1 else \
        f"{len(ids)} tenants: {shown}" + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def in_window(window: dict, time: dt.time) -> bool:
    """Whether `time` (of day) is inside `window`: from its start up to its end (not included);
    a window whose end comes before its start runs over midnight (23:00-05:00), as validate reads it."""
    start, end = dt.time.fromisoformat(window["start"]), dt.time.fromisoformat(window["end"])
    return start <= time < end if start < end else (time >= start or time < end)


@dataclass(frozen=True)
class TenantHead:
    """What `due` and `status` read of a tenant file (validate checks the rest, in CI)."""
    id: str
    path: Path
    schedule: dict | None             # {"cron": ..., "timezone": ...}; None: the tenant has none
    state_url: object                 # as written in the file (None: not given; references unresolved)
    window: dict | None = None        # schedule.window: {"start": "HH:MM", "end": "HH:MM"}; None: none given

    @property
    def state_url_usable(self) -> bool:
        """Whether state_url is absent or a text (a store can be found for the tenant)."""
        return self.state_url is None or isinstance(self.state_url, str)


def tenant_heads(folder: Path) -> Iterator[tuple[Path, TenantHead | None, str | None]]:
    """Every tenant file in `folder` (*.yaml and *.yml, sorted by name): (path, its head, None),
    or (path, None, what is wrong) for a file that cannot be read, whose schedule is broken, or
    whose id is not its file name. ID.yaml and ID.yml side by side are one entry, (ID.yaml, None,
    what is wrong): `run ID` runs neither of them (exit 3, two tenant files), whatever they hold."""
    paths = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    for path in paths:
        if path.suffix == ".yml" and path.with_suffix(".yaml").is_file() and path.is_file():
            continue                                        # named with its .yaml twin
        if twin := twin_of(path):
            yield path, None, (f"tenant '{path.stem}' is also {twin}: neither file runs (`idwell-sync run "
                               f"{path.stem}` stops, two tenant files) until one of them is removed")
            continue
        try:
            head = read_head(path)
        except ValueError as exc:
            yield path, None, str(exc)
            continue
        yield path, head, None


def twin_of(path: Path) -> Path | None:
    """The file ID.yml beside the tenant file ID.yaml `path`, if there is one: the two are one
    tenant, which neither runs (tenant_heads); else None."""
    twin = path.with_suffix(".yml")
    return twin if path.suffix == ".yaml" and path.is_file() and twin.is_file() else None


def read_head(path: Path) -> TenantHead:
    """The tenant's id, schedule (its window apart) and state_url (unchecked: `due` does not need
    it); ValueError saying what is wrong, also when the id is not the file's name (`run ID` would
    run another file, or none; a run of it must not go into another tenant's history)."""
    import yaml
    from croniter import croniter

    from engine.config.model import Schedule
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_head_loader())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}); `idwell-sync validate {path}` says why") from None
    if not isinstance(doc, dict):
        raise ValueError("is not a tenant file (no mapping of keys)")
    tenant_id = doc.get("id") if isinstance(doc.get("id"), str) else path.stem
    if tenant_id != path.stem:
        raise ValueError(f"the tenant id '{tenant_id}' differs from the file name {path.name}: it is not "
                         f"run; make the two equal (`idwell-sync validate {path}`)")
    state_url = doc.get("state_url")
    schedule = doc.get("schedule")
    if schedule is None:
        return TenantHead(tenant_id, path, None, state_url)
    cron, zone = (schedule.get("cron"), schedule.get("timezone", Schedule.timezone)) if isinstance(schedule, dict) \
        else (None, None)
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ValueError(f"tenant '{tenant_id}': schedule.cron {cron!r} is not a cron expression; "
                         f"`idwell-sync validate {path}` says why")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"tenant '{tenant_id}': schedule.timezone {zone!r} is not a time zone") from None
    return TenantHead(tenant_id, path, {"cron": cron, "timezone": zone}, state_url,
                      _window(schedule.get("window"), tenant_id, path))


@functools.cache
def _head_loader():
    """PyYAML's fast loader with the scalars of the config loader (engine.config._yaml: YAML 1.2's
    core schema): `end: 23:00` is the text '23:00' there, as validate and run read it, not
    YAML 1.1's sexagesimal number 1380."""
    import yaml

    from engine.config._yaml import _Loader

    class HeadLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    return HeadLoader


def _window(window: object, tenant_id: str, path: Path) -> dict | None:
    """schedule.window as given, or None; ValueError unless it is two different times HH:MM (the
    schema's form): `due` makes a missed cron time up only inside it."""
    if window is None:
        return None
    start, end = (window.get("start"), window.get("end")) if isinstance(window, dict) else (None, None)
    if not all(isinstance(t, str) and re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", t) for t in (start, end)) \
            or start == end:
        raise ValueError(f"tenant '{tenant_id}': schedule.window {window!r} is not a start and an end, two "
                         f"different times HH:MM (e.g. {{start: '03:00', end: '06:00'}}); "
                         f"`idwell-sync validate {path}` says why")
    return {"start": start, "end": end}


def due(schedule: dict, now: dt.datetime, within: int) -> bool:
    """Whether a cron time of `schedule` (in the schedule's time zone) lies after `now - within`
    minutes and at or before `now` (aware, whole minute; a tick's: tick_end)."""
    return next(cron_times(schedule, now - dt.timedelta(minutes=within), now), None) is not None


def cron_times(schedule: dict, after: dt.datetime, until: dt.datetime) -> Iterator[dt.datetime]:
    """The instants (UTC) after `after` and at or before `until` at which cron runs `schedule`, in
    the schedule's time zone. A fixed time of day that comes twice in the night the clocks go back
    (02:30 in Europe/Berlin in late October) counts once, the first time, as cron runs it; a
    schedule whose hour field is `*` or a step (`*/2`) runs in both passes."""
    from croniter import croniter
    zone = zoneinfo.ZoneInfo(schedule["timezone"])
    times = croniter(schedule["cron"], after.astimezone(zone))
    hourly = schedule["cron"].split()[1].startswith("*") if not schedule["cron"].startswith("@") else \
        schedule["cron"].strip() == "@hourly"
    while (upcoming := _next_or_none(times)) is not None and upcoming <= until:
        when = upcoming.astimezone(dt.timezone.utc)             # compared as instants: same-zone compares ignore fold
        first = upcoming.astimezone(zone).replace(tzinfo=None).replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)
        if hourly or first >= when:                             # not the repeat of an hour gone through already
            yield when


def _next_or_none(times) -> dt.datetime | None:
    """The next time of a croniter, None past the calendar's end (a yearly schedule in the year
    9998 has no cron time left: the next would be in the year 10000)."""
    try:
        return times.get_next(dt.datetime)
    except (ValueError, OverflowError):
        return None


def last_cron_time(schedule: dict, until: dt.datetime) -> dt.datetime | None:
    """The latest instant (UTC) at or before `until` at which cron_times runs `schedule` (None: it
    never has, within croniter's search). croniter's step back only says where to start looking:
    the hours before it are gone through forward, so that the night the clocks change counts as
    in cron_times (which a step back would not: it lands on the second pass of a repeated hour)."""
    from croniter import CroniterError, croniter
    back = croniter(schedule["cron"], until.astimezone(zoneinfo.ZoneInfo(schedule["timezone"])))
    for _ in range(10):                  # each step back widens the look; the first finds it but for odd cases
        try:
            start = back.get_prev(dt.datetime).astimezone(dt.timezone.utc) - dt.timedelta(hours=3)
        except (CroniterError, ValueError):
            return None
        found = None
        for found in cron_times(schedule, start, until):
            pass
        if found is not None:
            return found
    return None
