"""`idwell-sync due`: the tenants whose schedule falls due now, for one scheduler entry for all.

A tenant file's `schedule` (cron, time zone) says when its nightly run starts. Rather than one
crontab line or systemd timer per tenant, kept in step with hundreds of files by hand, one entry
runs every few minutes

    */5 * * * *  cd /srv/tenants && idwell-sync due --within 5 | xargs -r -n 1 idwell-sync run --quiet

and `due` prints the id of every tenant whose cron time, in its own time zone (summer time
included), lies in the last `--within` minutes: the window ends at the tick's time rounded down
to a multiple of `within` minutes since midnight UTC (tick_end), so that ticks `within` minutes
apart give every cron time to exactly one tick, also a tick that starts late (by less than
`within` minutes). Only the `id` and `schedule` of each file are
used (validate checks the rest, in CI). A file that cannot be read or whose schedule is broken is
named on standard error and makes the exit code 3; the other tenants are still printed.

`idwell-sync status` lists the same tenant files (tenant_heads) and asks the same cron code for a
schedule's most recent cron time (last_cron_time).
"""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import re
import sys
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.errors import ExitCode

HELP = "print the ids of the tenants whose schedule falls due now (for one scheduler entry for all)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants-dir", type=Path, default=Path("tenants"),
                        help="where the tenant files are (default: tenants)")
    parser.add_argument("--within", type=_minutes, default=5, metavar="MINUTES",
                        help="how far back a cron time counts as due: the scheduler's period (default: 5)")
    parser.add_argument("--at", type=instant, default=None, metavar="TIME",
                        help="as if it were this time (ISO 8601, e.g. 2026-12-04T03:30+01:00; without an offset: "
                             "UTC; default: now)")


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


def instant(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: write e.g. 2026-12-04T03:30+01:00") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def main(args) -> int:
    now = tick_end(args.at or dt.datetime.now(dt.timezone.utc), args.within)
    if not args.tenants_dir.is_dir():
        print(f"idwell-sync due: error: no tenants folder at {args.tenants_dir} (--tenants-dir)", file=sys.stderr)
        return ExitCode.USAGE
    broken = 0
    for path, head, problem in tenant_heads(args.tenants_dir):
        if head is None:
            print(f"idwell-sync due: {path}: {problem}", file=sys.stderr)
            broken += 1
        elif head.schedule is not None and due(head.schedule, now, args.within):
            print(head.id, flush=True)
    return ExitCode.CONFIG if broken else ExitCode.OK


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
    or (path, None, what is wrong) for a file that cannot be read, whose schedule is broken, whose
    id is not its file name, or whose id an earlier file has (`run ID` runs tenants/ID.yaml)."""
    seen: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            head = read_head(path)
            if head.id in seen:
                raise ValueError(f"tenant '{head.id}' is also {seen[head.id]}: it is not run; keep one file")
        except ValueError as exc:
            yield path, None, str(exc)
            continue
        seen[head.id] = path
        yield path, head, None


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
    while (upcoming := times.get_next(dt.datetime)) <= until:
        when = upcoming.astimezone(dt.timezone.utc)             # compared as instants: same-zone compares ignore fold
        first = upcoming.astimezone(zone).replace(tzinfo=None).replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)
        if hourly or first >= when:                             # not the repeat of an hour gone through already
            yield when


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
