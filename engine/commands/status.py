"""`idwell-sync status`: every tenant's last run and which tenants need attention, for the morning
after the nightly runs and for a monitoring check.

Lists the tenant files as `due` does (engine.commands.due.tenant_heads: *.yaml and *.yml, the id
equal to the file name, one file per id: ID.yaml and ID.yml are one line, `unreadable`, the header
counting both files and saying that neither runs) and reads only their id, schedule and state_url; each
tenant's state store is the one `run` and `history` use (engine.commands._common.state_url), and
each store is opened once for all its tenants. Nothing connects to an ERP or a portal.

A verdict per tenant (judge): `running` while a live run holds the tenant's lock; `new` when it
never ran and its file changed (file_changed: its modification time, moved by every edit) after
its most recent cron time that is --grace minutes past: the scheduler cannot have run it then,
and it is not due before its next cron time; `missed` when that cron time (due's cron code, in
the schedule's time zone) lies after the start of its last run, or it never ran; else the
status of its last run (`ok`, `failed`, `locked`, `rejected`, `deletes_held`; a run whose end was
never recorded and whose lock is gone or stale: `failed`), or `never`. A last run refused by the
run lock (`locked`) is judged by the run that held the lock (_holders) once that run has ended:
its `failed`, `rejected` or `deletes_held` is the verdict, with a note on the refused run; a
holder that ended ok leaves `locked` (the runs overlap the schedule). A tenant file that cannot
be read is `unreadable`; a tenant whose state store cannot be opened or read is `unknown`.

A `missed` tenant whose last run did not end ok keeps that in sight: its message goes on to the
last run's outcome (LAST_RUN), and `last_outcome` in --json is the verdict that run gets on its
own (for every tenant with a run).

A line whose run failed or was stopped with writes sent without an answer (`unconfirmed` in its
history entry) has a line under it saying how many, that the portal may or may not have made
them and that the next complete run checks them (history's words, unconfirmed_text): the other
lines stay as they are. `--json` has them as the run's `unconfirmed`. A run killed outright
counts none, nor does a run that failed before it sent anything: where the last run did not
complete, the writes pending in the state store are counted too (one query per store, no record
read; `pending_writes` in --json), and the line says those when they are more (_open_writes).

Under the table, the `missed` tenants get what to do (what_to_do_missed): each one's cron time
in its time zone, where to look (cron, the tick's mail, `due --at`), the last run that did not
end ok, and the run to start by hand. `--json` has no field for it, as for no other verdict.

Exit code: 10 when a state store cannot be opened or read (the error on standard error names the
store and its tenants); else 1 when a tenant needs attention (ATTENTION); else 0.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import zoneinfo
from collections import Counter
from pathlib import Path
from typing import Any

from engine.commands._common import add_state_argument, missing_store, open_store, shown_url, state_url
from engine.commands.due import TenantHead, cron_times, instant, last_cron_time, tenant_heads, twin_of
from engine.commands.history import (UNFINISHED, count_text, duration_text, history_entry, run_duration_text,
                                     unconfirmed_text, unfinished_text, utc_text)
from engine.errors import ExitCode, StateError, SyncError
from engine.plural import counted

HELP = "every tenant's last run and which need attention (reads only the tenant files and the state stores)"
ORDER = ("ok", "running", "new", "never", "failed", "locked", "rejected", "deletes_held", "missed", "unreadable",
         "unknown")
ATTENTION = frozenset(ORDER[4:])
"""The verdicts that need attention: exit code 1 (unknown: 10)."""
SHOWN = 100
"""Characters of a message in the table (--json has it whole)."""
LAST_RUN = "; the last run "
"""Where a `missed` tenant's message goes on to its last run's outcome, when that was not ok."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants-dir", type=Path, default=Path("tenants"),
                        help="where the tenant files are (default: tenants)")
    add_state_argument(parser)
    parser.add_argument("--at", type=instant, default=None, metavar="TIME",
                        help="judge the schedules as at this time (ISO 8601, e.g. 2026-12-04T07:00+01:00; without an "
                             "offset: UTC; default: now); runs and locks are read as they are now")
    parser.add_argument("--grace", type=_grace, default=15, metavar="MINUTES",
                        help="a cron time counts as missed once it is this many minutes past (default: 15)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print one JSON object per tenant (docs/summary.md, 'The status of the tenants')")
    output.add_argument("--quiet", action="store_true",
                        help="print only the tenants that need attention and the count line, nothing when none does "
                             "(for a scheduler that mails what a job prints)")


MAX_GRACE = 31 * 24 * 60
"""The longest --grace, in minutes: 31 days, a month's schedule can be given a month."""


def _grace(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_GRACE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of minutes: give 0 to {MAX_GRACE} (31 days)")
    return n


def main(args) -> int:
    at = (args.at or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    if not args.tenants_dir.is_dir():
        print(f"idwell-sync status: error: no tenants folder at {args.tenants_dir} (--tenants-dir)", file=sys.stderr)
        return ExitCode.USAGE
    entries, stores, failures, changed, pairs = [], {}, [], {}, []
    for path, head, problem in tenant_heads(args.tenants_dir):
        if head is None:
            entries.append(_entry(path.stem, path, verdict="unreadable", message=f"{path}: {problem}"))
            if twin := twin_of(path):                   # one entry, two tenant files
                pairs.append((path, twin))
            continue
        entry = _entry(head.id, path, schedule=head.schedule,
                       scheduled_at=last_cron_time(head.schedule, at - dt.timedelta(minutes=args.grace))
                       if head.schedule else None)
        entries.append(entry)
        changed[str(path)] = file_changed(path)
        try:
            url = _store_of(args, head)
        except StateError as exc:                       # e.g. two stores hold the tenant (default_state_url)
            failures.append(exc)
            entry.update(verdict="unknown", message="its state store cannot be read: " + exc.message)
        except SyncError as exc:                        # a secret reference in its state_url cannot be resolved
            entry.update(verdict="unreadable", message=f"{path}: {exc.message}")
        else:
            stores.setdefault(url, []).append(entry)
    wheres = [_read_store(url, group, failures, changed) for url, group in stores.items()]
    entries.sort(key=lambda e: (e["tenant"], e["file"]))
    for e in entries:
        e.update(attention=e["verdict"] in ATTENTION, scheduled_at=utc_text(e["scheduled_at"]))
    code = ExitCode.STATE if failures else ExitCode.INVALID if any(e["attention"] for e in entries) else ExitCode.OK
    if args.json:
        json.dump(entries, sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif not args.quiet or code != ExitCode.OK:
        print(render_status(entries, at, args.tenants_dir, wheres, only_attention=args.quiet, pairs=pairs))
    sys.stdout.flush()                                  # the table, then the errors, in a scheduler's mail
    for exc in failures:
        print(f"idwell-sync status: error: {exc}", file=sys.stderr)
    return code


def _store_of(args, head: TenantHead) -> str:
    """The URL of the tenant's state store, as `run` resolves it (references in it resolved)."""
    if not head.state_url_usable:
        raise SyncError(f"tenant '{head.id}': state_url is not a text; `idwell-sync validate {head.path}` says why")
    return state_url(args, head)


def file_changed(path: Path) -> dt.datetime | None:
    """When a tenant file last changed (its modification time, UTC): when it was added, or edited
    since. None when it cannot be read or lies ahead of the clock (a clock that was wrong: it
    says nothing then)."""
    try:
        when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    except (OSError, ValueError, OverflowError):
        return None
    return when if when <= dt.datetime.now(dt.timezone.utc) else None


def _entry(tenant: str, path: Path, *, verdict: str | None = None, message: str | None = None,
           schedule: dict | None = None, scheduled_at: dt.datetime | None = None) -> dict[str, Any]:
    return {"tenant": tenant, "file": str(path), "verdict": verdict, "attention": None,       # set by main
            "message": message, "schedule": schedule, "scheduled_at": scheduled_at, "state_store": None,
            "last_run": None, "last_outcome": None, "holder_run": None, "pending_writes": None, "lock": None}


def _read_store(url: str, group: list[dict[str, Any]], failures: list[StateError],
                changed: dict[str, dt.datetime | None]) -> str:
    """Judge the tenants of one state store from their last runs and locks (and when their files
    changed: `changed`, by file); a store that cannot be opened or read makes its tenants
    `unknown` and its error one of `failures`. Returns how the header names the store."""
    names = [e["tenant"] for e in group]
    who = _who(names)
    where = shown_url(url)
    store = None
    try:
        if missing_store(url) is None:                  # an SQLite file not there yet holds no runs: not created
            store = open_store(url, who, create=False)
            where = store.where
        try:
            found = _judged(store, group, changed)
        except StateError as exc:
            raise StateError(f"{who}: {exc.message}", hint=exc.hint) from None
    except StateError as exc:
        failures.append(exc)
        for e in group:
            e.update(state_store=where, verdict="unknown",
                     message="its state store cannot be read (the error is on standard error)")
        return f"{where} (cannot be read)"
    finally:
        if store is not None:
            store.close()
    for e, fields in zip(group, found):
        e.update(fields, state_store=where)
    return where if store is not None else f"{where} (no such file yet: no runs recorded)"


def _judged(store, group: list[dict[str, Any]], changed: dict[str, dt.datetime | None]) -> list[dict[str, Any]]:
    """What the state store (None: an SQLite file not there yet) says of each tenant of `group`:
    its last run, the run that held the lock, the lock, the verdict (judge) and, where the last
    run did not complete (its last outcome `failed`), how many writes are pending in the store:
    a run killed outright records no `unconfirmed`, nor does a run that failed before it sent
    anything after one that left writes open, yet the portal may hold them. A run under way notes
    its own writes ahead, and a complete run leaves pending only those the portal kept as they
    were: neither is counted. All is read before an entry changes: a store that fails part-way
    leaves its tenants `unknown`, not half judged."""
    names = [e["tenant"] for e in group]
    runs, locks = _runs_and_locks(store, names) if store is not None else ({}, {})
    holders = _holders(store, runs) if store is not None else {}
    found = []
    for e in group:
        lock = locks.get(e["tenant"])
        stale = store.stale(lock) if lock is not None else None
        holder = holders.get(e["tenant"])
        verdict, message, outcome = judge(runs.get(e["tenant"]), lock, stale, e["scheduled_at"], e["schedule"],
                                          holder=holder, changed=changed.get(e["file"]))
        found.append({
            "last_run": history_entry(runs[e["tenant"]]) if e["tenant"] in runs else None,
            "holder_run": history_entry(holder) if holder is not None else None,
            "lock": {"host": lock.host, "pid": lock.pid, "since": utc_text(lock.since), "stale": stale}
            if lock else None,
            "verdict": verdict, "message": message, "last_outcome": outcome})
    unsettled = {e["tenant"] for e, f in zip(group, found) if f["last_outcome"] == "failed"}
    pending = store.pending_counts(unsettled) if unsettled else {}
    for e, f in zip(group, found):
        f["pending_writes"] = pending.get(e["tenant"], 0) if e["tenant"] in unsettled else None
    return found


def _runs_and_locks(store, names: list[str]) -> tuple[dict, dict]:
    """Each tenant's last run and lock as they were at one moment. They are two reads, and runs
    end (their row closed, then their lock released) or start (the lock, then the row) in
    between: a last run still `running` without a live lock is read again, with its lock, until
    two reads of its run agree around a read of its lock. A run holds its lock as long as its
    row says `running`, so only then is it one that ended without finishing."""
    runs, locks = store.last_runs(names), store.locks(names)
    for _ in range(5):
        doubtful = [n for n, run in runs.items()
                    if run.status == "running" and (n not in locks or store.stale(locks[n]))]
        if not doubtful:
            break
        again = store.last_runs(doubtful)
        moved = [n for n in doubtful if n not in again or again[n].run_id != runs[n].run_id
                 or again[n].status != runs[n].status]
        for n in doubtful:
            runs.pop(n)
        runs.update(again)
        if not moved:
            break
        relocked = store.locks(moved)
        for n in moved:
            locks.pop(n, None)
        locks.update(relocked)
    return runs, locks


def _holders(store, runs: dict) -> dict:
    """tenant -> the run that held the lock when the tenant's last run was refused (`locked`), for
    those whose last run was: the latest run before it that the lock did not refuse, if that run
    was still under way then (not ended before the refusal; a lock held without a run of its own,
    e.g. by a tool, has none). Read after the locks: a run closes its row before it releases its
    lock, so a holder whose lock was gone is read as it ended."""
    refused = {n: run for n, run in runs.items() if run.status == "locked"}
    if not refused:
        return {}
    found = store.last_runs(list(refused), skip=("locked",))
    return {n: run for n, run in found.items()
            if run.started_at <= refused[n].started_at
            and (run.finished_at is None or run.finished_at >= refused[n].started_at)}


def _who(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:5])
    return f"tenant {shown}" if len(names) == 1 else \
        f"tenants {shown}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def judge(last, lock, stale: str | None, scheduled_at: dt.datetime | None,
          schedule: dict | None, *, holder=None, changed: dt.datetime | None = None
          ) -> tuple[str, str | None, str | None]:
    """(verdict, why, last outcome) for a tenant: its last run (engine.state.RunRecord or None),
    the lock held now (LockInfo or None) and why it is stale (None: live), and its most recent
    cron time that is --grace minutes past (None: no schedule). `holder`: when the last run is
    `locked`, the run that held the lock then (_holders), if known. `changed`: when its file last
    changed (file_changed), if known. The last outcome is the verdict its last run gets on its own
    (None: no run, or one holds the lock now): the verdict itself but for `missed`, whose message
    adds it when it is not `ok`, so that a missed night does not hide that the run before failed."""
    if lock is not None and stale is None:
        return "running", f"a run holds the lock (host {lock.host!r}, pid {lock.pid}, since {utc_text(lock.since)})", \
            None
    if last is None:
        if scheduled_at is None:
            return "never", None, None
        if changed is not None and changed > scheduled_at:
            return "new", _new_text(schedule, scheduled_at, changed), None
        return "missed", _missed_text(schedule, scheduled_at), None
    verdict, why, about = _last_outcome(last, stale, holder)
    if scheduled_at is not None and last.started_at < scheduled_at:
        note = "" if verdict == "ok" else \
            f"{LAST_RUN}(at {utc_text(about.started_at)}) was `{verdict}`" + (f": {why}" if why else "")
        return "missed", _missed_text(schedule, scheduled_at) + note, verdict
    return verdict, why, verdict


def _missed_text(schedule: dict, scheduled_at: dt.datetime) -> str:
    local = scheduled_at.astimezone(zoneinfo.ZoneInfo(schedule["timezone"]))
    return (f"no run started since its cron time {local:%Y-%m-%d %H:%M} {schedule['timezone']} "
            f"({utc_text(scheduled_at)})")


def _last_outcome(last, stale: str | None, holder) -> tuple[str, str | None, object]:
    """(verdict, why, the run it is about) from the last run, no live lock held: its own outcome,
    or, when the lock refused it, that of the run that held the lock (`holder`) once it ended."""
    if last.status == "locked" and holder is not None:  # the holder has ended (no live lock): what became of it
        verdict, why = _outcome(holder, stale)
        if verdict == "ok":                             # it ended well, but the runs overlap the schedule
            return "locked", f"{last.message}; that run has since ended ok ({_ended(holder)})", last
        return verdict, (f"{why or 'the run ' + verdict}; the run at {utc_text(last.started_at)} did not start "
                         f"(`locked`, exit 7): this one still held the lock"), holder
    return (*_outcome(last, stale), last)


def _new_text(schedule: dict, scheduled_at: dt.datetime, changed: dt.datetime) -> str:
    """Why a tenant that never ran is `new`: when its first run is due (its next cron time after
    the file changed), and that its file changed after its last cron time (scheduled_at, in
    --json). Short enough for the table."""
    zone = zoneinfo.ZoneInfo(schedule["timezone"])
    first = next(cron_times(schedule, changed, changed + dt.timedelta(days=400)), None)
    due = f"first run due {first.astimezone(zone):%Y-%m-%d %H:%M} {schedule['timezone']}" if first is not None \
        else "no cron time of its schedule follows"
    return (f"{due}; its file changed {changed.astimezone(zone):%Y-%m-%d %H:%M} {schedule['timezone']}, after its "
            "last cron time")


def _ended(run) -> str:
    if run.finished_at is None:
        return "its end was not recorded"
    return f"at {utc_text(run.finished_at)}, after {duration_text((run.finished_at - run.started_at).total_seconds())}"


def _outcome(last, stale: str | None) -> tuple[str, str | None]:
    """(verdict, why) from a run's own status, no live lock held."""
    if last.status == "running":                        # no live run holds the lock: it ended without a word
        return "failed", unfinished_text(stale)
    if last.status == "rejected":                       # with the deletes it held back, if any (its message)
        refused = history_entry(last)["rejected"]
        what = "records" if refused is None else counted(refused, "record")
        return "rejected", f"the portal refused {what}; the next run sends {'it' if refused == 1 else 'them'} again" + \
            (f"; {last.message}" if last.message else "")
    return last.status, last.message


def _pairs_note(pairs: list[tuple[Path, Path]]) -> str:
    """Under the header: the tenants in two files (ID.yaml and ID.yml), which neither runs."""
    if len(pairs) == 1:
        [(path, twin)] = pairs
        return (f"(tenant '{path.stem}' is in two of them, {path} and {twin}: neither file runs (`idwell-sync run "
                f"{path.stem}` stops, two tenant files) until one of them is removed)")
    names = [f"'{path.stem}'" for path, _ in pairs]
    shown = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) <= 5 else \
        ", ".join(names[:5]) + f" and {len(names) - 5} more"
    return (f"(tenants {shown} are each in two of them, ID.yaml and ID.yml: neither file of each runs "
            "(`idwell-sync run ID` stops, two tenant files) until one of them is removed)")


def _cut_note(tenants: list[str]) -> str:
    shown = ", ".join(tenants[:3]) + (f" and {len(tenants) - 3} more" if len(tenants) > 3 else "")
    return f"the message of {shown} is cut" if len(tenants) == 1 else f"the messages of {shown} are cut"


def _shown_run(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The run a tenant's line shows: the one its verdict is about. That is its last run, except
    where the last run was refused by the lock and the verdict (or, for `missed`, the last
    outcome) is that of the run that held it."""
    if entry["holder_run"] is not None and entry["last_outcome"] in ("failed", "rejected", "deletes_held"):
        return entry["holder_run"]
    return entry["last_run"]


def _cron_time(entry: dict[str, Any]) -> dt.datetime:
    """The missed cron time of a tenant's entry, in its schedule's time zone."""
    return dt.datetime.fromisoformat(entry["scheduled_at"]).astimezone(zoneinfo.ZoneInfo(entry["schedule"]["timezone"]))


def what_to_do_missed(missed: list[dict[str, Any]]) -> list[str]:
    """What the night operator checks for the tenants whose cron time passed without a run
    (`missed`), under the table: the scheduler, the tick's mail, the lock, then the run by hand.
    Each tenant's cron time in its own time zone; `due --at` with the first one's."""
    first = missed[0]
    when = _cron_time(first)
    named = ", ".join(f"{e['tenant']} at {_cron_time(e):%Y-%m-%d %H:%M} {e['schedule']['timezone']}"
                      for e in missed[:3]) + (f" and {len(missed) - 3} more" if len(missed) > 3 else "")
    one = len(missed) == 1
    return [
        f"what to do, missed ({named}): no run {'was' if one else 'of these tenants was'} started at "
        f"{'its' if one else 'their'} cron time",
        "  - check that cron ran the `idwell-sync due` entry then: the sync user's `crontab -l`, and cron's lines "
        "in the system log of the sync host (`journalctl -u cron`, /var/log/syslog)",
        f"  - `idwell-sync due --at {when.isoformat(timespec='minutes')}` prints "
        + (f"'{first['tenant']}' if that tick was to start it" if one else
           f"the tenants that tick was to start ({first['tenant']}'s cron time; each line shows the tenant's own)")
        + " (a tenant file it cannot read, it names on standard error)",
        "  - the run's output, in the mail cron sent for that tick: a run that stopped before it was recorded "
        "says why there (its state store could not be opened, exit 10; `idwell-sync` not found)",
        "  - the lock is not the cause: a run it refused is shown as `locked`, and a lock left behind by a killed "
        "run is taken over by the next run",
        *_failed_before(missed),
        "  - then start the run by hand: " + (f"`idwell-sync run {first['tenant']}`" if one else
                                              "`idwell-sync run TENANT` for each"),
    ]


def _failed_before(missed: list[dict[str, Any]]) -> list[str]:
    """Lines for the missed tenants whose last run, before the cron time they missed, did not end
    ok: what it was and why (the end of their message, which the table cuts), the first three;
    what stopped it may stop the run by hand as well."""
    bad = [e for e in missed if e["last_outcome"] not in (None, "ok")]
    if not bad:
        return []
    history = f"`idwell-sync history {bad[0]['tenant']}`" if len(bad) == 1 else "`idwell-sync history TENANT`"
    lines = [f"  - the run before the missed cron time did not end ok: what stopped it may stop the run by hand too "
             f"({history} shows the runs)"]
    for e in bad[:3]:
        why = e["tenant"] + ": the last run " + e["message"].split(LAST_RUN, 1)[1]
        lines.append(f"      {why if len(why) <= 2 * SHOWN else why[:2 * SHOWN - 1] + chr(0x2026)}")
    return lines + ([f"      and {len(bad) - 3} more (`status --json`)"] if len(bad) > 3 else [])


def _open_writes(entry: dict[str, Any], run: dict[str, Any]) -> str | None:
    """The line under a tenant's line about writes the portal may or may not have made: those its
    state store holds pending (`pending_writes`, where its last run did not complete) when they
    are more than the run the line shows sent without an answer (a killed run counts none; a run
    that failed before it sent anything neither; earlier runs' add to a stopped run's), else that
    run's own, in history's words; none when there are neither."""
    sent, left = run.get("unconfirmed") or 0, entry["pending_writes"] or 0
    if left > sent:
        return unconfirmed_text(left, pending=True)
    return unconfirmed_text(sent) if sent else None


def render_status(entries: list[dict[str, Any]], at: dt.datetime, folder: Path, wheres: list[str],
                  *, only_attention: bool = False, pairs: list[tuple[Path, Path]] = ()) -> str:
    """The table. `pairs`: the tenant files ID.yaml with an ID.yml beside them (twin_of), each
    pair one entry: the header counts both files and says that neither runs, as `due` does."""
    counts = Counter(e["verdict"] for e in entries)
    stores = f"state store {wheres[0]}" if len(wheres) == 1 else \
        f"state stores {'; '.join(wheres)}" if wheres else "no state store"
    files = len(entries) + len(pairs)
    lines = [f"{files} tenant file{'s' if files != 1 else ''} in {folder} at {utc_text(at)} ({stores})"]
    if pairs:
        lines.append(_pairs_note(pairs))
    shown = [e for e in entries if e["attention"] or not only_attention]
    if shown:
        head = ("tenant", "verdict", "started (UTC)", "duration", "status", "writes", "findings", "message")
        rows, notes = [head], {}
        for e in shown:
            run = _shown_run(e) or {}
            writes = sum(run["writes"].values()) if run.get("writes") else None
            message = e["message"] or ""
            status = run.get("status") or "-"
            if status == "running" and not (e["lock"] and e["lock"]["stale"] is None):
                status = UNFINISHED                     # recorded running, but no live run holds the lock
            rows.append((e["tenant"], e["verdict"], run.get("started_at") or "-", run_duration_text(run),
                         status, count_text(writes), count_text(run.get("findings")),
                         message if len(message) <= SHOWN else message[:SHOWN - 1] + "\u2026"))
            note = _open_writes(e, run)
            if note:
                notes[len(rows) - 1] = f"      {note}"
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        right = {5, 6}                          # the numbers
        lines.append("")
        for n, r in enumerate(rows):
            lines.append("  " + "  ".join(f"{c:>{w}}" if i in right else f"{c:<{w}}"
                                          for i, (c, w) in enumerate(zip(r, widths))).rstrip())
            lines += [notes[n]] if n in notes else []
        cut = [e for e in shown if len(e["message"] or "") > SHOWN]
        if cut:     # history has a run's message; a file that cannot be read, a tenant without runs: only --json
            where = "`idwell-sync history TENANT` or `status --json`" \
                if all(e["verdict"] != "unreadable" and _shown_run(e) for e in cut) else "`idwell-sync status --json`"
            lines += ["", f"({_cut_note([e['tenant'] for e in cut])}: {where} has the whole text)"]
        missed = [e for e in shown if e["verdict"] == "missed"]
        if missed:
            lines += ["", *what_to_do_missed(missed)]
    attention = sum(counts[v] for v in ATTENTION)
    tally = ", ".join(f"{counts[v]} {v}" for v in ORDER if counts[v])
    lines += ["", f"{tally or 'no tenants'}; "
                  + (f"{attention} need{'s' if attention == 1 else ''} attention" if attention
                     else "none needs attention")]
    return "\n".join(lines)
