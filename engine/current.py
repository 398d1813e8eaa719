"""The portal's current state, read in the background while the source is extracted.

Reading a large portal's managed records takes about as long as extracting a large ERP, and
the two do not depend on each other, so a run starts reading the target when it starts
extracting and picks the records up when it compares (engine.plan.diff_entity). `read(entity)`
gives one of two things:

  * `Rows`: external_id -> the record's values as a tuple in the import API's field order
    (engine.contract.fields), every record in full;
  * `Packed` (a large local store): external_id -> that tuple as bytes, in marshal's format 0
    (`pack_rows`), which gives equal bytes for equal rows of texts, numbers and nulls. The run
    packs its desired rows the same way (as it normalises them, EntityData.packed_rows) and
    compares bytes; it builds and reads in full only
    the records whose bytes differ (a value of another type, 1 against 1.0, may differ in bytes
    and still be equal: the field by field comparison then finds it unchanged) and those to be
    deleted. Bytes cross between processes and are compared at a fraction of the cost of
    tuples of texts, which is most of a nightly rerun.

How the reading runs in parallel depends on the target:
  * a target with `row_reader()` (the local store, when large) names a module that reads it
    in another process (`python -m MODULE ARGS... ENTITY...`, writing packed rows to its
    standard output, see engine.targets._dump_rows). A thread would not help there: reading
    SQLite is CPU work under Python's GIL. A plain subprocess, not a fork: nothing of the
    caller (its connections, their SQLite locks, its other children's pipes) is inherited. It
    runs at a lower priority, and with engine.parallel's second process it starts reading only
    once the run has only the users left to receive, taking the time the two processes leave.
    Records wanted in full are read through the target's `read_rows(entity, external_ids)`;
  * any other target (the import API over HTTP) is read in a thread: listing pages is waiting
    for the network, which releases the GIL.
If the background reading fails in any way, the entity is read again in the foreground, where
an error surfaces as the target's own error.
"""
from __future__ import annotations

import logging
import marshal
import subprocess
import sys
import threading
from itertools import repeat
from operator import itemgetter
from typing import Any, Callable, Collection, Iterable, Sequence

from engine import contract
from engine._pipe import receive

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
    return keyed(tuples(records, contract.fields(entity)))


def keyed(rows: list[tuple]) -> Rows:
    """Rows (external_id first) keyed by external_id, in their order."""
    return dict(zip(map(itemgetter(0), rows), rows))


def pack_rows(rows: Iterable[tuple]) -> list[bytes]:
    """Each row as bytes (marshal, format 0: no references, no interning flags, floats as text,
    so equal rows of texts, numbers and nulls give equal bytes in any process). ValueError for
    a value marshal cannot write (a date, a Decimal)."""
    return list(map(marshal.dumps, rows, repeat(0)))


def reader_command(target: Any) -> list[str] | None:
    """The module and arguments that read `target` in another process, packed (`row_reader()`);
    None: the target is read in a thread, as rows."""
    reader = getattr(target, "row_reader", None)
    return reader() if callable(reader) else None


def pack(entity: str, rows: list[tuple]) -> tuple[str, list[str], list[bytes], list | None]:
    """What the background reader sends of one entity: (entity, external_ids, packed rows, the
    users' e-mails in the same order or None)."""
    emails = list(map(itemgetter(contract.fields("users").index("email")), rows)) if entity == "users" else None
    return entity, list(map(itemgetter(0), rows)), pack_rows(rows), emails


class Packed:
    """One entity's managed records in the portal as packed rows (see the module's doc)."""
    __slots__ = ("entity", "ids", "packed", "emails", "_index", "_read")

    def __init__(self, entity: str, ids: list[str], packed: list[bytes], emails: list | None,
                 read: Callable[[str, Collection[str] | None], list[tuple]]):
        self.entity = entity
        self.ids, self.packed = ids, packed     # in the target's order
        self.emails = emails          # users: each record's e-mail, in the order of `ids`; else None
        self._index: dict[str, bytes] | None = None
        self._read = read

    @property
    def index(self) -> dict[str, bytes]:
        """external_id -> packed row (made when first asked for: a rerun whose records come in
        the target's order compares them position by position)."""
        if self._index is None:
            self._index = dict(zip(self.ids, self.packed))
        return self._index

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self, ids: Collection[str] | None = None) -> Rows:
        """The records with these external_ids (None: all) in full, in the target's order."""
        return keyed(self._read(self.entity, ids))


class CurrentState:
    """Starts reading every entity of `target` at once; `read(entity)` waits for one of them."""

    def __init__(self, target: Any, entities: Sequence[str] = contract.RESOURCES, *, background: bool = True,
                 process_later: bool = False):
        """`process_later`: a reader process is started at once but reads only on start() (until
        then both cores are the run's); a thread starts reading at once either way."""
        self._target, self._entities = target, tuple(entities)
        self._received: dict[str, Packed] = {}
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._thread_result: dict[str, Any] = {}
        self._waiting = False
        if not background:
            return
        command = reader_command(target)
        try:
            if command is not None:
                self._process = subprocess.Popen([sys.executable, "-m", command[0], "--wait", *command[1:],
                                                  *self._entities], stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                self._waiting = True
                if not process_later:
                    self.start()
            else:
                self._thread = threading.Thread(target=self._read_in_thread, name="read-portal", daemon=True)
                self._thread.start()
        except Exception as exc:     # no background reading: read in the foreground when asked
            log.debug("reading the portal in the background is not possible (%s); reading when needed", exc)
            self._process = self._thread = None

    def start(self) -> None:
        """Lets a reader process started with `process_later` read now."""
        if not self._waiting or self._process is None:
            return
        self._waiting = False
        stdin, self._process.stdin = self._process.stdin, None      # communicate() must not flush it later
        try:
            stdin.write(b"go\n")
            stdin.close()
        except OSError:              # it has failed already: read() falls back to the foreground
            pass

    def _read_in_thread(self) -> None:
        for entity in self._entities:
            try:
                self._thread_result[entity] = as_rows(entity, self._target.read(entity))
            except BaseException as exc:   # re-raised by read() in the caller's thread
                self._thread_result[entity] = exc
                return

    def _receive(self, entity: str) -> Packed | None:
        """The packed rows of `entity` from the background process, None if it could not deliver them."""
        try:
            while entity not in self._received:
                message = receive(self._process.stdout)
                if message[0] != "ok":
                    raise RuntimeError(message[1])
                _, name, ids, packed, emails = message
                self._received[name] = Packed(name, ids, packed, emails, self._target.read_rows)
            return self._received.pop(entity)
        except Exception as exc:          # EOF, a broken pipe, a reader that failed
            said = self._stop()
            log.warning("the background reader of the portal stopped (%s%s); reading %s in the foreground",
                        type(exc).__name__, f": {said}" if said else "", entity)
            return None

    # -- the caller's side --------------------------------------------------------------------
    def read(self, entity: str) -> Rows | Packed:
        """The managed records of one entity, waiting for the background reading if needed."""
        if self._thread is not None:
            self._thread.join()
            result = self._thread_result.pop(entity, None)
            if isinstance(result, BaseException):
                raise result
            if result is not None:
                return result
        if self._process is not None:
            packed = self._receive(entity)
            if packed is not None:
                return packed
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
