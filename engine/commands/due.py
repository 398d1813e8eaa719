"""`idwell-sync due`: the tenants whose schedule falls due now, for one scheduler entry for all.

A tenant file's `schedule` (cron, time zone) says when its nightly run starts. Rather than one
crontab line or systemd timer per tenant, kept in step with hundreds of files by hand, one entry
runs every few minutes

    */5 * * * *  cd /srv/tenants && idwell-sync due --within 5 | xargs -r -n 1 idwell-sync run --quiet

and `due` prints the id of every tenant whose cron time, in its own time zone (summer time
included), lies in the last `--within` minutes: after `now - within`, up to `now`, both taken
to the whole minute, so that ticks `within` minutes apart give every cron time to exactly one
tick even when a tick starts a few seconds late. Only the `id` and `schedule` of each file are
read (validate checks the rest, in CI). A file that cannot be read or whose schedule is broken is
named on standard error and makes the exit code 3; the other tenants are still printed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import zoneinfo
from pathlib import Path

from engine.errors import ExitCode

HELP = "print the ids of the tenants whose schedule falls due now (for one scheduler entry for all)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants-dir", type=Path, default=Path("tenants"),
                        help="where the tenant files are (default: tenants)")
    parser.add_argument("--within", type=_minutes, default=5, metavar="MINUTES",
                        help="how far back a cron time counts as due: the scheduler's period (default: 5)")
    parser.add_argument("--at", type=_instant, default=None, metavar="TIME",
                        help="as if it were this time (ISO 8601, e.g. 2026-12-04T03:30+01:00; without an offset: "
                             "UTC; default: now)")


def _minutes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 24 * 60:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes from 1 to 1440")
    return n


def _instant(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: write e.g. 2026-12-04T03:30+01:00") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def main(args) -> int:
    now = (args.at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(second=0, microsecond=0)
    if not args.tenants_dir.is_dir():
        print(f"idwell-sync due: error: no tenants folder at {args.tenants_dir} (--tenants-dir)", file=sys.stderr)
        return ExitCode.USAGE
    broken = 0
    for path in sorted([*args.tenants_dir.glob("*.yaml"), *args.tenants_dir.glob("*.yml")]):
        try:
            tenant_id, schedule = _schedule(path)
        except ValueError as exc:
            print(f"idwell-sync due: {path}: {exc}", file=sys.stderr)
            broken += 1
            continue
        if schedule is not None and due(schedule, now, args.within):
            print(tenant_id, flush=True)
    return ExitCode.CONFIG if broken else ExitCode.OK


def _schedule(path: Path) -> tuple[str, dict | None]:
    """The tenant's id and schedule (None: it has none); ValueError saying what is wrong."""
    import yaml
    from croniter import croniter
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}); `idwell-sync validate {path}` says why") from None
    if not isinstance(doc, dict):
        raise ValueError("is not a tenant file (no mapping of keys)")
    tenant_id = doc.get("id") if isinstance(doc.get("id"), str) else path.stem
    schedule = doc.get("schedule")
    if schedule is None:
        return tenant_id, None
    cron, zone = (schedule.get("cron"), schedule.get("timezone", "Europe/Berlin")) if isinstance(schedule, dict) \
        else (None, None)
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ValueError(f"tenant '{tenant_id}': schedule.cron {cron!r} is not a cron expression; "
                         f"`idwell-sync validate {path}` says why")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"tenant '{tenant_id}': schedule.timezone {zone!r} is not a time zone") from None
    return tenant_id, {"cron": cron, "timezone": zone}


def due(schedule: dict, now: dt.datetime, within: int) -> bool:
    """Whether the cron time of `schedule` that comes first after `now - within` minutes (in the
    schedule's time zone) is at or before `now` (aware, whole minute)."""
    from croniter import croniter
    zone = zoneinfo.ZoneInfo(schedule["timezone"])
    start = (now - dt.timedelta(minutes=within)).astimezone(zone)
    upcoming = croniter(schedule["cron"], start).get_next(dt.datetime)
    return upcoming <= now
