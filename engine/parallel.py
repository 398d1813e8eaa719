"""Two cores for one run: the persons are extracted, and normalised, by a second process
while this one extracts the contracts, buildings and units.

The persons (Adresse) are the largest query of a DOMUS tenant and the most work per row
(e-mails, phones). A forked child opens its own connection to the source and maps every
person while the parent extracts the contracts, then buildings and units.
The parent sends the user_ids that have a contract in the window (the users' gate) as soon as
it has them: once every contract is read and it is known which become records, before the
records are made (extract_entity's `early`, Mapper.first_half); the child looks for the gate
between slices of rows and from then on skips the persons without a contract while mapping,
and gates those it mapped before afterwards. It
normalises the users block by block and hands back each block as it is done, with their
findings and counts; the parent, once it has normalised buildings, units and contracts, takes
shares of the blocks the child has not reached yet (UsersWorker). The run goes on as if it had
done all of it itself. The result is the same as the serial path's, record for record and
finding for finding (tests/core/test_parallel.py compares the two): where mapping first and
gating afterwards could differ from gating while mapping (an ERP key that appears twice), the
child extracts the users again with the gate.

Buildings and units are the parent's: extracting them here costs less than taking them over
from the child (their records crossing the pipe), and it leaves the child all of its time for
the persons, whose normalising the parent then joins sooner (docs/benchmarks.md, fourteenth stop).

A child that fails is not an error of the run: the parent extracts what the child has not
delivered itself, and a real problem (the source is down) surfaces there with its own message.
Except a query that fails over the child's open connection (an object missing, a
query_timeout): the same query would fail alike in the parent, after as long again against the
customer's server, so the run stops with the child's error.

Used only for SQL sources (their queries are independent reads; the Cloud Connect API's rate
limit is better spent one request at a time), where os.fork exists, and unless the environment
sets IDWELL_SYNC_PARALLEL=0.

This module is the run's side (UsersWorker); the second process's side is engine.parallel_child,
and what crosses the pipes between them is packed and rebuilt by engine.parallel_messages.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
from dataclasses import dataclass
from typing import BinaryIO

from engine._pipe import encode, end_child, pipe, receive, send
from engine._stop import whole
from engine.entity_data import EntityData
from engine.errors import ConfigError, SourceError
from engine.findings import Finding
from engine.normalize import normalize_entity
from engine import parallel_child
from engine.parallel_child import _child
from engine.parallel_messages import _add_block, _gate_message, _shared_blocks, _split_blocks, _unpack_users
from engine.progress import Progress
from engine.sources import source_class

log = logging.getLogger(__name__)

ENVIRONMENT = "IDWELL_SYNC_PARALLEL"


def possible(tenant) -> bool:
    return tenant.source.type == "sql" and possible_here()


def possible_here() -> bool:
    """Whether a run may fork a helper process."""
    return hasattr(os, "fork") and os.environ.get(ENVIRONMENT, "1").strip() not in ("0", "false", "no", "off")


@dataclass
class UsersResult:
    users: EntityData                    # mapped, gated and normalised
    extract_findings: list[Finding]      # mapping, filters and the gate, as extract_entity reports them
    normalise_findings: list[Finding]    # normalize_entity's
    order: list[str]                     # the external_ids as mapped, before normalising dropped some


class UsersWorker:
    """The child process that extracts the users. start() forks; send_gate() once the
    occupancies are known; result() takes the users (None: the child failed).

    The child sends the users' counts and exclusions after the gate, then their records in
    normalised blocks as it makes them (written by a thread, so that the child never waits for
    this process to read), then "done". When this process is ready for the users it says
    "share" (on the gate's pipe); the child, between two blocks, hands over the last quarter of
    the blocks it has not normalised yet ("shared", as mapped), which this process normalises
    while the child goes on; this process asks again before it normalises the last block of a
    share, until the child has too little left ("shared" with nothing). Whichever side would
    otherwise wait takes work from the other."""

    def __init__(self, pid: int, gate_out: int, result_in: int, pack: bool = False):
        self.pid, self._result_in, self._pack = pid, result_in, pack
        self._reaped = False
        self._control: BinaryIO | None = os.fdopen(gate_out, "wb")
        self._gate_writer: threading.Thread | None = None

    @classmethod
    def start(cls, tenant, run_date: dt.date, *, pack: bool = False) -> "UsersWorker":
        """`pack`: the users are packed as they are normalised (EntityData.packed_rows)."""
        source_class(tenant)                          # imported once, before the fork, not in both processes
        gate_in, gate_out = pipe()
        result_in, result_out = pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                                  # the child: never returns
            os.close(gate_out)
            os.close(result_in)
            code = 1
            out = os.fdopen(result_out, "wb")
            try:
                # unbuffered: the child looks by select() whether the run has asked for a share,
                # which a buffered reader might have read ahead with the gate
                with os.fdopen(gate_in, "rb", buffering=0) as control:
                    _child(tenant, run_date, control, out, pack)
                code = 0
            except BaseException as exc:              # the parent extracts the users itself
                try:
                    if isinstance(exc, SourceError) and exc.in_query:   # the parent's query would fail alike
                        send(out, ("source_error", exc.message, exc.cause, exc.hint, exc.retriable))
                    elif isinstance(exc, ConfigError):  # an expression a record breaks: alike in the parent
                        send(out, ("config_error", exc.message, exc.hint))
                    else:
                        send(out, ("failed", f"{type(exc).__name__}: {exc}"))
                except BaseException:
                    pass
            finally:
                try:
                    out.close()
                finally:
                    os._exit(code)
        os.close(gate_in)
        os.close(result_out)
        return cls(pid, gate_out, result_in, pack)

    def send_gate(self, wanted: set[str] | None) -> None:
        """The user_ids with a contract in the window (None: the tenant sends every person).
        Written by a thread: the child reads it between two slices of persons, or when it has
        mapped them all."""
        blob, control = encode(("gate", _gate_message(wanted))), self._control

        def write() -> None:
            try:
                control.write(blob)
                control.flush()
            except (OSError, ValueError):             # the child is gone; result() says so
                pass
        self._gate_writer = threading.Thread(target=write, name="users-gate", daemon=True)
        self._gate_writer.start()

    def _ask_for_share(self) -> bool:
        """Asks the child for more of its blocks; False when it cannot be asked any more."""
        if self._gate_writer is not None:
            self._gate_writer.join()
            self._gate_writer = None
        if self._control is None:
            return False
        try:
            send(self._control, ("share",))
            return True
        except OSError:                               # the child has finished, or failed
            self._close_control()
            return False

    def _close_control(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            try:
                control.close()
            except OSError:
                pass

    def result(self, rules, progress: Progress) -> UsersResult | None:
        progress.start("extract users (second process)")
        try:
            with whole():   # the file takes the descriptor over: a SIGTERM in between would close it twice
                results, self._result_in = os.fdopen(self._result_in, "rb"), -1
            with results as f:
                # asked before the child's first message: it answers before it normalises its
                # first block, instead of after it (a block's normalising with this process idle)
                asking = self._ask_for_share()
                first = receive(f)
                if first[0] != "ok":
                    _raise_source_error(first)
                    return self._failed(first[1], progress)
                users, found = _unpack_users(first[1])
                normalised: list[Finding] = []
                order: list[str] = []                 # the child's blocks' external_ids, as mapped
                mine: list[tuple[EntityData, list[Finding], list[str]]] = []   # this process's shares, later blocks first
                while (message := receive(f))[0] in ("ok", "shared"):
                    if message[0] == "ok":                # a block the child normalised
                        _add_block(users, message[1], normalised)
                        order.extend(message[1]["order"])
                        progress.stage("records in", len(users.records) + sum(len(d.records) for d, _, _ in mine))
                    elif message[1] is None:              # nothing more to share
                        asking = False
                    else:                                 # blocks from the end: this process's share
                        # the next share is asked for before the share's last block is normalised:
                        # the answer comes while that block is done, and this process never holds
                        # more than a block beyond what it is doing (asked as a share arrived, it
                        # took a new one while it had all of the last to do, and the child, left
                        # with too little, ended first)
                        pieces = _split_blocks(message[1], parallel_child.BLOCK) if asking else [message[1]]
                        done = []
                        for piece in pieces:
                            if asking and piece is pieces[-1]:
                                asking = self._ask_for_share()
                            share = _shared_blocks(piece)
                            done.append((share, [], list(share.records)))
                            normalize_entity(share, rules, done[-1][1], pack=self._pack)
                            users.packed_rows.update(share.packed_rows)
                        mine.extend(reversed(done))       # later blocks first
                if message[0] != "done":
                    _raise_source_error(message)
                    return self._failed(message[1], progress)
        except (SourceError, ConfigError):     # the child's query or mapping failed: alike here
            raise
        except Exception as exc:
            return self._failed(f"no answer ({type(exc).__name__}: {exc})", progress)
        except BaseException:                         # stopped (SIGTERM, Ctrl-C): the child need not finish
            self._reap(kill=True)
            raise
        finally:
            self._close_control()
            self._reap()
        for share, share_findings, share_order in reversed(mine):
            users.records.update(share.records)
            users.excluded.update(share.excluded)
            users.invalid.update(share.invalid)
            normalised.extend(share_findings)
            order.extend(share_order)
        progress.advance(users.extracted)
        progress.finish(f"({sum(users.filtered.values()):,} filtered)")
        return UsersResult(users, found, normalised, order)

    def _failed(self, why: str, progress: Progress) -> None:
        log.warning("extracting in a second process failed (%s); extracting here", why)
        progress.finish("failed, extracting here")
        self._stop()
        return None

    def close(self) -> None:
        """Stops the child if the run ends without its result (an error elsewhere)."""
        self._stop()
        if self._gate_writer is not None:
            self._gate_writer.join()
        self._close_control()

    def _stop(self) -> None:
        if self._result_in != -1:
            os.close(self._result_in)
            self._result_in = -1
        self._reap(kill=True)

    def _reap(self, kill: bool = False) -> None:
        if not self._reaped:
            self._reaped = True
            end_child(self.pid, kill=kill)


def _raise_source_error(message: tuple) -> None:
    """A query that failed in the child fails the run with the child's error: the same query
    run again here would fail alike (after as long again, where it was a timeout); so would an
    expression of the mapping that a record breaks. A child that failed otherwise (its own
    connection refused, say) leaves the work to this process."""
    if message[0] == "source_error":
        _, text, cause, hint, retriable = message
        raise SourceError(text, cause=cause, hint=hint, retriable=retriable, in_query=True)
    if message[0] == "config_error":            # a mapping's expression that a record breaks
        _, text, hint = message
        raise ConfigError([], text, hint=hint)
