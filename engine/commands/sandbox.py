"""`idwell-sync sandbox`: serve the import API on 127.0.0.1 over the local portal store (docs/sandbox.md)."""
from __future__ import annotations

import argparse
import signal
import sqlite3
import sys
import threading
from pathlib import Path

HELP = "a local server of the iDWELL import API, for rehearsals and tests (127.0.0.1 only)"
DEFAULT_DATA = Path("var/sandbox/portal.sqlite")
DEFAULT_TOKEN = "sandbox"


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1 (e.g. 0.2 for 20%), got {text}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"cannot be negative, got {text}")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {text}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--port", type=_non_negative, default=8765, help="port on 127.0.0.1 (0: any free port; default 8765)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"the portal store, an SQLite file (created if missing; default {DEFAULT_DATA})")
    parser.add_argument("--token", action="append", default=[], metavar="T",
                        help="accepted bearer token; 'customer:token' is a token of another customer (answered 403); "
                             f"repeatable (default: the token '{DEFAULT_TOKEN}')")
    parser.add_argument("--customer", default="sandbox", help="the customer this portal belongs to (default sandbox)")
    parser.add_argument("--write-log", type=Path, default=None,
                        help="JSON lines, one per accepted write with its content hash (default: beside --data)")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--fail-429", type=_share, default=0.0, metavar="SHARE",
                        help="share of API requests answered 429 with Retry-After")
    faults.add_argument("--retry-after", type=_non_negative, default=1, metavar="S",
                        help="the Retry-After of injected 429s, in seconds (default 1)")
    faults.add_argument("--fail-503", type=_share, default=0.0, metavar="SHARE", help="share answered 503")
    faults.add_argument("--drop", type=_share, default=0.0, metavar="SHARE",
                        help="share of connections closed without an answer (writes are applied first)")
    faults.add_argument("--cut", type=_share, default=0.0, metavar="SHARE",
                        help="share of answers whose body is cut in half, as a proxy that passes on what it got "
                             "(writes are applied first)")
    faults.add_argument("--latency-ms", type=_non_negative, default=0, metavar="N", help="delay of every API request")
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault draws (repeatable runs)")


def main(args) -> int:
    from engine.errors import ExitCode
    from engine.sandbox import Faults, default_write_log, start_sandbox, stop_sandbox

    try:
        faults = Faults(args.fail_429, args.fail_503, args.drop, args.latency_ms, args.retry_after, args.seed,
                        share_cut=args.cut)
    except ValueError as exc:
        print(f"idwell-sync sandbox: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    tokens = args.token or [DEFAULT_TOKEN]
    write_log = args.write_log or default_write_log(args.data)
    for option, path in (("--data", Path(args.data)), ("--write-log", Path(write_log))):
        if path.is_dir():
            example = path / ("portal.sqlite" if option == "--data" else "portal.writes.jsonl")
            print(f"idwell-sync sandbox: error: {option} {path}: is a folder; name a file in it (e.g. {example})",
                  file=sys.stderr)
            return ExitCode.USAGE
    try:
        server = start_sandbox(data=args.data, tokens=tokens, port=args.port, customer=args.customer,
                               faults=faults, write_log=write_log)
    except sqlite3.Error as exc:           # the store: a file that is no SQLite database, or a damaged one
        print(f"idwell-sync sandbox: error: --data {args.data}: cannot open it as the portal store (SQLite said: "
              f"{exc}); name another file (created if missing), or move this one aside", file=sys.stderr)
        return ExitCode.USAGE
    except OSError as exc:
        if exc.filename is not None:       # the store's or the write log's file or folder, not the port
            print(f"idwell-sync sandbox: error: cannot create or open {exc.filename}: {exc.strerror or exc}; give "
                  "--data and --write-log files in a folder that can be created and written", file=sys.stderr)
        else:
            print(f"idwell-sync sandbox: error: cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}",
                  file=sys.stderr)
        return ExitCode.USAGE
    own = sum(1 for t in tokens if ":" not in t)
    print(f"idwell-sync sandbox: serving the import API at {server.base_url}")
    print(f"  portal page: {server.root_url}/")
    print(f"  store: {args.data}   write log: {write_log}")
    print(f"  customer: {args.customer}; tokens: {own} of this customer, {len(tokens) - own} of others"
          + ("; the default token is 'sandbox'" if not args.token else ""))
    print(f"  faults: {faults.describe()}")
    print("  stop with Ctrl-C", flush=True)
    serve_until_stopped(server, lambda: stop_sandbox(server))
    return ExitCode.OK


def serve_until_stopped(server, close) -> None:
    """Serve `server` (a socketserver) in this thread until Ctrl-C or SIGTERM, then `close()`."""
    def stop(signum, frame):  # serve_forever runs in this thread: shut down from another
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        close()
