"""The `idwell-sync` command: one registry of subcommands and one top-level error handler.

Each subcommand is a module in engine.commands with HELP, add_arguments(parser) and
main(args) -> int. Modules are imported only when their command runs, so `validate` in CI does
not pay for database drivers.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from engine._stop import Terminated, request_stop
from engine.errors import ExitCode, SyncError

COMMANDS: dict[str, str] = {
    "validate": "engine.commands.validate",
    "plan": "engine.commands.plan",
    "run": "engine.commands.run",
    "history": "engine.commands.history",
    "due": "engine.commands.due",
    "status": "engine.commands.status",
    "demo": "engine.commands.demo",
    "doctor": "engine.commands.doctor",
    "discover": "engine.commands.discover",
    "sandbox": "engine.commands.sandbox",
    "erp-sandbox": "engine.commands.erp_sandbox",
}

EPILOG = """exit codes:
  0 ok   1 validate: invalid files; doctor: a step failed; status: a tenant needs attention
  2 usage, or an output file cannot be written   3 config   4 source   5 target
  6 deletes held back   7 tenant locked   8 dedup 'fail'   9 records rejected   10 state store
  70 internal error   130 interrupted (Ctrl-C)   141 the output's reader stopped reading (e.g. | head)
  143 stopped by SIGTERM (the run is recorded as failed and its lock released)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idwell-sync", description="One-way sync from a property manager's ERP into the iDWELL portal.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.set_defaults(_subparsers={})
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more log output (-vv for debug); also before the command")
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
        parser.get_default("_subparsers")[name] = p
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("idwell-sync")
    except PackageNotFoundError:          # run from a source tree that was never installed
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:                       # said with the command's own usage, not the top level's
        (parser.get_default("_subparsers").get(args.command) or parser).error(
            f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s [%(tenant)s] %(name)s: %(message)s")
    _TENANT.args = args
    for handler in logging.getLogger().handlers:
        for log_filter in (_TENANT, _REDACT):
            if log_filter not in handler.filters:
                handler.addFilter(log_filter)
    restore = _stop_on_signals()
    try:
        code = int(args._main(args))
        sys.stdout.flush()            # into a pipe: what is still buffered is written now, not at exit
        return code
    except SyncError as exc:
        print(f"idwell-sync {args.command}: error: {exc}", file=sys.stderr)
        print_failure(args, int(exc.exit_code), exc.message, exc.hint, getattr(exc, "partial_outcomes", None),
                      in_flight=getattr(exc, "in_flight", None))
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:
        by, code = ("stopped (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted (Ctrl-C)", 130)
        whose = f" tenant '{args.tenant_id}':" if getattr(args, "tenant_id", None) else ""
        hint = ("the next run starts again; what the portal accepted is remembered" if args.command in ("run", "demo")
                else "nothing was written to the portal" if args.command == "plan" else None)
        summary, after = getattr(exc, "recorded_run", (None, None))   # stopped while its report was written
        if after:
            by, hint = f"{by} {after}", "the next run writes the report again"
        print(f"idwell-sync {args.command}:{whose} {by}" + (f"\n  what to do: {hint}" if hint else ""), file=sys.stderr)
        print_failure(args, code, f"{whose.strip()} {by}".lstrip() if after else by, hint,
                      getattr(exc, "partial_outcomes", None), summary=summary,
                      in_flight=getattr(exc, "in_flight", None))
        return code
    except BrokenPipeError:
        if not _reader_gone(sys.stdout):
            return _internal_error(args)
        _silence_stdout()   # whoever read the output stopped reading (`| head`): stop quietly, as other tools do
        return ExitCode.OUTPUT_CLOSED
    except Exception:
        return _internal_error(args)
    finally:
        restore()


class _TenantFilter(logging.Filter):
    """Puts the tenant the current command works on into every log line (`[acme]`, `[-]` before
    its file is read): a scheduler's journal interleaves many tenants' runs. One filter for the
    process, so that commands run one after another in it (tests) do not stack filters."""
    args = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.tenant = getattr(self.args, "tenant_id", None) or "-"
        return True


_TENANT = _TenantFilter()


class _RedactFilter(logging.Filter):
    """Masks secrets in every log line, whichever library logs it at whichever level (-vv turns
    on httpx's and httpcore's debug logs, which quote headers and errors): engine.redact."""

    def filter(self, record: logging.LogRecord) -> bool:
        from engine.redact import redact
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed logging call: the handler reports it, as without this filter
            return True
        safe = redact(message)
        if safe != message:
            record.msg, record.args = safe, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_REDACT = _RedactFilter()


def _stop_on_signals():
    """SIGTERM and Ctrl-C end a command at a point where it can be recorded (engine._stop); a
    second one ends the process at once. Returns what puts the previous handlers back."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        request_stop(Terminated if signum == signal.SIGTERM else KeyboardInterrupt)
    for sig in previous:
        signal.signal(sig, stop)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore


def _internal_error(args: argparse.Namespace) -> int:
    """A bug: say so, keep the traceback for the report (secrets masked), use the documented code."""
    import traceback

    from engine.redact import redact
    sys.stderr.write(redact(traceback.format_exc()))
    print(f"idwell-sync {args.command}: internal error (a bug): please report it with the traceback above",
          file=sys.stderr)
    print_failure(args, int(ExitCode.INTERNAL), "internal error (a bug); the traceback is on standard error",
                  "report it with the traceback")
    return ExitCode.INTERNAL


def _reader_gone(stream) -> bool:
    """Whether the pipe or socket a stream writes to has no reader any more."""
    import select
    try:
        poll = select.poll()
        poll.register(stream.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (OSError, ValueError):
        return False


SUMMARY_COMMANDS = {"plan": "plan", "run": "run", "demo": "run"}
"""The commands whose --json prints the run summary (docs/summary.md), and the summary's mode."""


def print_failure(args: argparse.Namespace, code: int, message: str, hint: str | None,
                  partial_outcomes: list | None = None, summary: dict | None = None,
                  in_flight: list | None = None) -> None:
    """With --json, a plan or run that fails still prints one summary object on standard output
    (status `failed`, the exit code, the error and what to do), so that a scheduler or monitor
    reading it learns why; the error is on standard error as well. Messages hold no secrets.
    `partial_outcomes`: a run that failed while applying; its `writes` are what the portal accepted,
    its `unconfirmed` the writes sent without an answer (`in_flight`).
    `summary`: a run that was recorded before the command stopped (while writing its report): its
    own summary, with the exit code and the error added, as for a report that cannot be written."""
    if not getattr(args, "json", False) or args.command not in SUMMARY_COMMANDS:
        return
    import json
    from engine.report import SUMMARY_VERSION
    tenant = getattr(args, "tenant_id", None) or str(args.tenant)     # the id once the file has loaded
    failure = {"version": SUMMARY_VERSION, "tenant": tenant, "mode": SUMMARY_COMMANDS[args.command],
               "status": "failed", "exit_code": code, "error": {"message": message, "hint": hint}}
    if summary is not None:
        failure = {**summary, "exit_code": code, "error": failure["error"]}
    if partial_outcomes is not None:
        failure["writes"] = sum(1 for o in partial_outcomes if o.ok)
        failure["unconfirmed"] = len(in_flight or ())
    try:
        print(json.dumps(failure, ensure_ascii=False, indent=2), flush=True)
    except BrokenPipeError:           # nobody reads standard output: the error is on standard error
        _silence_stdout()


def _silence_stdout() -> None:
    """Standard output to /dev/null, after its reader has gone: nothing fails again at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
