"""`idwell-sync run TENANT`: the nightly one-way sync of one tenant."""
from __future__ import annotations

import json
import sys

from engine.commands._common import (add_findings_delimiter, add_tenant_arguments, check_findings, check_secrets, load,
                                     open_state, output_file, stopped_report, tenant_path, with_failure, write_report)
from engine.errors import ConfigError, DedupFailed, SecretReferenceError

HELP = "sync one tenant: extract, map, plan and apply to the target"


def add_arguments(parser) -> None:
    add_tenant_arguments(parser)
    parser.add_argument("--allow-deletes", action="store_true",
                        help="release deletes that the deletion guard would hold back (recorded in the run history)")
    parser.add_argument("--findings", type=output_file, default=None, metavar="FILE",
                        help="write every finding as CSV (FILE.xlsx: as an Excel workbook), the data-quality report "
                             "for the property manager")
    add_findings_delimiter(parser)
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print the summary only when the run does not end with exit code 0 (for a scheduler "
                             "that mails what a job prints); warnings and errors still go to standard error")


def main(args) -> int:
    from engine.pipeline import run_tenant
    from engine.progress import Progress
    from engine.report import render_text

    check_findings(args)
    try:
        tenant = load(args)
    except ConfigError as exc:
        record_invalid(args, exc)
        raise
    try:
        state = open_state(args, tenant)
    except SecretReferenceError:        # no store to record the run in: every reference named now
        check_secrets(args, tenant)
        raise
    try:
        result = run_tenant(tenant, state, run_date=args.date, allow_deletes=args.allow_deletes, progress=Progress())
    except DedupFailed as exc:          # recorded as failed; the report is what the property manager acts on
        stopped_report(exc, args, tenant)
        raise
    finally:
        state.close()
    report_failed = write_report(result.findings, args.findings, "--findings", result,
                                 delimiter=args.findings_delimiter)
    code = int(report_failed.exit_code) if report_failed else result.exit_code
    if args.json:
        json.dump(with_failure(result.summary, report_failed), sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif args.quiet and code == 0:
        pass
    else:
        print(render_text(result.summary, result.findings))
        if args.findings and not report_failed:
            print(f"\n  findings written to {args.findings}")
    if report_failed:
        sys.stdout.flush()
        print(f"idwell-sync {args.command}: error: {report_failed}", file=sys.stderr)
    return code


def record_invalid(args, exc: ConfigError) -> None:
    """A run of a tenant file that does not load is a failed run in its run history, with the
    file's errors as the reason: `status` would call the night `missed` (as if the scheduler had
    not started it) and `history` would show nothing. Only where the file's head names the tenant
    (engine.commands.due.read_head) and its store opens; else the error on standard error is all."""
    import logging

    from engine.commands.due import read_head
    from engine.errors import StateError, SyncError, failure_message
    try:
        head = read_head(tenant_path(args))
        if not head.state_url_usable:
            return
        state = open_state(args, head)
    except (ValueError, SyncError):
        return
    try:
        run_id = state.start_run(head.id)
        state.finish_run(run_id, status="failed", message=failure_message(exc))
    except StateError as failure:
        logging.getLogger(__name__).warning("%s", failure)
    finally:
        state.close()
