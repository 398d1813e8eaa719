"""A rollback journal left beside an SQLite file: a program that wrote the file in
rollback-journal mode (not the engine, which writes its stores in WAL mode) stopped in the
middle of a write. Read-only, SQLite cannot roll that write back, and opening the file
`immutable` would read it half-written; both the local portal store
(engine.targets._store_schema.connect_read_only) and the state store (engine.state) refuse
to read it that way."""
from __future__ import annotations

import sqlite3
from pathlib import Path


class HalfWritten(sqlite3.OperationalError):
    """A store that a program left in the middle of a write, its rollback journal beside it: it
    can be read only once a connection that may write has rolled that write back."""

    def __init__(self, path: Path, journal: int | None):
        self.path, self.journal = path, journal
        self.sqlite_errorname = "SQLITE_READONLY_ROLLBACK"     # what SQLite says of such a file opened read-only
        size = f" ({journal:,} bytes)" if journal else ""
        super().__init__(f"a program that wrote it stopped in the middle of a write and left its rollback journal "
                         f"{path}-journal{size}: read as it is, the store would be half-written")


def hot_journal(path: Path) -> int | None:
    """The size of the rollback journal beside the store `path`, None where there is none or
    it is empty (SQLite's journal_mode=TRUNCATE leaves it empty after each write)."""
    try:
        size = Path(f"{path}-journal").stat().st_size
    except OSError:
        return None
    return size or None


def refuse_half_written(path: Path, exc: sqlite3.OperationalError) -> None:
    """Raises HalfWritten where `exc`, SQLite's refusal to open the store `path` read-only, comes
    of a rollback journal beside it; returns for any other refusal (the caller's read-only
    fallback, `immutable`, may follow)."""
    journal = hot_journal(path)
    if journal or (getattr(exc, "sqlite_errorname", "") or "") == "SQLITE_READONLY_ROLLBACK":
        raise HalfWritten(path, journal) from exc


def roll_back_hint(path, run_does: str, then: str) -> str:
    """What to do about a HalfWritten store: let SQLite roll the write back, and keep the journal."""
    return (f"let SQLite roll the unfinished write back: open the store once to write, as a user who may write {path} "
            f"and its folder, e.g. `sqlite3 {path} 'PRAGMA quick_check'` ({run_does}); then {then}. Do not delete "
            f"{path}-journal: the store needs it to be whole again")
