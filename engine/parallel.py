"""Two cores for one run: buildings, units and the persons are extracted, and the persons
normalised, by a second process while this one extracts the contracts.

The persons (Adresse) are the largest query of a DOMUS tenant and the most work per row
(e-mails, phones). A forked child opens its own connection to the source, extracts and
normalises buildings and units and sends them (normalised, their values are texts and numbers
that marshal sends, not a database's Decimal that needs pickle), then maps every person while
the parent extracts the occupancies.
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

A child that fails is not an error of the run: the parent extracts what the child has not
delivered itself, and a real problem (the source is down) surfaces there with its own message.
Except a query that fails over the child's open connection (an object missing, a
query_timeout): the same query would fail alike in the parent, after as long again against the
customer's server, so the run stops with the child's error.

Used only for SQL sources (their queries are independent reads; the Cloud Connect API's rate
limit is better spent one request at a time), where os.fork exists, and unless the environment
sets IDWELL_SYNC_PARALLEL=0.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import select
import sys
import threading
from dataclasses import dataclass
from itertools import compress, islice, repeat, starmap
from operator import attrgetter, is_not
from typing import BinaryIO, Sequence

from engine._pipe import encode, end_child, pipe, receive, send
from engine.entity_data import EntityData, Rec, as_recs
from engine.errors import SourceError
from engine.findings import Finding
from engine.mapping import unknown_code_findings
from engine.normalize import CHUNK, normalize_entity
from engine.progress import Progress

log = logging.getLogger(__name__)

ENVIRONMENT = "IDWELL_SYNC_PARALLEL"
BLOCK = 16 * CHUNK
"""Users normalised and handed over together: a whole number of normalize_entity's chunks, so
that the findings come out as one normalize_entity over all of them would give them."""


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
    while the child goes on; this process asks again as soon as a share arrives, until the
    child has too little left ("shared" with nothing). Whichever side would otherwise wait
    takes work from the other."""

    def __init__(self, pid: int, gate_out: int, result_in: int, pack: bool = False):
        self.pid, self._result_in, self._pack = pid, result_in, pack
        self._results: BinaryIO | None = None        # the result pipe, once others() opened it
        self._reaped = False
        self._control: BinaryIO | None = os.fdopen(gate_out, "wb")
        self._gate_writer: threading.Thread | None = None

    @classmethod
    def start(cls, tenant, run_date: dt.date, *, pack: bool = False) -> "UsersWorker":
        """`pack`: the users are packed as they are normalised (EntityData.packed_rows)."""
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
                with os.fdopen(gate_in, "rb") as control:
                    _child(tenant, run_date, control, out, pack)
                code = 0
            except BaseException as exc:              # the parent extracts the users itself
                try:
                    if isinstance(exc, SourceError) and exc.in_query:   # the parent's query would fail alike
                        send(out, ("source_error", exc.message, exc.cause, exc.hint, exc.retriable))
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

    def others(self, progress: Progress) -> dict[str, tuple[EntityData, list[Finding]]] | None:
        """Buildings and units as extract_entity gives them and normalised (entity -> (data, its
        extraction's findings, its normalisation's findings)), which the child extracts before
        the persons; None: the child failed (then result() is None too)."""
        progress.start("extract buildings, units (second process)")
        try:
            self._results = os.fdopen(self._result_in, "rb")
            self._result_in = -1
            message = receive(self._results)
            if message[0] != "ok":
                _raise_source_error(message)
                return self._failed(message[1], progress)
        except SourceError:
            self._stop()
            raise
        except Exception as exc:
            return self._failed(f"no answer ({type(exc).__name__}: {exc})", progress)
        others = {entity: _unpack_entity(entity, packed) for entity, packed in message[1].items()}
        progress.advance(sum(data.extracted for data, _, _ in others.values()))
        progress.finish()
        return others

    def result(self, rules, progress: Progress) -> UsersResult | None:
        progress.start("extract users (second process)")
        if self._results is None:                     # others() failed
            progress.finish("extracting here")
            return None
        try:
            with self._results as f:
                self._results = None
                first = receive(f)
                if first[0] != "ok":
                    _raise_source_error(first)
                    return self._failed(first[1], progress)
                users, found = _unpack_users(first[1])
                normalised: list[Finding] = []
                order: list[str] = []                 # the child's blocks' external_ids, as mapped
                mine: list[tuple[EntityData, list[Finding], list[str]]] = []   # this process's shares, later blocks first
                asking = self._ask_for_share()
                while (message := receive(f))[0] in ("ok", "shared"):
                    if message[0] == "ok":                # a block the child normalised
                        _add_block(users, message[1], normalised)
                        order.extend(message[1]["order"])
                        progress.stage("records in", len(users.records) + sum(len(d.records) for d, _, _ in mine))
                    elif message[1] is None:              # nothing more to share
                        asking = False
                    else:                                 # blocks from the end: this process's share
                        if asking:                        # the next share arrives while this one is done
                            asking = self._ask_for_share()
                        share = _shared_blocks(message[1])
                        mine.append((share, [], list(share.records)))
                        normalize_entity(mine[-1][0], rules, mine[-1][1], pack=self._pack)
                        users.packed_rows.update(mine[-1][0].packed_rows)
                if message[0] != "done":
                    _raise_source_error(message)
                    return self._failed(message[1], progress)
        except SourceError:
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
        if self._results is not None:
            self._results.close()
            self._results = None
        self._reap(kill=True)

    def _reap(self, kill: bool = False) -> None:
        if not self._reaped:
            self._reaped = True
            end_child(self.pid, kill=kill)


def _raise_source_error(message: tuple) -> None:
    """A query that failed in the child fails the run with the child's error: the same query
    run again here would fail alike (after as long again, where it was a timeout). A child that
    failed otherwise (its own connection refused, say) leaves the work to this process."""
    if message[0] == "source_error":
        _, text, cause, hint, retriable = message
        raise SourceError(text, cause=cause, hint=hint, retriable=retriable, in_query=True)


# -- the child ---------------------------------------------------------------------------------
def _child(tenant, run_date: dt.date, control: BinaryIO, out, pack: bool) -> None:
    from engine.pipeline import extract_entity, window_params
    from engine.sources import open_source
    quiet = Progress(enabled=False, level=logging.DEBUG)     # the run logs these phases (-vv: the child's too)
    params = window_params(tenant, run_date)
    source = open_source(tenant, run_date=run_date)

    def extract(entity: str, gate, keep_gated: bool = False) -> tuple[EntityData, list[Finding]]:
        findings: list[Finding] = []
        return extract_entity(tenant, entity, source, params, run_date, gate, findings, quiet,
                              keep_gated=keep_gated), findings

    try:
        with _Sender(out) as send_later:
            send_later(("ok", {entity: _normalised(tenant, *extract(entity, None), pack)
                               for entity in ("buildings", "units")}))
            # the persons while the parent reads the contracts: every one mapped until the gate arrives
            late = _LateGate(tenant, control)
            users, findings = extract("users", ((), late), keep_gated=True)
            gate = late.wait()
            gated: tuple[list, list, list] = ([], [], [])     # external_ids, ERP keys, reasons
            if gate is not None and not _gate_afterwards(users, gate, gated, late.rows_before):
                users, findings = extract("users", ((), gate))  # where the order of rows matters: gate while mapping
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


def _counts(data: EntityData) -> dict:
    """An entity's exclusions and counts, as _unpack_counts rebuilds them."""
    return {"excluded": data.excluded, "extracted": data.extracted, "filtered": dict(data.filtered),
            "unkeyed": dict(data.unkeyed)}


def _unpack_counts(entity: str, packed: dict, records: dict[str, Rec] | None = None) -> EntityData:
    from collections import Counter
    return EntityData(entity, records=records or {}, excluded=packed["excluded"], extracted=packed["extracted"],
                      filtered=Counter(packed["filtered"]), unkeyed=Counter(packed["unkeyed"]))


def _normalised(tenant, data: EntityData, findings: list[Finding], pack: bool) -> dict:
    """An entity as extract_entity left it (its gated records already turned into findings),
    normalised here: its values are then plain texts and numbers, which marshal sends ten times
    faster than pickle sends a Decimal or a date from the database."""
    normalised: list[Finding] = []
    normalize_entity(data, tenant.rules, normalised, pack=pack)
    return {**_blocks(list(data.records), list(data.records.values()), 0), **_counts(data),
            "findings": [_finding(f) for f in findings], "normalised": [_finding(f) for f in normalised],
            "packed": data.packed_rows, "invalid": _invalid(data)}


def _unpack_entity(entity: str, packed: dict) -> tuple[EntityData, list[Finding], list[Finding]]:
    data = _unpack_counts(entity, packed, _records(packed))
    data.packed_rows = packed["packed"]
    data.invalid = _records(packed["invalid"])
    return data, list(starmap(Finding, packed["findings"])), list(starmap(Finding, packed["normalised"]))


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
        from engine.pipeline import users_gate
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


_SEPARATOR = "\x00"


def _gate_message(wanted: set | None) -> str | list | None:
    """The gate's user_ids as one text, joined by NUL (marshal writes it three times faster than
    a list of 275,000 texts, and the child splits it in C); as a list where a user_id is not a
    text or holds a NUL itself (a set would be written in sorted order, ten times slower)."""
    if wanted is None:
        return None
    ids = list(wanted)
    if set(map(type, ids)) <= {str}:
        joined = _SEPARATOR.join(ids)
        if joined.count(_SEPARATOR) == max(len(ids) - 1, 0) and ids != [""]:
            return joined
    return ids


def _gate_set(message: str | list) -> set:
    if isinstance(message, str):
        return set(message.split(_SEPARATOR)) if message else set()
    return set(message)


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


def _blocks(ids: list[str], recs: list[Rec], start: int, stop: int | None = None) -> dict:
    """Records from position `start` (to `stop`), as the parent rebuilds them (_records)."""
    kept = recs[start:stop]
    return {"ids": ids[start:stop], "keys": [r.key for r in kept], "datas": [r.data for r in kept],
            "contracts": [r.contract for r in kept] if any(r.contract for r in kept) else None}


class _Sender:
    """Writes the child's messages from a thread, so that normalising goes on while the parent
    is not reading yet (a pipe holds far less than a block); encoding stays in the caller's thread."""

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
        while (blob := self._queue.get()) is not None:
            try:
                self._out.write(blob)
                self._out.flush()
            except BaseException as exc:              # the parent is gone
                self._error = exc
                return

    def __exit__(self, *exc_info) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc_info[0] is None:
            raise self._error


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


def _finding(f: Finding) -> tuple:
    return f.code, f.entity, f.key, f.message, f.field


def _compact(ids: list[str], keys: list[str], reasons: list[str]) -> tuple:
    """The gated persons as they cross the pipe: their ERP keys only where they are not their
    external_ids (the shipped mappings' persons: to_text of the key), their reason once where it
    is the same for all (a quarter of a million texts fewer each)."""
    return (ids, None if keys == ids else keys,
            reasons[0] if reasons and reasons.count(reasons[0]) == len(reasons) else reasons)


def _uncompact(ids: list[str], keys: list[str] | None, reasons: list[str] | str) -> tuple[list, list, Sequence]:
    return ids, ids if keys is None else keys, [reasons] * len(ids) if isinstance(reasons, str) else reasons


def _unpack_users(packed: dict) -> tuple[EntityData, list[Finding]]:
    """The users' counts and exclusions after the gate (their records follow in blocks); the
    extraction's findings, the gated ones last."""
    from engine.pipeline import gated_user_findings
    users = _unpack_counts("users", packed)
    gated_ids, gated_keys, reasons = _uncompact(*packed["gated"])
    users.excluded.update(zip(gated_ids, reasons))    # disjoint: _gate_afterwards declines otherwise
    found = list(starmap(Finding, packed["findings"]))
    found.extend(gated_user_findings(gated_keys, reasons))
    return users, found


def _records(packed: dict) -> dict[str, Rec]:
    return dict(zip(packed["ids"], as_recs(packed["keys"], packed["datas"], packed["contracts"] or repeat(None))))


def _invalid(data: EntityData) -> dict:
    """The records normalize_entity dropped (EntityData.invalid) as _records rebuilds them: ERP
    key and contract only, which is all keep_last_sent takes of them (their values broke a
    rule, and may be none that marshal sends)."""
    return _blocks(list(data.invalid), [rec._replace(data={}) for rec in data.invalid.values()], 0)


def _shared_blocks(packed: dict) -> EntityData:
    return EntityData("users", records=_records(packed))


def _add_block(users: EntityData, block: dict, normalised: list[Finding]) -> None:
    users.records.update(_records(block))
    users.packed_rows.update(block["packed"])                     # empty where not packing
    users.invalid.update(_records(block["invalid"]))
    users.excluded.update(block["refused"])             # invalid_record or name_too_long, as normalize_entity set
    normalised.extend(starmap(Finding, block["findings"]))
