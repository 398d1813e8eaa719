"""The run history in the state store (table `runs`): a row per run, opened when it starts and
closed when it ends, a closed row for a run refused by the lock; read by `history`, `status`
and the completeness check (last_extracted). Part of engine.state.StateStore."""
from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import sqlalchemy as sa

from engine.state_rows import _HOST, _clip, _now, _shown, _utc

SUCCESSFUL = ("ok", "rejected")       # runs whose extract is a baseline for the completeness check
_ACTIONS = ("create", "update", "delete", "unchanged", "held", "rejected")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    tenant: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    allow_deletes: bool
    counts: dict[str, dict[str, int]] | None
    findings: dict[str, int] | None
    extracted: dict[str, int] | None
    summary: dict[str, Any] | None
    message: str | None


class RunHistory:
    """The run history's reads and writes (engine.state.StateStore)."""

    def start_run(self, tenant: str, *, allow_deletes: bool = False) -> str:
        run_id = uuid.uuid4().hex
        with self._failing(tenant, "record the start of a run in"), self.engine.begin() as c:
            c.execute(self._runs.insert().values(run_id=run_id, tenant=tenant, status="running", started_at=_now(),
                                                allow_deletes=allow_deletes, host=_HOST, pid=os.getpid()))
        self._run_tenants[run_id] = tenant
        return run_id

    def record_locked(self, tenant: str, message: str, *, allow_deletes: bool = False) -> None:
        """A run that did not start because another run of the tenant held its lock: a closed row of
        its own (status `locked`), so that `status` and `history` show the night's run was refused,
        not missed."""
        now = _now()
        with self._failing(tenant, "record a run refused by the run lock in"), self.engine.begin() as c:
            c.execute(self._runs.insert().values(run_id=uuid.uuid4().hex, tenant=tenant, status="locked",
                                                started_at=now, finished_at=now, allow_deletes=allow_deletes,
                                                host=_HOST, pid=os.getpid(), message=_clip(message)))

    def finish_run(self, run_id: str, *, status: str, summary: Mapping[str, Any] | None = None,
                   extracted: Mapping[str, int] | None = None, counts: Mapping[str, Mapping[str, int]] | None = None,
                   findings: Mapping[str, int] | None = None, message: str | None = None) -> None:
        """Close a run. counts and findings default to those of the run summary (engine.report);
        `message` says why a run failed (one line, at most MESSAGE_LIMIT characters are kept). The
        summary is kept without its `finding_codes`: the severity and advice of each code are the
        catalogue's and the tenant file's, not the run's, and would add some kilobytes to every run."""
        if summary is not None:
            summary = {k: v for k, v in summary.items() if k != "finding_codes"}
        if counts is None and summary is not None:
            counts = {e: {a: c.get(a, 0) for a in _ACTIONS} for e, c in summary.get("entities", {}).items()}
            for e, found in (summary.get("settled") or {}).items():      # writes earlier runs left unconfirmed
                counts.setdefault(e, {}).update({f"settled_{k}": n for k, n in found.items()})
        if findings is None and summary is not None:
            findings = summary.get("findings")
        with self._failing(self._run_tenants.get(run_id), f"record the end of run {run_id} in"), \
                self.engine.begin() as c:
            done = c.execute(self._runs.update().where(self._runs.c.run_id == run_id).values(
                status=status, finished_at=_now(), counts=counts, findings=findings,
                extracted=dict(extracted) if extracted is not None else None,
                summary=dict(summary) if summary is not None else None,
                message=_clip(message) if message is not None else None))
        self._run_tenants.pop(run_id, None)
        if done.rowcount != 1:
            raise KeyError(f"run {run_id!r} is not in the state store {self.where}")

    def runs(self, tenant: str, limit: int = 20) -> list[RunRecord]:
        """The tenant's latest runs, newest first."""
        if self._runs.name in self._missing:
            return []
        r = self._runs.c
        with self._failing(tenant, "read the run history from"), self.engine.connect() as c:
            rows = c.execute(sa.select(self._runs).where(r.tenant == tenant)
                             .order_by(r.started_at.desc(), r.run_id).limit(limit)).mappings().all()
        return [self._run(row) for row in rows]

    def last_successful_run(self, tenant: str) -> RunRecord | None:
        if self._runs.name in self._missing:
            return None
        r = self._runs.c
        with self._failing(tenant, "read the last successful run from"), self.engine.connect() as c:
            row = c.execute(sa.select(self._runs).where(r.tenant == tenant, r.status.in_(SUCCESSFUL))
                            .order_by(r.finished_at.desc()).limit(1)).mappings().first()
        return self._run(row) if row else None

    def last_extracted(self, tenant: str) -> dict[str, int]:
        """Rows extracted per entity by the last successful run ({} before the first one)."""
        last = self.last_successful_run(tenant)
        return dict(last.extracted or {}) if last else {}

    def last_runs(self, tenants: Iterable[str], *, skip: Iterable[str] = ()) -> dict[str, RunRecord]:
        """Each tenant's latest run (the one `runs` lists first), for those of `tenants` that have
        any: one query per 500 tenants (`idwell-sync status`). `skip`: statuses passed over (e.g.
        `locked`: the latest run that was not refused by the run lock)."""
        if self._runs.name in self._missing:
            return {}
        r = self._runs.c
        names = list(dict.fromkeys(tenants))
        skipped = list(skip)
        out: dict[str, RunRecord] = {}
        with self._failing(None, "read the run history from"), self.engine.connect() as c:
            for start in range(0, len(names), 500):
                newest = sa.func.row_number().over(partition_by=r.tenant, order_by=(r.started_at.desc(), r.run_id))
                ranked = sa.select(self._runs, newest.label("newest")) \
                    .where(r.tenant.in_(names[start:start + 500]), r.status.not_in(skipped)).subquery()
                rows = c.execute(sa.select(*(ranked.c[col.name] for col in self._runs.columns))
                                 .where(ranked.c.newest == 1)).mappings().all()
                out.update((row["tenant"], self._run(row)) for row in rows)
        return out

    @staticmethod
    def _run(row: Mapping[str, Any]) -> RunRecord:
        return RunRecord(row["run_id"], row["tenant"], row["status"], _utc(row["started_at"]),
                         _utc(row["finished_at"]), bool(row["allow_deletes"]), row["counts"], row["findings"],
                         row["extracted"], row["summary"], _shown(row["message"]))
