"""The second core for the diff: a forked process compares some entities' desired records with
the portal's packed rows while the run diffs the users.

After dedup every desired record is final, and the portal's records of a large local store are
in memory as packed rows (engine.current). Packing the desired rows and comparing them is most
of a rerun's diff; for buildings, units and occupancies a forked child does it
(`plan.compare_packed`) and sends back, per entity, which records are the same, which differ
and which are gone: a bit per record and the few external_ids, never the records. The run, in
the meantime, diffs the users and their e-mail releases, then finishes the other entities'
diffs from those answers (reading in full only the records that differ, in its own process:
the child never touches a database).

Used where os.fork exists, a packed entity is large enough to pay for the fork, and unless
IDWELL_SYNC_PARALLEL=0. A child that fails costs nothing but time: the run compares there.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Mapping

from engine._pipe import end_child, pipe, receive, send
from engine.current import Packed
from engine.mapping import EntityData
from engine.plan import Compared, compare_packed

log = logging.getLogger(__name__)

WORTH_FORKING = 20_000
"""Packed portal records (of the child's entities together) from which a fork pays."""

class Comparer:
    """start() forks a child that compares `entities`; result(entity) takes its answer (None:
    compare in this process)."""

    def __init__(self, pid: int, results, entities: tuple[str, ...]):
        self.pid, self._results, self.entities = pid, results, entities
        self._received: dict[str, Compared | None] = {}

    @classmethod
    def start(cls, entities: tuple[str, ...], data: Mapping[str, EntityData],
              current: Mapping[str, object]) -> "Comparer | None":
        from engine.parallel import possible_here
        entities = tuple(e for e in entities if isinstance(current[e], Packed) and len(current[e]))
        if not possible_here() or sum(len(current[e]) for e in entities) < WORTH_FORKING:
            return None
        r, w = pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:                                   # the child: never returns
            code = 1
            try:
                os.close(r)
                with os.fdopen(w, "wb") as out:
                    for entity in entities:
                        send(out, (entity, _compare(entity, data[entity], current[entity])))
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        return cls(pid, os.fdopen(r, "rb"), entities)

    def result(self, entity: str) -> Compared | None:
        try:
            while entity not in self._received:
                name, answer = receive(self._results)
                self._received[name] = None if answer is None else \
                    ([b == 1 for b in answer[0]], set(answer[1]), answer[2])
            return self._received.pop(entity)
        except Exception as exc:                       # EOF: the child failed
            log.warning("comparing %s in a second process failed (%s: %s); comparing here",
                        entity, type(exc).__name__, exc)
            self.close()
            return None

    def close(self) -> None:
        if self._results is None:
            return
        self._results.close()
        self._results = None
        end_child(self.pid, kill=True)


def _compare(entity: str, desired: EntityData, packed: Packed) -> tuple[bytes, list[str], list[str]] | None:
    """In the child: plan.compare_packed as plain data (the same-bits as bytes); None where the
    rows cannot be packed (the run then compares rows itself)."""
    compared = compare_packed(entity, desired.records, packed)
    if compared is None:
        return None
    same, gone, differ = compared
    return bytes(same), sorted(gone), differ
