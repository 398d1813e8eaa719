"""`idwell-sync plan TENANT`: rehearse a run: everything up to the plan, nothing written to the target.

The plan only reads the local portal store and the state store, so it also succeeds where the
run cannot write them; it says so (unwritable_stores: a warning in the text, `unwritable` in
--json), so that the night's run does not fail on what the plan passed over."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path

from engine.commands._common import (STATE_ELSEWHERE, add_findings_delimiter, add_tenant_arguments, check_findings,
                                     check_output, check_secrets, load, output_file, missing_store, open_store, shown_url, sqlite_file, state_url,
                                     stopped_report, writing)
from engine.errors import DedupFailed, ExitCode
from engine.targets.base import retries_of

HELP = "show what a run would change (writes the plan as JSON, writes nothing to the target)"


def add_arguments(parser) -> None:
    add_tenant_arguments(parser)
    parser.add_argument("--out", type=output_file, default=None, metavar="FILE",
                        help="where to write the plan as JSON (default: var/plans/<tenant>.json; a file, not "
                             "standard output, where the summary goes)")
    parser.add_argument("--no-out", action="store_true", help="do not write a plan file")
    parser.add_argument("--findings", type=output_file, default=None, metavar="FILE",
                        help="also write every finding as CSV (FILE.xlsx: as an Excel workbook)")
    add_findings_delimiter(parser)


def main(args) -> int:
    from engine.pipeline import prepare
    from engine.progress import Progress
    from engine.findings import tenant_codes
    from engine.findings_report import write_findings
    from engine.report import render_text, summary
    from engine.targets import open_target

    check_findings(args)
    if not args.no_out:
        check_output(args.out, "--out")
    tenant = load(args)
    check_secrets(args, tenant)
    out = None if args.no_out else args.out or Path("var/plans") / f"{tenant.id}.json"
    out_option = "--out" if args.out else "the plan file"
    if out is not None and args.out is None:
        check_output(out, out_option)             # the default folder var/plans: a file of that name, say
    unwritable = unwritable_stores(args, tenant)       # before a store is opened (why_unwritable)
    state = read_state(args, tenant)
    try:
        target = open_target(tenant, read_only=True)
    except BaseException:
        if state is not None:
            state.close()
        raise
    try:
        prepared = prepare(tenant, target, state, run_date=args.date, progress=Progress())
        retries = retries_of(target)
    except DedupFailed as exc:
        stopped_report(exc, args, tenant)
        raise
    finally:
        target.close()
        if state is not None:
            state.close()
    if out:
        with writing(out, out_option):
            write_plan(prepared, tenant, out)
    if args.findings:
        with writing(args.findings, "--findings"):
            write_findings(prepared.findings, args.findings, delimiter=args.findings_delimiter or ",",
                           codes=tenant_codes(tenant))
    status = "deletes_held" if prepared.plan.held_reasons else "ok"
    s = summary(prepared, mode="plan", status=status, plan_file=str(out) if out else None, retries=retries,
                unwritable=unwritable)
    if args.json:
        json.dump(s, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(render_text(s, prepared.findings))
        if out:
            print(f"\n  plan written to {out}")
        if args.findings:
            print(f"  findings written to {args.findings}")
    return ExitCode.OK


def unwritable_stores(args, tenant) -> list[dict[str, str]] | None:
    """The stores the plan only reads that a run of the tenant could not write, each with why
    and what to do (engine.write_access): the local portal store and an SQLite state store. None
    when a run could write them, or they are no files here (the import API, a database server).
    The plan succeeds either way; the run would fail (exit 5, 10). Called before either store is
    opened: looking for a lock holder drops this process's own locks on the file."""
    from engine.targets.local import ELSEWHERE
    from engine.write_access import why_unwritable
    stores = []
    if tenant.target is not None and tenant.target.type == "local":
        stores.append(("portal", Path(tenant.target.path), ELSEWHERE))
    if (db := sqlite_file(state_url(args, tenant))) is not None:
        stores.append(("state", Path(db), STATE_ELSEWHERE))
    found = [{"store": store, "path": str(path), "reason": why[0], "hint": why[1]}
             for store, path, elsewhere in stores if (why := why_unwritable(path, elsewhere))]
    return found or None


def read_state(args, tenant):
    """The tenant's state store, opened only to read: a plan records no run, takes no lock and
    creates nothing in it (engine.state.StateStore, create=False), so that a user who may only
    read it can plan. None for an SQLite store not there yet (before the first run): the engine
    remembers nothing yet, and the plan does not create the file."""
    url = state_url(args, tenant)
    if missing_store(url) is not None:
        logging.getLogger(__name__).info("tenant '%s': state store %s not there yet: nothing remembered",
                                         tenant.id, shown_url(url))
        return None
    return open_store(url, f"tenant '{tenant.id}'", create=False)


def write_plan(prepared, tenant, path: Path) -> None:
    """The plan file (docs/summary.md, "The plan file"), replaced whole."""
    from engine.plan import plan_to_json
    from engine.report import write_whole
    made = {"tenant": tenant.id, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_date": prepared.run_date.isoformat()}
    document = {**made, **plan_to_json(prepared.plan)}
    write_whole(path, lambda fh: json.dump(document, fh, ensure_ascii=False, indent=1, default=str))
