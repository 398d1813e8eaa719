"""PortalStore: the import API's resources over one SQLite file, with the API's answers.

Used by the local target (engine.targets.local) and served over HTTP by the sandbox. Every method
answers as the API would (status, error code, field, conflicting_external_id), so both stay true
to engine/contract/idwell-import-api.yaml:
  * PUT creates (201) or fully replaces (200); missing optional fields take the spec's default or
    null. Restoring an archived record counts as a create (201).
  * DELETE archives (204); an already archived record answers 204 again (writes are idempotent),
    an id that never existed 404 `not_found`.
  * 400 `invalid` for a record that breaks the spec (engine.contract.rules), 409 `email_taken`,
    `unknown_reference` and `has_dependents` as the spec describes. E-mails are compared trimmed
    and case-insensitively with every active user, including users created by hand.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from itertools import repeat
from operator import itemgetter
from typing import Any, Collection, Iterable, Iterator, Sequence

from engine import contract
from engine.contract import email_key
from engine.targets._store_schema import (DEFAULTS, FIELDS, LIMIT_DEFAULT, LIMIT_MAX, LIMIT_MIN, connect,
                                          connect_read_only, q)
from engine.targets._store_write import Op, Result, write

__all__ = ["PortalStore", "Op", "Result", "read_rows"]

MANAGED = "archived = 0 AND external_id IS NOT NULL"
"""The records the API lists (active, with an external_id): every read of the store selects these."""


class PortalStore:
    def __init__(self, path: Path | str, *, read_only: bool = False):
        """`read_only`: the store, which exists, only to read (connect_read_only): its writes fail."""
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = connect_read_only(self.path) if read_only else connect(self.path)
        self._lock = threading.RLock()      # one connection, shared by the sandbox's request threads

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the portal store {self.path} is closed")
        return self._conn

    # -- writes ------------------------------------------------------------------------------
    def write(self, ops: Sequence[Op]) -> list[Result]:
        """Apply PUTs and DELETEs in order, in one transaction. A refused operation does not stop the others."""
        for o in ops:
            _check_resource(o.resource)
        with self._lock:
            return write(self.conn, ops)

    def put(self, resource: str, external_id: str, record: Any) -> Result:
        return self.write([Op(resource, "put", external_id, record)])[0]

    def delete(self, resource: str, external_id: str) -> Result:
        return self.write([Op(resource, "delete", external_id)])[0]

    def batch(self, resource: str, upsert: Iterable[Any] = (), delete: Iterable[str] = ()) -> list[tuple[str, str, Result]]:
        """The batch endpoint: upserts first, then deletes; (external_id, op, Result) per operation, in order."""
        ops = [Op(resource, "put", r.get("external_id") if isinstance(r, dict) and isinstance(r.get("external_id"), str)
                  else "", r) for r in upsert]
        ops += [Op(resource, "delete", str(i)) for i in delete]
        return [(o.external_id, "upsert" if o.op == "put" else "delete", r) for o, r in zip(ops, self.write(ops))]

    def edit(self, resource: str, external_id: str, **fields: Any) -> None:
        """Change fields of an active managed record directly, as a person editing it in the portal would."""
        _check_resource(resource)
        unknown = set(fields) - set(FIELDS[resource]) - {"external_id"}
        if unknown or "external_id" in fields:
            raise ValueError(f"{resource} has no editable field(s) {sorted(unknown or {'external_id'})}; "
                             f"valid values are: {', '.join(FIELDS[resource][1:])}")
        sets = dict(fields)
        if resource == "users" and "email" in fields:
            sets["email_key"] = email_key(fields["email"])
        with self._lock:
            cur = self.conn.execute(
                f"UPDATE {q(resource)} SET {', '.join(f'{q(k)} = ?' for k in sets)} "
                "WHERE external_id = ? AND archived = 0", (*sets.values(), external_id))
        if cur.rowcount == 0:
            raise KeyError(f"{resource} {external_id!r} is not an active record of the portal store {self.path}")

    def add_manual_user(self, **fields: Any) -> int:
        """A user created by hand in the portal (no external_id): invisible to the API, but its e-mail counts."""
        unknown = set(fields) - set(FIELDS["users"]) | ({"external_id"} & set(fields))
        if unknown:
            raise ValueError(f"a manual user has no field(s) {sorted(unknown)}")
        record = {f: fields.get(f, DEFAULTS["users"].get(f)) for f in FIELDS["users"] if f != "external_id"}
        key = email_key(record.get("email"))
        with self._lock:
            if key and self.conn.execute("SELECT 1 FROM users WHERE archived = 0 AND email_key = ?", (key,)).fetchone():
                raise ValueError(f"the e-mail {record['email']!r} is already the login of another portal user")
            cur = self.conn.execute(
                f"INSERT INTO users ({', '.join(map(q, record))}, email_key) VALUES ({', '.join('?' * (len(record) + 1))})",
                (*record.values(), key))
        return int(cur.lastrowid)

    # -- reads -------------------------------------------------------------------------------
    def get(self, resource: str, external_id: str) -> dict[str, Any] | None:
        _check_resource(resource)
        cols = FIELDS[resource]
        with self._lock:
            row = self.conn.execute(f"SELECT {', '.join(map(q, cols))} FROM {q(resource)} "
                                    "WHERE external_id = ? AND archived = 0", (external_id,)).fetchone()
        return dict(zip(cols, row)) if row else None

    def list_page(self, resource: str, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """One page of the list endpoint: {"items": [...], "next_cursor": str | None}."""
        _check_resource(resource)
        limit = LIMIT_DEFAULT if limit is None else limit
        if not isinstance(limit, int) or not LIMIT_MIN <= limit <= LIMIT_MAX:
            raise ValueError(f"limit must be an integer from {LIMIT_MIN} to {LIMIT_MAX}, got {limit!r}")
        after = _parse_cursor(cursor)
        rows = self._page(resource, after, limit + 1)
        items = [dict(zip(FIELDS[resource], r[1:])) for r in rows[:limit]]
        return {"items": items, "next_cursor": str(rows[limit - 1][0]) if len(rows) > limit else None}

    def iter_records(self, resource: str, page: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every active managed record of a resource, as the spec's fields, in insertion order."""
        _check_resource(resource)
        cols, after = FIELDS[resource], 0
        query = (f"SELECT {', '.join(map(q, cols))}, id FROM {q(resource)} "
                 f"WHERE id > ? AND {MANAGED} ORDER BY id LIMIT ?")
        while True:
            with self._lock:
                rows = self.conn.execute(query, (after, page)).fetchall()
            yield from map(dict, map(zip, repeat(cols), rows))     # zip stops before the trailing id
            if len(rows) < page:
                return
            after = rows[-1][-1]

    def count(self, resource: str) -> int:
        _check_resource(resource)
        with self._lock:
            return self.conn.execute(f"SELECT count(*) FROM {q(resource)} "
                                     f"WHERE {MANAGED}").fetchone()[0]

    def _page(self, resource: str, after: int, limit: int) -> list[tuple]:
        with self._lock:
            return self.conn.execute(
                f"SELECT id, {', '.join(map(q, FIELDS[resource]))} FROM {q(resource)} "
                f"WHERE id > ? AND {MANAGED} ORDER BY id LIMIT ?",
                (after, limit)).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def read_rows(path: Path | str, resource: str, only: Collection[str] | None = None) -> list[tuple]:
    """Every active managed record of a resource as a row (the spec's fields in order), or only
    those with the external_ids `only`, in insertion order; read through a read-only connection
    of its own: safe beside a PortalStore open on the same file, and in another process
    (engine.current reads the portal while a run extracts)."""
    conn = _read_only(path, resource)
    try:
        if only is None:
            return _all_rows(conn, resource).fetchall()
        wanted = list(only)
        if len(wanted) > _READ_ALL_FROM:
            keep = set(wanted)
            return [row for row in _all_rows(conn, resource) if row[0] in keep]
        cols = ", ".join(map(q, FIELDS[resource]))
        found: list[tuple] = []
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            part = wanted[start:start + _IDS_PER_QUERY]
            found += conn.execute(f"SELECT id, {cols} FROM {q(resource)} WHERE {MANAGED} "
                                  f"AND external_id IN ({', '.join('?' * len(part))})", part).fetchall()
        return [row[1:] for row in sorted(found, key=itemgetter(0))]
    finally:
        conn.close()


def read_row_batches(path: Path | str, resource: str, size: int = 20_000) -> Iterator[list[tuple]]:
    """read_rows(path, resource) in batches of `size` rows, so that a reader need not hold every
    row at once (engine.targets._dump_rows keeps only their packed form)."""
    conn = _read_only(path, resource)

    def batches() -> Iterator[list[tuple]]:
        try:
            cursor = _all_rows(conn, resource)
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            conn.close()
    return batches()


def _read_only(path: Path | str, resource: str) -> sqlite3.Connection:
    _check_resource(resource)
    return connect_read_only(Path(path))


def _all_rows(conn: sqlite3.Connection, resource: str) -> sqlite3.Cursor:
    """Every active managed record of the resource, in insertion order."""
    return conn.execute(f"SELECT {', '.join(map(q, FIELDS[resource]))} FROM {q(resource)} WHERE {MANAGED} ORDER BY id")


_IDS_PER_QUERY = 500
_READ_ALL_FROM = 50_000
"""Asked for more records than this, read_rows reads them all and keeps the wanted ones."""


def _check_resource(resource: str) -> None:
    if resource not in FIELDS:
        raise ValueError(f"unknown resource {resource!r}. Valid values are: {', '.join(contract.RESOURCES)}")


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
        raise ValueError(f"invalid cursor {cursor!r}: pass the next_cursor of the previous page")
    return int(cursor)
