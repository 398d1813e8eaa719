"""The portal's current state, read in the background while the source is extracted.

Reading a large portal's managed records takes about as long as extracting a large ERP, and
the two do not depend on each other, so a run starts reading the target when it starts
extracting and picks the records up when it compares (engine.plan.diff_entity). Records come as
rows: tuples in the import API's field order (engine.contract.fields), keyed by external_id.

How the reading runs in parallel depends on the target:
  * a target with `row_reader()` (the local store, when large) names a module that reads it
    in another process (`python -m MODULE ARGS... ENTITY...`, writing pickled rows to its
    standard output). A thread would not help there: reading SQLite is CPU work under
    Python's GIL. A plain subprocess, not multiprocessing: nothing of the caller (its main
    script, connections, locks) is imported or inherited by the reader.
  * any other target (the import API over HTTP) is read in a thread: listing pages is waiting
    for the network, which releases the GIL.
If the background reading fails in any way, the entity is read again in the foreground, where
an error surfaces as the target's own error.
"""
from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import threading
from operator import itemgetter
from typing import Any, Iterable, Sequence

from engine import contract
from engine.config.model import ENTITIES

log = logging.getLogger(__name__)

Rows = dict[str, tuple]
"""external_id -> the record's values in contract.fields(entity) order (external_id first)."""


def tuples(records: Iterable[dict[str, Any]], names: Sequence[str]) -> list[tuple]:
    """Records (dicts) as tuples of their `names` values, in C where every record has them all;
    a field a record lacks is null."""
    records = records if isinstance(records, list) else list(records)
    try:
        return list(map(itemgetter(*names), records))
    except KeyError:
        return [tuple(map(r.get, names)) for r in records]


def as_rows(entity: str, records: Iterable[dict[str, Any]]) -> Rows:
    """Records (dicts, as Target.read yields them) as rows keyed by external_id."""
    rows = tuples(records, contract.fields(entity))
    return dict(zip(map(itemgetter(0), rows), rows))


class CurrentState:
    """Starts reading every entity of `target` at once; `rows(entity)` waits for one of them."""

    def __init__(self, target: Any, entities: Sequence[str] = ENTITIES, *, background: bool = True):
        self._target, self._entities = target, tuple(entities)
        self._received: dict[str, Rows] = {}
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._thread_result: dict[str, Any] = {}
        if not background:
            return
        reader = getattr(target, "row_reader", None)
        command = reader() if callable(reader) else None
        try:
            if command is not None:
                self._process = subprocess.Popen([sys.executable, "-m", *command, *self._entities],
                                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE)
            else:
                self._thread = threading.Thread(target=self._read_in_thread, name="read-portal", daemon=True)
                self._thread.start()
        except Exception as exc:     # no background reading: read in the foreground when asked
            log.debug("reading the portal in the background is not possible (%s); reading when needed", exc)
            self._process = self._thread = None

    def _read_in_thread(self) -> None:
        for entity in self._entities:
            try:
                self._thread_result[entity] = as_rows(entity, self._target.read(entity))
            except BaseException as exc:   # re-raised by rows() in the caller's thread
                self._thread_result[entity] = exc
                return

    def _receive(self, entity: str) -> Rows | None:
        """The rows of `entity` from the background process, None if it could not deliver them."""
        try:
            while entity not in self._received:
                name, rows = pickle.load(self._process.stdout)
                self._received[name] = dict(zip(map(itemgetter(0), rows), rows))
            return self._received.pop(entity)
        except Exception as exc:          # EOF, a broken pipe, a reader that failed
            said = self._stop()
            log.warning("the background reader of the portal stopped (%s%s); reading %s in the foreground",
                        type(exc).__name__, f": {said}" if said else "", entity)
            return None

    # -- the caller's side --------------------------------------------------------------------
    def rows(self, entity: str) -> Rows:
        """The managed records of one entity, waiting for the background reading if needed."""
        if self._thread is not None:
            self._thread.join()
            result = self._thread_result.pop(entity, None)
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                return result
        elif self._process is not None:
            rows = self._receive(entity)
            if rows is not None:
                return rows
        return as_rows(entity, self._target.read(entity))

    def _stop(self) -> str:
        """Stops the background process; returns the last line it wrote to standard error."""
        process, self._process = self._process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.kill()
        _, err = process.communicate()
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        self._stop()
