"""The local portal store's SQLite layout, derived from the import API spec.

One table per resource with one column per spec field (declared without a type, so SQLite keeps
each JSON value as it came: text, integer, real or null), plus:
  id        INTEGER PRIMARY KEY: insertion order, also the list cursor;
  archived  0/1: delete = archive; an archived record is not listed, a later PUT restores it;
  email_key users only: lower(trim(email)), the key of the unique-login rule.
`external_id` is NULL for records a person created by hand in the portal (invisible to the API).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engine import contract
from engine.sqlite_journal import refuse_half_written

FIELDS: dict[str, tuple[str, ...]] = {e: contract.fields(e) for e in contract.RESOURCES}
DEFAULTS: dict[str, dict[str, Any]] = {
    e: {name: sub["default"] for name, sub in contract.record_schema(e)["properties"].items() if "default" in sub}
    for e in contract.RESOURCES}
REFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    e: tuple(contract.references(e).items()) for e in contract.RESOURCES}
CHILDREN: dict[str, tuple[tuple[str, str], ...]] = {
    parent: tuple((child, f) for child in contract.RESOURCES for f, p in REFERENCES[child] if p == parent)
    for parent in contract.RESOURCES}
"""parent resource -> (child resource, reference field) pairs: what blocks a delete."""

SINGULAR = {"buildings": "building", "units": "unit", "users": "user", "occupancies": "occupancy"}


def _list_limits() -> tuple[int, int, int]:
    params = contract.spec()["paths"]["/{resource}"]["get"]["parameters"]
    schema = next(p["schema"] for p in params if p["name"] == "limit")
    return schema["minimum"], schema["maximum"], schema["default"]


LIMIT_MIN, LIMIT_MAX, LIMIT_DEFAULT = _list_limits()


def _id_limits() -> tuple[int, int]:
    params = contract.spec()["paths"]["/{resource}/{external_id}"]["parameters"]
    schema = next(p["schema"] for p in params if p.get("name") == "external_id")
    return schema["minLength"], schema["maxLength"]


ID_MIN, ID_MAX = _id_limits()


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ddl(entity: str) -> list[str]:
    cols = ["id INTEGER PRIMARY KEY", "external_id TEXT UNIQUE"]
    cols += [q(f) for f in FIELDS[entity] if f != "external_id"]
    cols.append("archived INTEGER NOT NULL DEFAULT 0")
    if entity == "users":
        cols.append("email_key TEXT")
    stmts = [f"CREATE TABLE IF NOT EXISTS {q(entity)} ({', '.join(cols)})"]
    for child, field in ((entity, f) for f, _ in REFERENCES[entity]):
        stmts.append(f"CREATE INDEX IF NOT EXISTS {q(f'ix_{child}_{field}')} ON {q(child)} ({q(field)}) "
                     "WHERE archived = 0")
    if entity == "users":
        stmts.append("CREATE INDEX IF NOT EXISTS ix_users_email_key ON users (email_key) WHERE archived = 0")
    return stmts


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create or extend) the store. Autocommit mode: writers use explicit transactions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")       # a committed apply survives a crash of the machine
    conn.execute("PRAGMA cache_size = -65536")      # 64 MB: large stores keep their indexes in memory
    conn.execute("BEGIN IMMEDIATE")
    try:
        for entity in contract.RESOURCES:
            for stmt in _ddl(entity):
                conn.execute(stmt)
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({q(entity)})")}
            for f in FIELDS[entity]:
                if f not in have:                    # the spec gained a field since the store was made
                    conn.execute(f"ALTER TABLE {q(entity)} ADD COLUMN {q(f)}")
        conn.execute("COMMIT")
    except BaseException as exc:
        rollback(conn, exc)
        raise
    return conn


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open the store only to read (`plan`, the background reader): SQLite's read-only mode, so
    that nothing is created, extended or locked against a writer. It works where the store
    cannot be written: a file or folder without write access, a file system mounted read-only,
    a store another process holds a write lock on (a WAL store's readers do not wait for its
    writer). A store laid out by an earlier version (a field the spec gained since, or a table
    missing, as in an empty file) reads as `connect` would extend it, without extending it:
    through temporary views of the same names, which live in the connection, not in the file.

    A WAL store is read through its -shm file, which SQLite creates beside it (and leaves there:
    SQLite's own companion files, taken away by the next writer that closes the store) unless
    the folder cannot be written. There the store is opened `immutable` (no -shm needed), which
    is safe where no -wal file is there: no writer has the store open (a writer keeps its -wal
    file until it closes). With a writer at work, its -wal and -shm files are there to read with.

    Not where a rollback journal (-journal, not empty) is beside the store: a program that wrote
    it in rollback-journal mode (not the engine, which uses WAL) stopped in the middle of a write.
    Read-only, SQLite cannot roll that write back, and `immutable` would read the store half
    written: HalfWritten instead."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    try:
        conn = _open(uri)
    except sqlite3.OperationalError as exc:
        refuse_half_written(Path(path), exc)
        if not Path(path).exists() or Path(f"{path}-wal").exists():
            raise
        conn = _open(uri + "&immutable=1")
    try:
        _view_current_layout(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _open(uri: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()     # SQLite opens the file on first use
    except BaseException:
        conn.close()
        raise
    return conn


def _view_current_layout(conn: sqlite3.Connection) -> None:
    """Temporary views over the tables that lack what this version's layout has: a missing
    field reads as null (what `connect`'s ALTER TABLE gives the rows there), a missing table as
    empty. Unqualified names find the temporary view before the table."""
    for entity in contract.RESOURCES:
        have = {row[1] for row in conn.execute(f"PRAGMA main.table_info({q(entity)})")}
        want = ["id", "external_id", *(f for f in FIELDS[entity] if f != "external_id"), "archived"]
        want += ["email_key"] if entity == "users" else []
        if set(want) <= have:
            continue
        cols = ", ".join(q(c) if c in have else f"NULL AS {q(c)}" for c in want)
        source = f" FROM main.{q(entity)}" if have else " WHERE 0"
        conn.execute(f"CREATE TEMP VIEW {q(entity)} AS SELECT {cols}{source}")


def rollback(conn: sqlite3.Connection, failure: BaseException) -> None:
    """Undo the open transaction after `failure`, which the caller re-raises. SQLite has rolled
    back by itself after some errors (a full disk, an I/O error), and a ROLLBACK that fails must
    not replace the error that led here: it is added to that error as a note."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        failure.add_note(f"rolling back after it failed too: {exc}")
