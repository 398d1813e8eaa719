"""The second process of a run with two cores (engine.parallel), forked by UsersWorker.start.

It opens its own connection to the source and maps every person while the run extracts the
contracts, buildings and units. The users' gate is
looked for between slices of rows (_LateGate); the persons mapped before it arrived are gated
afterwards (_gate_afterwards), or the users are extracted again with the gate where that could
differ, and where a person mapped before the gate came broke an expression of the mapping: the
run never maps a person its gate stops, so the error is the run's only if it recurs with the
gate. Then it normalises the users block by block and sends each block, and hands the run a
share of the blocks it has not reached yet whenever the run asks (_asked). Its messages are
written by a thread (_Sender), in the formats of engine.parallel_messages.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import select
import threading
from itertools import compress, islice, repeat
from operator import attrgetter, is_not
from typing import BinaryIO, Sequence

from engine._pipe import encode, receive
from engine.entity_data import EntityData
from engine.errors import ConfigError, ExpressionError
from engine.findings import Finding
from engine.mapping import unknown_code_findings
from engine.normalize import CHUNK, normalize_entity
from engine.parallel_messages import _blocks, _compact, _counts, _finding, _gate_set, _invalid
from engine.progress import Progress

BLOCK = 4 * CHUNK
"""Users normalised and handed over together: a whole number of normalize_entity's chunks, so
that the findings come out as one normalize_entity over all of them would give them; few
enough that the child, which looks for the run's request for a share between two blocks,
answers it within a few hundredths of a second, and that the two processes' last blocks end
close together."""


def _child(tenant, run_date: dt.date, control: BinaryIO, out, pack: bool) -> None:
    from engine.extract import extract_entity, window_params
    from engine.sources import open_source
    quiet = Progress(enabled=False, level=logging.DEBUG)     # the run logs these phases (-vv: the child's too)
    params = window_params(tenant, run_date)
    source = open_source(tenant, run_date=run_date)

    def extract(gate, keep_gated: bool = False) -> tuple[EntityData, list[Finding]]:
        findings: list[Finding] = []
        return extract_entity(tenant, "users", source, params, run_date, gate, findings, quiet,
                              keep_gated=keep_gated), findings

    try:
        with _Sender(out) as send_later:
            # the persons while the parent reads the rest: every one mapped until the gate arrives
            late = _LateGate(tenant, control)
            try:
                users, findings, broken = *extract(((), late), keep_gated=True), False
            except ConfigError as exc:      # an expression a record breaks, perhaps a person mapped before
                if not isinstance(exc.__cause__, ExpressionError) or not late.rows_before:    # the gate came
                    raise                                 # the gate was there from the first row: as the run would
                users, findings, broken = None, [], True
            gate = late.wait()
            gated: tuple[list, list, list] = ([], [], [])     # external_ids, ERP keys, reasons
            if broken or gate is not None and not _gate_afterwards(users, gate, gated, late.rows_before):
                # where the order of rows matters, or a record broke an expression: gate while mapping,
                # which raises where the run's own extraction would
                users, findings = extract(((), gate))
            else:                                         # the ones the gate stopped while mapping come after
                findings.extend(unknown_code_findings(users))     # counted over the persons the gate kept
                for external_id, key, reason, _ in users.gated:
                    gated[0].append(external_id)
                    gated[1].append(key)
                    gated[2].append(reason)
            users.gated.clear()
            _send_users(tenant, users, findings, gated, control, send_later, pack)
    finally:
        source.close()


def _send_users(tenant, users: EntityData, findings: list[Finding], gated: tuple, control: BinaryIO,
                send_later, pack: bool) -> None:
    ids, recs = list(users.records), list(users.records.values())
    users.records = {}                                # each block's records are let go once it is sent
    starts = list(range(0, len(ids), BLOCK))         # normalize_entity's chunks: the same findings, in order
    send_later(("ok", {**_counts(users), "findings": [_finding(f) for f in findings], "gated": _compact(*gated)}))
    k, end = 0, len(starts)
    while k < end:
        if _asked(control):                           # the parent takes a quarter of what is left
            if end - k > 2:
                end, stop = end - max(1, (end - k) // 4), starts[end] if end < len(starts) else len(ids)
                send_later(("shared", _blocks(ids, recs, starts[end], stop)))
                recs[starts[end]:stop] = [None] * (stop - starts[end])
            else:
                send_later(("shared", None))
        block = EntityData("users", records=dict(zip(ids[starts[k]:starts[k] + BLOCK],
                                                      recs[starts[k]:starts[k] + BLOCK])))
        normalised: list[Finding] = []
        order = list(block.records)                   # as mapped: normalising drops the invalid ones
        normalize_entity(block, tenant.rules, normalised, pack=pack)
        send_later(("ok", {**_blocks(list(block.records), list(block.records.values()), 0),
                           "order": order, "invalid": _invalid(block), "refused": block.excluded,
                           "findings": [_finding(f) for f in normalised],
                           "packed": block.packed_rows}))
        recs[starts[k]:starts[k] + BLOCK] = [None] * len(recs[starts[k]:starts[k] + BLOCK])
        k += 1
    send_later(("done",))


class _LateGate:
    """The users' gate for a mapping that starts before the gate is known: keeps every person
    until the parent's gate arrives (looked for between two slices of rows, without waiting),
    then stops those the gate stops. The persons kept before it are gated afterwards."""

    def __init__(self, tenant, control: BinaryIO):
        self._tenant, self._control = tenant, control
        self._arrived, self._gate = False, None
        self.rows_before = 0         # rows kept without the gate: their records come first

    def _look(self) -> None:
        if not self._arrived and select.select([self._control], [], [], 0)[0]:
            self._take()

    def _take(self) -> None:
        from engine.extract import users_gate
        _, wanted = receive(self._control)
        gate = users_gate(self._tenant, _gate_set(wanted)) if wanted is not None else None
        self._arrived, self._gate = True, gate[1] if gate else None

    def wait(self):
        """The gate (None: the tenant sends every person), waiting for it if it has not come."""
        if not self._arrived:
            self._take()
        return self._gate

    def __call__(self, data: dict) -> str | None:
        self._look()
        if not self._arrived:
            self.rows_before += 1
        return self._gate(data) if self._gate is not None else None

    def over_columns(self, early: dict, external_ids: Sequence[str]) -> list[str | None]:
        self._look()
        if not self._arrived:
            self.rows_before += len(external_ids)
        return self._gate.over_columns(early, external_ids) if self._gate is not None else [None] * len(external_ids)


def _asked(control: BinaryIO) -> bool:
    """Whether the parent has asked for a share since the last look (one request a look)."""
    if control.closed or not select.select([control], [], [], 0)[0]:
        return False
    try:
        message = receive(control)
    except EOFError:                                  # the parent closed the pipe: it asks no more
        control.close()
        return False
    return message[0] == "share"


class _Sender:
    """Writes the child's messages from a thread, so that normalising goes on while the parent
    is not reading yet (a pipe holds far less than a block); encoding stays in the caller's thread.

    What has queued up goes out in one writev: the thread needs the interpreter lock once for all
    of it, not once a message. The child's main thread normalises and holds that lock but for
    moments (five milliseconds each, sys.getswitchinterval), so a thread that took it back after
    every 545 KB block handed the run one block each such moment, slower than the run takes
    them in: the run waited for blocks that were made already, and the share it asked for came
    after all of them."""

    def __init__(self, out):
        self._out, self._queue = out, queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="users-sender", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __call__(self, message: tuple) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(encode(message))

    def _write(self) -> None:
        get, waiting = self._queue.get, self._queue.qsize
        self._out.flush()
        fd, last = self._out.fileno(), False
        while not last:
            blobs = [get()]
            while waiting() and blobs[-1] is not None:
                blobs.append(get())
            if blobs[-1] is None:
                blobs.pop()
                last = True
            try:
                _write_all(fd, blobs)
            except BaseException as exc:              # the parent is gone
                self._error = exc
                return

    def __exit__(self, *exc_info) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc_info[0] is None:
            raise self._error


def _write_all(fd: int, blobs: list[bytes]) -> None:
    """All of `blobs`, in order, with as few system calls (each without the interpreter lock) as
    the kernel allows: one writev of up to IOV_MAX parts, again for what a partial write left."""
    views = list(map(memoryview, blobs))
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        done = 0
        while done < len(views) and n >= len(views[done]):
            n -= len(views[done])
            done += 1
        del views[:done]
        if n:
            views[0] = views[0][n:]


try:                                                  # Linux: 1024
    _IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))
except (AttributeError, ValueError, OSError):        # no sysconf, or no such name: POSIX's least
    _IOV_MAX = 16


def _gate_afterwards(users: EntityData, gate, gated: tuple[list, list, list], rows_before: int) -> bool:
    """Apply the users' gate to the users mapped before it arrived (made from the first
    `rows_before` rows, so among the first `rows_before` records; those mapped later passed it),
    as the Mapper would have applied it while mapping (the skipped ones into `gated`, their
    excluded entries added by the parent); False (nothing changed) where that could differ: an
    external_id produced by two rows, or one both kept and filtered out."""
    if users.unkeyed.get("duplicate_key") or not users.excluded.keys().isdisjoint(users.records):
        return False
    ids = list(islice(users.records, rows_before))
    reasons = gate.over_columns({}, ids)
    if not any(reasons):
        return True
    stop = list(map(is_not, reasons, repeat(None)))
    stopped = list(compress(ids, stop))
    gated[0].extend(stopped)
    gated[1].extend(map(attrgetter("key"), map(users.records.__getitem__, stopped)))
    gated[2].extend(compress(reasons, stop))
    for external_id in stopped:                 # the others keep their order
        del users.records[external_id]
    return True
