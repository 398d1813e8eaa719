"""The per-tenant run lock in the state store (table `locks`): taken for a run, refused while
another live run holds it, taken over when stale; the runs left 'running' are closed as failed
when it is taken. Part of engine.state.StateStore."""
from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine._stop import whole
from engine.errors import LockedError, StateError
from engine.plural import counted
from engine.state_rows import _HOST, _now, _utc

log = logging.getLogger("engine.state")


@dataclass(frozen=True)
class LockInfo:
    tenant: str
    host: str
    pid: int
    since: dt.datetime
    token: str
    took_over: str | None = None      # why a stale lock was taken over, if it was


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _span(td: dt.timedelta) -> str:
    seconds = int(td.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 and seconds else f"{seconds // 60} min"


def _holder(lock: LockInfo) -> str:
    return f"host {lock.host!r}, pid {lock.pid}, since {lock.since:%Y-%m-%d %H:%M:%S} UTC"


class RunLock:
    """The run lock (engine.state.StateStore)."""

    @contextmanager
    def lock(self, tenant: str) -> Iterator[LockInfo]:
        """Hold the tenant's run lock: raises LockedError while another live run holds it.

        A lock is stale, and taken over with a warning, when its holder ran on this host and its
        process is gone, or when it is older than `lock_max_age` (a crashed run on another host).
        Runs of the tenant still 'running' in the history when the lock is taken (killed, or
        their end could not be recorded) are closed as failed, saying so.
        """
        info = None
        try:
            with whole():                      # a stop as the lock is written: released below, not left behind
                info = self._acquire(tenant)
            yield info
        except BaseException:
            if info is not None:
                try:
                    self._release(info)
                except StateError as exc:      # the run's own error is what it reports
                    log.warning("%s", exc)
            raise
        self._release(info)

    def locks(self, tenants: Iterable[str]) -> dict[str, LockInfo]:
        """The run locks held now, of those of `tenants` that have one (stale ones too: `stale`)."""
        if self._locks.name in self._missing:
            return {}
        lk = self._locks.c
        names = list(dict.fromkeys(tenants))
        out: dict[str, LockInfo] = {}
        with self._failing(None, "read the run locks from"), self.engine.connect() as c:
            for start in range(0, len(names), 500):
                rows = c.execute(sa.select(self._locks).where(lk.tenant.in_(names[start:start + 500]))).mappings()
                out.update((row["tenant"], self._lock_info(row)) for row in rows)
        return out

    def stale(self, lock: LockInfo) -> str | None:
        """Why the next run of the tenant takes `lock` over (its process on this host is gone, or
        it is older than lock_max_age: a crashed run on another host); None while its run may be
        under way."""
        if lock.host == _HOST and not _pid_alive(lock.pid):
            return f"its process is gone ({_holder(lock)})"
        if dt.datetime.now(dt.timezone.utc) - lock.since > self.lock_max_age:
            return f"it is older than the maximum age of {_span(self.lock_max_age)} ({_holder(lock)})"
        return None

    @staticmethod
    def _lock_info(row: Mapping[str, Any]) -> LockInfo:
        return LockInfo(row["tenant"], row["host"], row["pid"], _utc(row["since"]), row["token"])

    def _release(self, info: LockInfo) -> None:
        with self._failing(info.tenant, "release the run lock in"), self.engine.begin() as c:
            left = c.execute(self._locks.delete().where(self._locks.c.tenant == info.tenant,
                                                         self._locks.c.token == info.token))
        if left.rowcount != 1:
            log.warning("tenant '%s': the run lock was taken over by another run while this one held it", info.tenant)

    def _acquire(self, tenant: str) -> LockInfo:
        with self._failing(tenant, "take the run lock in"):
            return self._take(tenant)

    def _take(self, tenant: str) -> LockInfo:
        lk = self._locks.c
        for _ in range(5):
            mine = {"tenant": tenant, "host": _HOST, "pid": os.getpid(), "since": _now(), "token": uuid.uuid4().hex}
            try:
                with self.engine.begin() as c:
                    c.execute(self._locks.insert().values(**mine))
                    ended = self._close_unfinished(c, tenant, mine["since"], None)
                if ended:
                    log.warning("tenant '%s': %s", tenant, ended)
                return LockInfo(tenant, _HOST, mine["pid"], _utc(mine["since"]), mine["token"])
            except IntegrityError:
                pass
            with self.engine.connect() as c:
                holder = c.execute(sa.select(self._locks).where(lk.tenant == tenant)).mappings().first()
            if holder is None:
                continue                                # released in between: try again
            held = self._lock_info(holder)
            why = self.stale(held)
            if why is None:
                age = dt.datetime.now(dt.timezone.utc) - held.since
                raise LockedError(
                    f"tenant '{tenant}' is locked by another run: {_holder(held)} ({_span(age)} ago)",
                    hint=f"wait for that run to finish. A lock whose process died on another host is taken over "
                         f"after {_span(self.lock_max_age)}; the lock is the row of tenant '{tenant}' in table "
                         f"{self._locks.fullname} of {self.where}")
            with self.engine.begin() as c:
                taken = c.execute(self._locks.update().where(lk.tenant == tenant, lk.token == holder["token"])
                                  .values(**{k: v for k, v in mine.items() if k != "tenant"}))
                ended = self._close_unfinished(c, tenant, mine["since"], holder) if taken.rowcount == 1 else ""
            if taken.rowcount == 1:
                log.warning("tenant '%s': took over a stale run lock: %s%s", tenant, why, f"; {ended}" if ended else "")
                return LockInfo(tenant, _HOST, mine["pid"], _utc(mine["since"]), mine["token"], took_over=why)
        raise LockedError(f"tenant '{tenant}': could not take the run lock, other runs keep taking it",
                          hint="check the scheduler: several runs of this tenant are starting at once")

    def _close_unfinished(self, c: sa.Connection, tenant: str, now: dt.datetime,
                          stale: Mapping[str, Any] | None) -> str:
        """Inside the transaction that takes the tenant's lock: close the tenant's runs still
        'running' as failed (no run of the tenant can be under way without the lock), saying
        why, and return what was closed ("" if nothing was). `stale`: the lock row taken over."""
        r = self._runs.c
        rows = c.execute(sa.select(r.run_id, r.host, r.pid, r.started_at)
                         .where(r.tenant == tenant, r.status == "running", r.started_at <= now)).all()
        at = f"{_utc(now):%Y-%m-%d %H:%M:%S} UTC"
        for run_id, host, pid, _ in rows:
            gone = host == _HOST and pid is not None and not _pid_alive(pid)
            who = f"process {pid} on {host}" + (" gone" if gone else "")
            if stale is None or (stale["host"], stale["pid"]) != (host, pid):
                why = f"({who}; its end was never recorded, found when the lock was taken at {at})"
            elif gone:
                why = f"({who}; its lock was taken over at {at})"
            else:
                why = (f"within the lock's maximum age of {_span(self.lock_max_age)} "
                       f"({who}; its lock was taken over at {at})")
            c.execute(self._runs.update().where(r.run_id == run_id, r.status == "running").values(
                status="failed", message=f"ended without finishing {why}"))   # its end is not known
        if not rows:
            return ""
        starts = ", ".join(f"{_utc(started):%Y-%m-%d %H:%M:%S}" for *_, started in rows)
        return f"{counted(len(rows), 'run')} that ended without finishing (started {starts} UTC) recorded as failed"
