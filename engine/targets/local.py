"""Target `local`: the local portal store, an SQLite file that answers like the import API.

The demo syncs into it, tests inspect it, and `idwell-sync sandbox` serves the same store over
HTTP. The rules live in the store (engine.targets._store_portal); this module adapts it to the
Target protocol: `read` lists the managed records, `apply` writes changes in chunks, one
transaction per chunk, and turns the store's answers into Outcomes. `plan` opens the store only
to read (`open_local(..., read_only=True)`): it creates, extends and locks nothing.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

from engine._stop import whole
from engine.errors import TargetError
from engine.plural import counted
from engine.targets._store_portal import Op, PortalStore, read_rows
from engine.sqlite_journal import HalfWritten, roll_back_hint
from engine.targets.base import Change, Outcome, Progress
from engine.write_access import why_not_creatable, why_not_searchable

CHUNK = 5000
ELSEWHERE = "change target.path in the tenant file"
"""What to do instead of making the store at target.path writable."""
READ_IN_BACKGROUND_FROM = 8 * 2**20
"""Stores from this size (bytes) are read by another process while a run extracts; below it,
starting that process costs more than reading the store in the foreground."""


class LocalStore:
    name = "local"

    def __init__(self, path: Path | str, *, chunk_size: int = CHUNK, tenant: str | None = None,
                 read_only: bool = False):
        """`tenant`: the id of the tenant whose target this is; its errors name it. `read_only`
        (plan): the store, which exists, is opened only to read (_store_schema.connect_read_only),
        so that a store this user may not write, or that another process is writing, can be
        planned against; `apply` refuses."""
        self.path = Path(path)
        self.who = _who(tenant)
        _require_searchable(self.path, self.who)
        self.read_only = read_only
        # what opening creates (the file, folders): taken away again by close() if nothing was
        # written, so that a run that failed before writing (its source could not be read, say,
        # or it was started in the wrong folder) leaves no empty store behind for the next to find
        self._made = [] if read_only or self.path.exists() else \
            [self.path, *[p for p in self.path.absolute().parents if not p.exists()]]
        self._wrote = False
        try:
            self.store = PortalStore(self.path, read_only=read_only)
        except (OSError, sqlite3.Error) as exc:      # OSError: creating its folder failed
            if read_only:
                raise _not_readable(self.path, exc, self.who) from exc
            if not self.path.exists() and (why := why_not_creatable(self.path, ELSEWHERE)):
                raise TargetError(f"{self.who}cannot create the local portal store {self.path}: {why[0]}",
                                  hint=why[1]) from exc
            if why := _not_a_store(self.path, exc):
                raise TargetError(f"{self.who}cannot open the local portal store {self.path.absolute()}: {why[0]}",
                                  hint=why[1]) from exc
            reason = f"cannot create the folder {exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else exc
            hint = _read_only(self.path) if isinstance(exc, sqlite3.Error) and _is_read_only(exc, self.path) else \
                "check free disk space, that the path is writable and that it is an SQLite file"
            raise TargetError(f"{self.who}cannot open the local portal store {self.path}: {reason}", hint=hint) from exc
        self.chunk_size = chunk_size

    def read(self, entity: str) -> Iterator[dict[str, Any]]:
        return self.store.iter_records(entity)

    def row_reader(self) -> list[str] | None:
        """The module (and its arguments) that engine.current runs in another process to read
        the store while a run extracts; None for a small store."""
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return ["engine.targets._dump_rows", str(self.path.resolve())] if size >= READ_IN_BACKGROUND_FROM else None

    def read_rows(self, entity: str, only: Collection[str] | None = None) -> list[tuple]:
        """The managed records (or those with the external_ids `only`) as rows, in the store's order."""
        return read_rows(self.path, entity, only)

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> list[Outcome]:
        """One transaction per chunk; a failure or an interruption part-way carries the outcomes
        of the chunks written before it (`partial_outcomes`, see base.Target.apply)."""
        if self.read_only:
            raise TargetError(f"{self.who}the local portal store {self.path} was opened to plan, not to write")
        outcomes: list[Outcome] = []
        self._wrote = self._wrote or bool(changes)
        try:
            for start in range(0, len(changes), self.chunk_size):
                chunk = changes[start:start + self.chunk_size]
                ops = [Op(c.entity, "delete" if c.action == "delete" else "put", c.external_id, c.record)
                       for c in chunk]
                with whole():         # a stop request waits until the chunk's outcomes are noted
                    try:
                        results = self.store.write(ops)
                    except sqlite3.Error as exc:
                        raise TargetError(f"{self.who}writing to the local portal store {self.path} failed after "
                                          f"{start:,} of {counted(len(changes), 'change')}: {exc}",
                                          hint=_write_hint(exc, self.path)) from exc
                    outcomes.extend(Outcome(c, r.ok, r.status, r.code, r.message, r.field)
                                    for c, r in zip(chunk, results))
                if progress is not None:
                    progress(len(chunk))
        except BaseException as exc:
            exc.partial_outcomes = outcomes
            raise
        return outcomes

    # what a person might do in the portal (tests, demos)
    def edit(self, entity: str, external_id: str, **fields: Any) -> None:
        self._wrote = True
        self.store.edit(entity, external_id, **fields)

    def add_manual_user(self, **fields: Any) -> int:
        self._wrote = True
        return self.store.add_manual_user(**fields)

    def close(self) -> None:
        self.store.close()
        if self._made and not self._wrote:
            self._take_back()

    def _take_back(self) -> None:
        """Remove the empty store this object created, and the folders it created for it."""
        path, folders = self._made[0], self._made[1:]
        self._made = []
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            try:
                f.unlink(missing_ok=True)
            except OSError:
                return                          # left as it is: an empty store is still a valid one
        for folder in folders:                  # the deepest first
            try:
                folder.rmdir()
            except OSError:                     # not empty (something else put a file there), or gone
                return


def _not_a_store(path: Path, exc: BaseException) -> tuple[str, str] | None:
    """Why the store `path`, which exists, cannot be opened, and what to do, when it is no SQLite
    file: a directory, or a file that is not a database or is damaged; None for other failures."""
    if path.is_dir():
        return ("it is a directory, not an SQLite file",
                f"change target.path in the tenant file to name the store's file (e.g. {path.absolute() / 'portal.sqlite'}), "
                f"or move the directory out of the way")
    if (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return (f"the file is not an SQLite database, or is damaged (SQLite said: {exc})",
                "if target.path names another file, correct it in the tenant file; if it is the store, restore it "
                "from a backup, or move it aside: the next run then creates a new, empty store and sends every "
                "record again")
    return None


def _not_readable(path: Path, exc: BaseException, who: str) -> TargetError:
    """The error of a store, which exists, that cannot be opened to read it."""
    if isinstance(exc, HalfWritten):
        return TargetError(f"{who}cannot read the local portal store {path}: {exc}",
                           hint=roll_back_hint(path, "a run of the tenant does it too, and then syncs", "plan again"))
    if why := _not_a_store(path, exc):
        return TargetError(f"{who}cannot open the local portal store {path.absolute()}: {why[0]}", hint=why[1])
    return TargetError(f"{who}cannot open the local portal store {path} to read it: {exc}",
                       hint=f"check that the user that runs idwell-sync can read {path} and its folder, and that "
                            f"it is an SQLite file; or change target.path in the tenant file")


def _write_hint(exc: sqlite3.Error, path: Path) -> str:
    """What to do when a chunk could not be written to the store at `path`."""
    why = _read_only(path) if _is_read_only(exc, path) else "check free disk space and that no other program locks the file"
    return f"{why}; the next run resumes where this one stopped"


def _is_read_only(exc: sqlite3.Error, path: Path) -> bool:
    """SQLite could not write the store at `path` because it is read-only: SQLite says so, or (a
    WAL store on a file system mounted read-only: 'unable to open database file') the file or its
    folder cannot be written."""
    if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_READONLY"):
        return True
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK))


def _read_only(path: Path) -> str:
    return (f"{path} is read-only for the user that runs idwell-sync (the file, its folder, where SQLite writes "
            f"its journal, or the file system): let that user write to the file and its folder, or change "
            f"target.path in the tenant file")


def open_local(tenant, *, read_only: bool = False) -> "LocalStore | NoStoreYet":
    """The TARGETS entry: the tenant's `target: {type: local, path: ...}`. `read_only` (plan):
    the store is opened only to read, and one that does not exist yet is not created: it reads
    as empty."""
    path = Path(tenant.target.path)
    _require_searchable(path, _who(tenant.id))
    if read_only and not path.exists():
        if why := why_not_creatable(path, ELSEWHERE):               # the first run could not create it
            raise TargetError(f"{_who(tenant.id)}cannot create the local portal store {path}: {why[0]}", hint=why[1])
        return NoStoreYet(path, tenant.id)
    return LocalStore(path, tenant=tenant.id, read_only=read_only)


def _require_searchable(path: Path, who: str) -> None:
    """TargetError (exit 5) when a folder of the store `path` may not be searched: nothing about
    the store can be known, not even whether it is there (engine.write_access.why_not_searchable)."""
    if why := why_not_searchable(path, ELSEWHERE):
        raise TargetError(f"{who}cannot open the local portal store {path}: {why[0]}", hint=why[1])


def _who(tenant: str | None) -> str:
    """The start of an error's message: the tenant it concerns, as the source errors name it."""
    return f"tenant '{tenant}': " if tenant else ""


class NoStoreYet:
    """A local portal store that does not exist yet, as `plan` sees it: empty, and never
    created by looking at it (a plan writes nothing to the target)."""
    name = "local"

    def __init__(self, path: Path, tenant: str | None = None):
        self.path = path
        self.who = _who(tenant)

    def read(self, entity: str) -> Iterator[dict[str, Any]]:
        return iter(())

    def read_rows(self, entity: str, only: Collection[str] | None = None) -> list[tuple]:
        return []

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> list[Outcome]:
        raise TargetError(f"{self.who}the local portal store {self.path} was opened to plan, not to write")

    def close(self) -> None:
        pass
