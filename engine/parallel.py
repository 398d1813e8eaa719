"""Two cores for one run: the users are extracted, mapped and normalised in a second process
while this one extracts and normalises the other entities.

The persons (Adresse) are the largest query of a DOMUS tenant and the most work per row
(e-mails, phones). A forked child opens its own connection to the source and maps every person
right away; the parent extracts the occupancies first and sends the child the user_ids that
have a contract in the window (the users' gate), then extracts buildings and units and
normalises them. The child skips the persons without a contract, normalises the rest and hands
back the users, their findings and their counts; the run goes on as if it had done all of it
itself. The result is the same as the serial path's, record for record and finding for finding
(tests/core/test_parallel.py compares the two): where mapping first and gating afterwards
could differ from gating while mapping (an ERP key that appears twice), the child extracts the
users again with the gate.

A child that fails for any reason is not an error of the run: the parent extracts the users
itself, and a real problem (the source is down) surfaces there with its own message.

Used only for SQL sources (their queries are independent reads; the Cloud Connect API's rate
limit is better spent one request at a time), where os.fork exists, and unless the environment
sets IDWELL_SYNC_PARALLEL=0.
"""
from __future__ import annotations

import datetime as dt
import logging
import marshal
import os
import pickle
import sys
import threading
from dataclasses import dataclass
from itertools import starmap
from typing import Any

from engine.findings import Finding
from engine.mapping import EntityData, Rec
from engine.normalize import normalize_entity
from engine.progress import Progress

log = logging.getLogger(__name__)

ENVIRONMENT = "IDWELL_SYNC_PARALLEL"


def possible(tenant) -> bool:
    return (tenant.source.type == "sql" and hasattr(os, "fork")
            and os.environ.get(ENVIRONMENT, "1").strip() not in ("0", "false", "no", "off"))


@dataclass
class UsersResult:
    users: EntityData                    # mapped, gated and normalised
    extract_findings: list[Finding]      # mapping, filters and the gate, as extract_entity reports them
    normalise_findings: list[Finding]    # normalize_entity's


class UsersWorker:
    """The child process that extracts the users. start() forks; send_gate() once the
    occupancies are known; result() takes the users (None: the child failed).

    The child sends two messages: the users after the gate, with the first half of their
    records (which this process normalises meanwhile), then the second half normalised."""

    def __init__(self, pid: int, gate_out: int, result_in: int):
        self.pid, self._gate_out, self._result_in = pid, gate_out, result_in
        self._gate_sent = False

    @classmethod
    def start(cls, tenant, run_date: dt.date) -> "UsersWorker":
        gate_in, gate_out = os.pipe()
        result_in, result_out = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                                  # the child: never returns
            os.close(gate_out)
            os.close(result_in)
            code = 1
            out = os.fdopen(result_out, "wb")
            try:
                _child(tenant, run_date, gate_in, out)
                code = 0
            except BaseException as exc:              # the parent extracts the users itself
                try:
                    _send(out, ("failed", f"{type(exc).__name__}: {exc}"))
                except BaseException:
                    pass
            finally:
                try:
                    out.close()
                finally:
                    os._exit(code)
        os.close(gate_in)
        os.close(result_out)
        return cls(pid, gate_out, result_in)

    def send_gate(self, wanted: set[str] | None) -> None:
        """The user_ids with a contract in the window (None: the tenant sends every person).
        Written by a thread: the child reads it only when it has mapped every person."""
        blob, fd = pickle.dumps(wanted, protocol=pickle.HIGHEST_PROTOCOL), self._gate_out
        self._gate_sent = True

        def write() -> None:
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
            except OSError:                           # the child is gone; result() says so
                pass
        threading.Thread(target=write, name="users-gate", daemon=True).start()

    def result(self, rules, progress: Progress) -> UsersResult | None:
        progress.start("extract users (second process)")
        try:
            with os.fdopen(self._result_in, "rb") as f:
                self._result_in = -1
                first = _receive(f)
                if first[0] != "ok":
                    return self._failed(first[1], progress)
                users, found, second = _unpack_first(first[1])
                normalised: list[Finding] = []
                normalize_entity(users, rules, normalised)     # the first half, while the child does the second
                rest = _receive(f)
                if rest[0] != "ok":
                    return self._failed(rest[1], progress)
        except Exception as exc:
            return self._failed(f"no answer ({type(exc).__name__}: {exc})", progress)
        finally:
            self._reap()
        _add_second_half(users, second, rest[1], normalised)
        progress.advance(users.extracted)
        progress.finish(f"({sum(users.filtered.values()):,} filtered)")
        return UsersResult(users, found, normalised)

    def _failed(self, why: str, progress: Progress) -> None:
        log.warning("extracting the users in a second process failed (%s); extracting them here", why)
        progress.finish("failed, extracting here")
        return None

    def close(self) -> None:
        """Stops the child if the run ends without its result (an error elsewhere)."""
        if self._result_in != -1:
            os.close(self._result_in)
            self._result_in = -1
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            self._reap()
        if not self._gate_sent:
            self._gate_sent = True
            os.close(self._gate_out)

    def _reap(self) -> None:
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


# -- the child ---------------------------------------------------------------------------------
def _child(tenant, run_date: dt.date, gate_in: int, out) -> None:
    from engine.normalize import CHUNK
    from engine.pipeline import extract_entity, users_gate, window_params
    from engine.sources import open_source
    quiet = Progress(enabled=False)
    params = window_params(tenant, run_date)

    def extract(gate) -> tuple[EntityData, list[Finding]]:
        findings: list[Finding] = []
        source = open_source(tenant, run_date=run_date)
        try:
            return extract_entity(tenant, "users", source, params, run_date, gate, findings, quiet), findings
        finally:
            source.close()

    users, findings = extract(None)                  # every person, while the parent reads the contracts
    with os.fdopen(gate_in, "rb") as f:
        wanted = pickle.loads(f.read())
    gated: tuple[list, list, list] = ([], [], [])     # external_ids, ERP keys, reasons
    gate = users_gate(tenant, wanted) if wanted is not None else None
    if gate is not None and not _gate_afterwards(users, gate[1], gated):
        users, findings = extract(gate)               # where the order of rows matters: gate while mapping
    ids = list(users.records)
    half = len(ids) // 2 // CHUNK * CHUNK             # normalize_entity's chunks: the same findings, in order
    recs = list(users.records.values())
    _send(out, ("ok", {"ids": ids, "keys": [r.key for r in recs], "datas": [r.data for r in recs[:half]],
                       "contracts": [r.contract for r in recs] if any(r.contract for r in recs) else None,
                       "half": half, "excluded": users.excluded, "extracted": users.extracted,
                       "filtered": dict(users.filtered), "unkeyed": dict(users.unkeyed),
                       "findings": [_finding(f) for f in findings], "gated": gated}))
    second = EntityData("users", records=dict(zip(ids[half:], recs[half:])))
    normalised: list[Finding] = []
    normalize_entity(second, tenant.rules, normalised)
    _send(out, ("ok", {"datas": [r.data for r in recs[half:]], "dropped": list(second.excluded),
                       "findings": [_finding(f) for f in normalised]}))


def _gate_afterwards(users: EntityData, gate, gated: tuple[list, list, list]) -> bool:
    """Apply the users' gate to users mapped without it, as the Mapper would have applied it
    while mapping (the skipped ones into `gated`, their excluded entries added by the parent);
    False (nothing changed) where that could differ: an external_id produced by two rows, or
    one both kept and filtered out."""
    if users.unkeyed.get("duplicate_key") or not users.excluded.keys().isdisjoint(users.records):
        return False
    ids = list(users.records)
    reasons = gate.over_columns({}, ids)
    if not any(reasons):
        return True
    recs = list(users.records.values())
    stopped = [i for i, reason in enumerate(reasons) if reason is not None]
    gated[0].extend(ids[i] for i in stopped)
    gated[1].extend(recs[i].key for i in stopped)
    gated[2].extend(reasons[i] for i in stopped)
    users.records = {external_id: rec for external_id, rec, reason in zip(ids, recs, reasons) if reason is None}
    return True


def _send(out, message: Any) -> None:
    """One message: a format byte, its length, then the bytes (made in full before the first
    is written). marshal, which both processes (one interpreter, forked) read alike, is about
    ten times faster than pickle for plain lists, dicts and texts; pickle where a value is of
    another type (a date or Decimal left in a record)."""
    try:
        kind, blob = b"M", marshal.dumps(message)
    except ValueError:
        kind, blob = b"P", pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(kind + len(blob).to_bytes(8, "big"))
    out.write(blob)
    out.flush()


def _receive(f) -> Any:
    head = f.read(9)
    if len(head) < 9:
        raise EOFError("the second process ended without an answer")
    blob = f.read(int.from_bytes(head[1:], "big"))
    return marshal.loads(blob) if head[:1] == b"M" else pickle.loads(blob)


def _finding(f: Finding) -> tuple:
    return f.code, f.entity, f.key, f.message, f.field


def _unpack_first(packed: dict) -> tuple[EntityData, list[Finding], tuple]:
    """The users after the gate with the first half of their records; the ERP keys (and
    contracts) of the second half; the extraction's findings, the gated ones last."""
    from collections import Counter
    from engine.pipeline import gated_user_finding
    ids, keys, half = packed["ids"], packed["keys"], packed["half"]
    contracts = packed["contracts"] or [None] * len(ids)
    users = EntityData("users", excluded=packed["excluded"], extracted=packed["extracted"],
                       filtered=Counter(packed["filtered"]), unkeyed=Counter(packed["unkeyed"]))
    users.records = dict(zip(ids[:half], map(Rec, keys[:half], packed["datas"], contracts[:half])))
    gated_ids, gated_keys, reasons = packed["gated"]
    users.excluded.update(zip(gated_ids, reasons))    # disjoint: _gate_afterwards declines otherwise
    found = list(starmap(Finding, packed["findings"]))
    found.extend(map(gated_user_finding, gated_keys, reasons))
    return users, found, (ids[half:], keys[half:], contracts[half:])


def _add_second_half(users: EntityData, second: tuple, packed: dict, normalised: list[Finding]) -> None:
    ids, keys, contracts = second
    dropped = set(packed["dropped"])
    users.records.update((i, Rec(k, d, c)) for i, k, d, c in zip(ids, keys, packed["datas"], contracts)
                         if i not in dropped)
    users.excluded.update((i, "invalid_record") for i in packed["dropped"])
    normalised.extend(starmap(Finding, packed["findings"]))
