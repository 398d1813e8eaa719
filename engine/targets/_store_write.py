"""Writes to the local portal store: a sequence of PUTs and DELETEs in one transaction.

The import API's rules are checked for each operation in order, exactly as a server handling the
requests one after another would, but without a query per operation: the rows, e-mail holders and
dependent counts that the operations can touch are read in a few set queries up front, kept in an
overlay that each accepted operation updates, and the final state of every touched record is
written with one executemany per resource at the end.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

from engine.contract.rules import check_record
from engine import contract
from engine.contract import email_key
from engine.plural import counted
from engine.targets._store_schema import CHILDREN, DEFAULTS, FIELDS, ID_MAX, ID_MIN, REFERENCES, SINGULAR, q, rollback


class Op(NamedTuple):
    resource: str
    op: str                          # put | delete
    external_id: str
    record: Any = None               # put: the full record


@dataclass(frozen=True, slots=True)
class Result:
    """What the import API would answer to one operation."""
    status: int                      # 200 replaced, 201 created, 204 archived, 400, 404, 409
    code: str | None = None
    message: str | None = None
    field: str | None = None
    conflicting_external_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def error(self) -> dict[str, str] | None:
        if self.ok:
            return None
        out = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.conflicting_external_id is not None:
            out["conflicting_external_id"] = self.conflicting_external_id
        return out


_CREATED, _REPLACED, _ARCHIVED = Result(201), Result(200), Result(204)
_INT_MIN, _INT_MAX = -2**63, 2**63 - 1
"""The whole numbers the store (an SQLite INTEGER) holds: a larger one is refused as invalid, one
operation, not a failed transaction (a server error for the whole batch)."""
_NUMBERS: dict[str, tuple[int, ...]] = {
    r: tuple(i for i, f in enumerate(FIELDS[r]) if {"number", "integer"} & set(
        [t] if isinstance(t := contract.record_schema(r)["properties"][f].get("type"), str) else t or ()))
    for r in FIELDS}
"""resource -> the positions of its fields that may hold a number."""


@dataclass(slots=True)
class _Row:
    active: bool
    refs: tuple                      # the values of REFERENCES[resource], in order
    email_key: str | None = None


def _in(column: str) -> str:
    return f"{q(column)} IN (SELECT value FROM json_each(?))"


class _Batch:
    def __init__(self, conn: sqlite3.Connection, ops: Sequence[Op], check_texts: bool = False):
        self.conn = conn
        self.check_texts = check_texts               # refuse texts that are not UTF-8 (only after one failed)
        self.rows: dict[tuple[str, str], _Row] = {}
        self.holders: dict[str, set] = {}            # email_key -> {external_id, or -id of a manual user}
        self.deps: dict[tuple[str, str], int] = {}   # (resource, external_id) -> active children
        self.final: dict[tuple[str, str], list] = {}  # (resource, external_id) -> [values|None, archived, email_key]
        self._prefetch(ops)

    def _prefetch(self, ops: Sequence[Op]) -> None:
        ids: dict[str, set[str]] = {r: set() for r in FIELDS}
        emails: set[str] = set()
        parents: dict[str, set[str]] = {r: set() for r in FIELDS}
        for o in ops:
            ids[o.resource].add(o.external_id)
            if o.op == "put" and isinstance(o.record, dict):
                for f, parent in REFERENCES[o.resource]:
                    if isinstance(v := o.record.get(f), str):
                        ids[parent].add(v)
                if o.resource == "users" and (k := email_key(o.record.get("email"))):
                    emails.add(k)
            elif o.op == "delete" and CHILDREN[o.resource]:
                parents[o.resource].add(o.external_id)
        for resource, wanted in ids.items():
            if not wanted:
                continue
            refs = [f for f, _ in REFERENCES[resource]]
            cols = ", ".join(["external_id", "archived", *map(q, refs)] + (["email_key"] if resource == "users" else []))
            for row in self.conn.execute(f"SELECT {cols} FROM {q(resource)} WHERE {_in('external_id')}",
                                         (json.dumps(list(wanted)),)):
                n = len(refs)
                self.rows[(resource, row[0])] = _Row(not row[1], tuple(row[2:2 + n]),
                                                     row[2 + n] if resource == "users" else None)
        if emails:
            self.holders = {k: set() for k in emails}
            for key, ext, rowid in self.conn.execute(
                    f"SELECT email_key, external_id, id FROM users WHERE archived = 0 AND {_in('email_key')}",
                    (json.dumps(list(emails)),)):
                self.holders[key].add(ext if ext is not None else -rowid)
        for parent, wanted in parents.items():
            if not wanted:
                continue
            self.deps.update({(parent, i): 0 for i in wanted})
            for child, field in CHILDREN[parent]:
                for ext, n in self.conn.execute(
                        f"SELECT {q(field)}, count(*) FROM {q(child)} WHERE archived = 0 AND {_in(field)} "
                        f"GROUP BY {q(field)}", (json.dumps(list(wanted)),)):
                    self.deps[(parent, ext)] += n

    # -- the overlay -------------------------------------------------------------------------
    def _attach(self, resource: str, row: _Row, ext: str, sign: int) -> None:
        """Count (sign=1) or uncount (sign=-1) an active row as a child and as an e-mail holder."""
        for (_, parent), value in zip(REFERENCES[resource], row.refs):
            if (parent, value) in self.deps:
                self.deps[(parent, value)] += sign
        if row.email_key is not None and row.email_key in self.holders:
            (self.holders[row.email_key].add if sign > 0 else self.holders[row.email_key].discard)(ext)

    def put(self, resource: str, ext: str, record: Any) -> Result:
        name = f"{resource} {ext!r}"
        violations = check_record(resource, record)
        if not violations and record.get("external_id") != ext:
            return Result(400, "invalid", f"{name}: the record's external_id {record.get('external_id')!r} "
                                          "differs from the one addressed", "external_id")
        if not violations and not ID_MIN <= len(ext) <= ID_MAX:
            shown = repr(ext) if len(ext) <= 40 else repr(ext[:40]) + "..."
            return Result(400, "invalid", f"{resource} {shown}: an external_id has {ID_MIN} to {ID_MAX} "
                                          f"characters, this one {len(ext)}", "external_id")
        if violations:
            v = violations[0]
            more = f" (and {counted(len(violations) - 1, 'more problem')})" if len(violations) > 1 else ""
            return Result(400, "invalid", f"{name}: {v.message}{more}", v.field or None)
        if self.check_texts and (bad := contract.not_utf8(record)) is not None:
            return Result(400, "invalid", f"{resource} {ext!r}: {bad!r} holds a text that is not valid Unicode "
                                          "(a lone surrogate)", bad)
        fields = FIELDS[resource]
        if len(record) == len(fields):               # no unknown field, so every field is present
            values = tuple(map(record.__getitem__, fields))
        else:
            defaults = DEFAULTS[resource]
            values = tuple(record[f] if f in record else defaults.get(f) for f in fields)
        for at in _NUMBERS[resource]:
            if type(v := values[at]) is int and not _INT_MIN <= v <= _INT_MAX:
                return Result(400, "invalid", f"{name}: {fields[at]!r} must be from {_INT_MIN} to {_INT_MAX}, the "
                                              f"portal's largest whole numbers; got {v}", fields[at])
        refs = []
        for f, parent in REFERENCES[resource]:
            value = record.get(f)
            target = self.rows.get((parent, value)) if value is not None else None
            if value is not None and not (target and target.active):
                return Result(409, "unknown_reference",
                              f"{name}: {f} {value!r} is not an active {SINGULAR[parent]}: write the "
                              f"{SINGULAR[parent]} first", f)
            refs.append(value)
        key = email_key(record.get("email")) if resource == "users" else None
        if key is not None:
            others = self.holders.get(key, set()) - {ext}
            if others:
                other = next(iter(others))
                holder = f"users {other!r}" if isinstance(other, str) else "a user created by hand in the portal"
                return Result(409, "email_taken", f"{name}: the e-mail {record['email']!r} is already the login of {holder}",
                              "email", other if isinstance(other, str) else None)
        old = self.rows.get((resource, ext))
        replaced = old is not None and old.active
        if replaced:
            self._attach(resource, old, ext, -1)
        new = self.rows[(resource, ext)] = _Row(True, tuple(refs), key)
        if refs or key is not None:
            self._attach(resource, new, ext, +1)
        self.final[(resource, ext)] = [values, 0, key]
        return _REPLACED if replaced else _CREATED

    def delete(self, resource: str, ext: str) -> Result:
        if not ID_MIN <= len(ext) <= ID_MAX:          # as DELETE /{resource}/{external_id} answers it
            shown = repr(ext) if len(ext) <= 40 else repr(ext[:40]) + "..."
            return Result(400, "invalid", f"{resource} {shown}: an external_id has {ID_MIN} to {ID_MAX} "
                                          f"characters, this one {len(ext)}", "external_id")
        name = f"{resource} {ext!r}"
        row = self.rows.get((resource, ext))
        if row is None:
            return Result(404, "not_found", f"{name} does not exist")
        if not row.active:
            return _ARCHIVED                       # already archived: deleting again changes nothing
        n = self.deps.get((resource, ext), 0)
        if n:
            kinds = " or ".join(SINGULAR[child] if n == 1 else child for child, _ in CHILDREN[resource])
            return Result(409, "has_dependents", f"{name} still has {n} active {kinds}: delete them first")
        self._attach(resource, row, ext, -1)
        row.active = False
        pending = self.final.setdefault((resource, ext), [None, 1, row.email_key])
        pending[1] = 1
        return _ARCHIVED

    def flush(self) -> None:
        by_resource: dict[str, list] = {}
        for (resource, ext), item in self.final.items():
            by_resource.setdefault(resource, []).append((ext, item))
        for resource, items in by_resource.items():
            cols = list(FIELDS[resource]) + ["archived"] + (["email_key"] if resource == "users" else [])
            updates = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in cols if c != "external_id")
            upsert = (f"INSERT INTO {q(resource)} ({', '.join(map(q, cols))}) VALUES ({', '.join('?' * len(cols))}) "
                      f"ON CONFLICT (external_id) DO UPDATE SET {updates}")
            users = resource == "users"
            self.conn.executemany(upsert, [
                (*values, archived, key) if users else (*values, archived)
                for _, (values, archived, key) in items if values is not None])
            self.conn.executemany(f"UPDATE {q(resource)} SET archived = 1 WHERE external_id = ?",
                                  [(ext,) for ext, (rec, _, _) in items if rec is None])


def write(conn: sqlite3.Connection, ops: Sequence[Op]) -> list[Result]:
    """Apply `ops` in order in one transaction; one Result per operation."""
    try:
        return _write(conn, ops, False)
    except UnicodeEncodeError:       # a text SQLite cannot store (a lone surrogate): refuse its operation alone
        return _write(conn, ops, True)


def _write(conn: sqlite3.Connection, ops: Sequence[Op], check_texts: bool) -> list[Result]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        batch = _Batch(conn, ops, check_texts)
        results = [batch.put(o.resource, o.external_id, o.record) if o.op == "put"
                   else batch.delete(o.resource, o.external_id) for o in ops]
        batch.flush()
        conn.execute("COMMIT")
    except BaseException as exc:
        rollback(conn, exc)
        raise
    return results
