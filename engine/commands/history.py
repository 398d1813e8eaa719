"""`idwell-sync history TENANT`: the tenant's last runs, from the run history in the state store.

Reads only the state store (no ERP, no portal). One line per run, newest first: when it started
(UTC), how long it took, its status, whether --allow-deletes was given, its writes per action and
those it sent without an answer (`unconfirmed`, a column of its own: a stopped run's show in a
scan of many runs), its held deletes, refused records and findings. Lines under a run say why it
failed or held deletes back, what its unconfirmed writes mean, and how it settled an earlier
run's. `--json`: a list of objects (docs/summary.md, "The run history").
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from engine.commands._common import (add_state_argument, add_tenant_argument, load, missing_store, open_state,
                                     state_url, tenant_path)
from engine.errors import ConfigError, ExitCode, StateError
from engine.report import SETTLED, settled_text

HELP = "show a tenant's last runs from the run history (reads only the state store)"
WRITES = ("create", "update", "delete")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tenant_argument(parser)
    add_state_argument(parser)
    parser.add_argument("--limit", type=_positive, default=10, metavar="N", help="how many runs (default: 10)")
    parser.add_argument("--json", action="store_true",
                        help="print the runs as a JSON list (docs/summary.md, 'The run history')")


MAX_LIMIT = 1_000_000_000
"""The most runs --limit may ask for: more than any store holds (a run every minute for 1,900
years), and within the 64-bit integer SQL's LIMIT takes."""


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of runs: give 1 to {MAX_LIMIT:,}")
    return n


def main(args) -> int:
    try:
        tenant = load(args)
    except ConfigError as exc:          # an invalid file's runs (`run` records its errors) are still shown
        tenant = _head(args, exc)
    _require_existing_store(state_url(args, tenant), tenant.id)
    state = open_state(args, tenant, create=False)
    try:
        runs, where = state.runs(tenant.id, limit=args.limit), state.where
        runs, unfinished = (runs, {}) if args.json else _unfinished(state, tenant.id, runs, args.limit)
    finally:
        state.close()
    entries = [history_entry(r) for r in runs]
    if args.json:
        json.dump(entries, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(render_history(tenant.id, where, entries, unfinished))
    return ExitCode.OK


def _unfinished(state, tenant_id: str, runs: list, limit: int) -> tuple[list, dict[str, str]]:
    """(the runs, run_id -> why) for the runs recorded `running` that no run is under way for:
    the tenant's lock is gone or stale, so they ended without finishing (killed, the host went
    down, the store failed as they ended) and the next run records them as failed. The runs are
    read again after the lock, so that a run that ended in between shows its end; one that
    started in between (it takes the lock, then writes its row) is not among those read first."""
    first = {r.run_id for r in runs if r.status == "running"}
    if not first:
        return runs, {}
    lock = state.locks([tenant_id]).get(tenant_id)
    stale = state.stale(lock) if lock is not None else None
    if lock is not None and stale is None:
        return runs, {}
    runs = state.runs(tenant_id, limit=limit)
    return runs, {r.run_id: unfinished_text(stale) for r in runs if r.status == "running" and r.run_id in first}


def unfinished_text(stale: str | None) -> str:
    """Why a run recorded `running` is not: no live run holds the tenant's lock (`stale`: why the
    lock left behind is stale, None: there is none)."""
    why = f"its lock is stale: {stale}" if stale else "no run holds the tenant's lock"
    return f"ended without finishing ({why}); the next run records it as failed"


def unconfirmed_text(n: int, *, pending: bool = False) -> str:
    """What the writes a failed or stopped run sent without an answer mean, and what becomes of
    them (under the run in the tables of history and status). `pending`: the writes the state
    store holds pending instead (status, where the last run did not complete): a run killed
    outright noted all of its writes ahead, also those it never sent, so they are not said to be
    sent; and a complete run keeps pending a record whose archiving the deletion guard held back
    (the portal may hold an earlier run's write of it), which the next run does not send again:
    it archives it, once the guard lets it."""
    them = "them" if n != 1 else "it"
    what = "left unconfirmed (pending in the state store)" if pending else "sent without an answer (unconfirmed)"
    held = ", or archives a record the ERP no longer has once the deletion guard lets it" if pending else ""
    return (f"{n:,} write{'s' if n != 1 else ''} {what}: the portal may or may not have made {them}; the next "
            f"complete run checks {them} and sends again what the portal did not make{held}")


def _head(args, invalid: ConfigError):
    """The id and state_url of a tenant file that does not load (engine.commands.due.read_head);
    the load's error when not even they can be read."""
    from engine.commands.due import read_head
    try:
        head = read_head(tenant_path(args))
    except (ValueError, ConfigError):
        raise invalid from None
    if not head.state_url_usable:
        raise invalid
    return head


def _require_existing_store(url: str, tenant_id: str) -> None:
    """An SQLite store that is not there is said so, not created empty by looking at it."""
    db = missing_store(url)
    if db is not None:
        raise StateError(f"tenant '{tenant_id}': there is no state store at {db}",
                         hint="no run has been recorded there; if the tenant's runs use another store, name it "
                              "with --state / $IDWELL_STATE_URL (or the tenant's state_url), as for `run`")


def history_entry(run) -> dict[str, Any]:
    """One run of engine.state.RunRecord as the documented JSON object."""
    counts = run.counts
    total = (lambda action: sum(c.get(action, 0) for c in counts.values())) if counts is not None else None
    return {
        "run_id": run.run_id,
        "started_at": utc_text(run.started_at),
        "finished_at": utc_text(run.finished_at),
        "duration_s": round((run.finished_at - run.started_at).total_seconds(), 1) if run.finished_at else None,
        "status": run.status,
        "allow_deletes": run.allow_deletes,
        "writes": {a: total(a) for a in WRITES} if total else None,
        "held": total("held") if total else None,
        "rejected": total("rejected") if total else None,
        "unconfirmed": total("unconfirmed") if total else None,
        "settled": {k: total(f"settled_{k}") for k in SETTLED}
        if counts and any(f"settled_{k}" in c for c in counts.values() for k in SETTLED) else None,
        "findings": sum(run.findings.values()) if run.findings is not None else None,
        "message": run.message,
    }


UNFINISHED = "unfinished"
"""How the tables of history and status show a run recorded `running` that no live lock holds."""


def render_history(tenant_id: str, where: str, entries: list[dict[str, Any]],
                   unfinished: dict[str, str] | None = None) -> str:
    """The runs as a table; `unfinished`: run_id -> why, for the runs recorded `running` that
    ended without finishing (_unfinished): `unfinished` in the status column, why under them."""
    unfinished = unfinished or {}
    if not entries:
        return f"tenant '{tenant_id}': no runs in the run history of the state store {where}"
    head = ("started (UTC)", "duration", "status", "allow-deletes", *WRITES, "unconfirmed", "held", "refused",
            "findings")
    rows = []
    for e in entries:
        w = e["writes"] or {}
        status = UNFINISHED if e["run_id"] in unfinished else e["status"]
        rows.append((e["started_at"], run_duration_text(e), status, "yes" if e["allow_deletes"] else "no",
                     *(count_text(w.get(a)) for a in WRITES), count_text(e["unconfirmed"]), count_text(e["held"]),
                     count_text(e["rejected"]), count_text(e["findings"])))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    left = {0, 2, 3}                            # text columns; the numbers are right-aligned

    def line(cells) -> str:
        return "  " + "  ".join(f"{c:<{w}}" if i in left else f"{c:>{w}}"
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    n = len(entries)
    lines = [f"tenant '{tenant_id}': the last {f'{n} runs, newest first' if n > 1 else 'run'} "
             f"(state store {where})", "", line(head)]
    for e, r in zip(entries, rows):
        lines.append(line(r))
        if e["run_id"] in unfinished:
            lines.append(f"      {unfinished[e['run_id']]}")
        if e["message"]:
            lines.append(f"      {e['message']}")
        if e["unconfirmed"]:
            lines.append(f"      {unconfirmed_text(e['unconfirmed'])}")
        if e["settled"]:
            lines.append(f"      {settled_text(e['settled'])}")
    return "\n".join(lines)


# how history and status show a time, a duration and a count
def utc_text(when: dt.datetime | None) -> str | None:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def run_duration_text(entry: dict[str, Any]) -> str:
    """A run's duration in the tables of history and status: `-` for a run refused by the lock
    (`locked`), which did not run (its 0 s in --json are from its refusal to its record)."""
    return "-" if entry.get("status") == "locked" else duration_text(entry.get("duration_s"))


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s < 3600 else f"{s // 3600} h {s % 3600 // 60:02d} min"


def count_text(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
