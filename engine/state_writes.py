"""What the engine wrote, in the state store: the record it last wrote per external_id (table
`last_written`, for drift detection and for a record kept as last sent) and the writes sent
without an answer (table `pending_writes`), until a complete run settles them. Part of
engine.state.StateStore."""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import sqlalchemy as sa

from engine.state_rows import _CHUNK, _dump

EARLIER_KEPT = 8
"""How many values noted of a record before its last one a pending write keeps (`earlier`), the
most recent first. Each run killed after it noted a new value of a record still pending adds one
(a run whose write of it the portal refused, or that stopped before sending it, puts the pending
write back as it was: restore_pending); runs killed night after night while the ERP changes the
record would grow its row, and what the drift check reads. A portal holding a value noted more
than this many times before the last is reported as drift by the next run that updates the
record (and overwritten with the ERP's value, as it would be anyway)."""


class PendingWrite(NamedTuple):
    """A write sent to the portal without an answer (StateStore.remember_pending), with what runs
    before it sent of the record without an answer: the portal may hold any of them."""
    action: str                       # create if one of them was (a row of a version before the column: update)
    record: dict[str, Any]            # the last one noted
    earlier: tuple[dict[str, Any], ...] = ()

    @property
    def records(self) -> tuple[dict[str, Any], ...]:
        return self.record, *self.earlier


class WrittenRecords:
    """The reads and writes of what the engine wrote (engine.state.StateStore)."""

    def last_written(self, tenant: str, entity: str, external_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """external_id -> the record the engine last wrote, for those of `external_ids` it wrote."""
        if self._written.name in self._missing:
            return {}
        w = self._written.c
        ids = list(external_ids)
        out: dict[str, dict[str, Any]] = {}
        with self._failing(tenant, f"read what the engine last wrote ({entity}) from"), self.engine.connect() as c:
            for start in range(0, len(ids), 2000):
                rows = c.execute(sa.select(w.external_id, w.record).where(
                    w.tenant == tenant, w.entity == entity, w.external_id.in_(ids[start:start + 2000])))
                out.update((i, json.loads(rec)) for i, rec in rows)
        return out

    def wrote_any(self, tenant: str, entity: str) -> bool:
        """Whether the store holds a record the engine last wrote of this entity: a first run's
        plan need not ask for each of its creates (diff_entity, `recreated`)."""
        if self._written.name in self._missing:
            return False
        w = self._written.c
        with self._failing(tenant, f"read what the engine last wrote ({entity}) from"), self.engine.connect() as c:
            return c.execute(sa.select(w.external_id).where(w.tenant == tenant, w.entity == entity).limit(1)).first() \
                is not None

    def iter_written(self, tenant: str, entity: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._written.name in self._missing:
            return
        w = self._written.c
        with self._failing(tenant, f"read what the engine last wrote ({entity}) from"), self.engine.connect() as c:
            rows = c.execution_options(stream_results=True, yield_per=_CHUNK).execute(
                sa.select(w.external_id, w.record).where(w.tenant == tenant, w.entity == entity))
            for i, rec in rows:
                yield i, json.loads(rec)

    def remember_written(self, tenant: str, entity: str, records: Iterable[Mapping[str, Any]],
                         gone: Iterable[str] = ()) -> None:
        """Upsert the records just written (keyed by their external_id) and forget the archived ones."""
        table, w = self._written, self._written.c
        stmt = self._upsert(table, ["tenant", "entity", "external_id"], ["record"])
        n = 0
        doing = f"record what the run wrote ({entity}) in"
        with self._failing(tenant, doing), self.engine.begin() as c:
            chunk: list[dict[str, str]] = []
            for rec in records:
                chunk.append({"tenant": tenant, "entity": entity, "external_id": rec["external_id"], "record": _dump(rec)})
                if len(chunk) >= _CHUNK:
                    c.execute(stmt, chunk)
                    n, chunk = n + len(chunk), []
            if chunk:
                c.execute(stmt, chunk)
                n += len(chunk)
            gone = list(gone)
            for start in range(0, len(gone), 500):
                c.execute(table.delete().where(w.tenant == tenant, w.entity == entity,
                                               w.external_id.in_(gone[start:start + 500])))
        if n >= 10_000 and self.engine.dialect.name == "postgresql":
            # fresh statistics, or PostgreSQL's planner may scan a tenant's rows for each id lookup
            with self._failing(tenant, doing), self.engine.begin() as c:
                c.exec_driver_sql(f"ANALYZE {table.fullname}")

    def remember_pending(self, tenant: str, entity: str, records: Iterable[Mapping[str, Any]], *,
                         action: str = "update") -> dict[str, PendingWrite]:
        """Records sent to the portal whose answer never came (a run stopped with batches in flight,
        or killed after it noted its writes ahead): the portal may hold them or not. `action`: how
        they were sent (`create`, `update`). The next run's drift check takes such a value for one
        the engine wrote, not for an edit in the portal, and compares a record created so with what
        was sent; the next complete run settles them (engine.record.record) and forgets them
        (forget_pending). A record pending already keeps what was noted of it (`earlier`; a create
        stays one): a run killed after the portal wrote it, then another killed before it sent the
        record's next value, leave the portal holding the first, not the last noted. Of those it
        keeps the EARLIER_KEPT most recent. Returns the pending writes of these records as they
        were before (external_id -> PendingWrite, for those that had one), which restore_pending
        puts back where the portal refused the write noted now."""
        rows = {r["external_id"]: {"tenant": tenant, "entity": entity, "external_id": r["external_id"],
                                   "record": _dump(r), "action": action, "earlier": None} for r in records}
        if not rows:
            return {}
        q = self._pending.c
        with self._failing(tenant, f"record the writes in flight ({entity}) in"), self.engine.begin() as c:
            noted = set(c.execute(sa.select(q.external_id).where(q.tenant == tenant, q.entity == entity)).scalars())
            before = self._pending_rows(c, tenant, entity, noted.intersection(rows))
            for i, was in before.items():
                row = rows[i]
                values = dict.fromkeys(map(_dump, was.records))
                values.pop(row["record"], None)
                row["action"] = "create" if was.action == "create" else action
                row["earlier"] = _earlier(list(values))
            self._upsert_pending(c, list(rows.values()))
        return before

    def restore_pending(self, tenant: str, entity: str, writes: Mapping[str, PendingWrite]) -> None:
        """Put these pending writes back as they were (external_id -> PendingWrite, as
        remember_pending returned them): a run noted its write of each ahead, and the portal refused
        it or the run never sent it. The portal does not hold that value, so it is not one the drift
        check may take for the engine's own, nor one that pushes an earlier value out (EARLIER_KEPT)."""
        rows = [{"tenant": tenant, "entity": entity, "external_id": i, "record": _dump(w.record),
                 "action": w.action, "earlier": _earlier(list(map(_dump, w.earlier)))} for i, w in writes.items()]
        if rows:
            with self._failing(tenant, f"record the writes in flight ({entity}) in"), self.engine.begin() as c:
                self._upsert_pending(c, rows)

    def _upsert_pending(self, c: sa.Connection, rows: list[dict[str, Any]]) -> None:
        stmt = self._upsert(self._pending, ["tenant", "entity", "external_id"], ["record", "action", "earlier"])
        for start in range(0, len(rows), _CHUNK):
            c.execute(stmt, rows[start:start + _CHUNK])

    def pending_written(self, tenant: str, entity: str,
                        external_ids: Iterable[str] | None = None) -> dict[str, PendingWrite]:
        """external_id -> the write sent without an answer (remember_pending), for those of
        `external_ids` (None: all of the entity's: a run's batches in flight, or the writes a run
        noted ahead)."""
        if self._pending.name in self._missing:
            return {}
        with self._failing(tenant, f"read the writes in flight ({entity}) from"), self.engine.connect() as c:
            return self._pending_rows(c, tenant, entity, external_ids)

    def _pending_rows(self, c: sa.Connection, tenant: str, entity: str,
                      external_ids: Iterable[str] | None) -> dict[str, PendingWrite]:
        """pending_written on the connection `c`; the columns a store of an earlier version opened
        to read lacks (engine.state.ADDED_COLUMNS) read as NULL."""
        q = self._pending.c
        where = [q.tenant == tenant, q.entity == entity]
        columns = [q.external_id, q.record,
                   *(sa.null().label(n) if n in self._old_columns else q[n] for n in ("action", "earlier"))]
        if external_ids is None:
            chunks = [c.execute(sa.select(*columns).where(*where))]
        else:
            ids = list(external_ids)
            chunks = (c.execute(sa.select(*columns).where(*where, q.external_id.in_(ids[start:start + 2000])))
                      for start in range(0, len(ids), 2000))
        return {i: PendingWrite(action or "update", json.loads(rec), tuple(json.loads(earlier or "[]")))
                for rows in chunks for i, rec, action, earlier in rows}

    def pending_ids(self, tenant: str, entity: str) -> set[str]:
        """The external_ids of the entity's writes sent without an answer (remember_pending)."""
        if self._pending.name in self._missing:
            return set()
        q = self._pending.c
        with self._failing(tenant, f"read the writes in flight ({entity}) from"), self.engine.connect() as c:
            return set(c.execute(sa.select(q.external_id).where(q.tenant == tenant, q.entity == entity)).scalars())

    def pending_counts(self, tenants: Iterable[str]) -> dict[str, int]:
        """tenant -> how many writes its runs left pending (remember_pending), for those of `tenants`
        that have any: a count per tenant, one query per 500 tenants, no record read (`idwell-sync
        status`)."""
        if self._pending.name in self._missing:
            return {}
        q = self._pending.c
        names = list(dict.fromkeys(tenants))
        out: dict[str, int] = {}
        with self._failing(None, "count the writes in flight in"), self.engine.connect() as c:
            for start in range(0, len(names), 500):
                out.update(c.execute(sa.select(q.tenant, sa.func.count()).where(q.tenant.in_(names[start:start + 500]))
                                     .group_by(q.tenant)).all())
        return out

    def forget_pending(self, tenant: str, entity: str, external_ids: Iterable[str] | None = None) -> None:
        """Forget the entity's pending writes (remember_pending): all, or those of `external_ids`."""
        q = self._pending.c
        where = [q.tenant == tenant, q.entity == entity]
        ids = None if external_ids is None else list(external_ids)
        if ids == []:
            return
        with self._failing(tenant, f"forget the writes in flight ({entity}) in"), self.engine.begin() as c:
            if ids is None:
                c.execute(self._pending.delete().where(*where))
            for start in range(0, len(ids or ()), 500):
                c.execute(self._pending.delete().where(*where, q.external_id.in_(ids[start:start + 500])))


def _earlier(values: list[str]) -> str | None:
    """pending_writes.earlier: the EARLIER_KEPT first of these values (JSON texts, the most recent
    first) as one JSON list; None for none."""
    return "[" + ",".join(values[:EARLIER_KEPT]) + "]" if values else None
