"""One tenant, one run, top to bottom:

    load -> extract -> map -> filter -> normalise -> resolve -> dedup -> plan -> apply -> record -> report

Only extraction (engine.sources) and apply (engine.targets) do I/O, plus the state store at the
two ends; every step between is a pure function over records. `plan` is this path stopping
before apply. This module strings the steps together (prepare: up to the plan; apply;
run_tenant: the whole run); each step is a module of its own: engine.extract (extract, map,
filter), engine.transform (normalise, resolve, dedup; engine.parallel_prepare for both with a
second process), engine.plan, engine.record and engine.report.
"""
from __future__ import annotations

import datetime as dt
import gc
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import compress
from operator import attrgetter
from typing import Any, Iterator

from engine.config.model import ENTITIES, Tenant
from engine import parallel
from engine._stop import whole
from engine.current import CurrentState, reader_command
from engine.entity_data import EntityData
from engine.extract import extract
from engine.errors import DedupFailed
from engine.findings import Finding
from engine.parallel_prepare import _extract_transform_parallel
from engine.plan import Plan, build_plan, diff_entity, email_releases, guard_deletes, keep_held_logins
from engine.progress import Progress
from engine.record import _accepted, note_writes_ahead, pending_before, record
from engine.redact import redact
from engine.references import tenant_today
from engine.targets.base import Change, Outcome, retries_of
from engine.transform import transform

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything a run knows before it writes."""
    tenant: Tenant
    run_date: dt.date
    data: dict[str, EntityData]
    plan: Plan
    findings: list[Finding]
    winners: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    source_retries: dict | None = None      # the source's requests sent again (ApiExtractor.retries); None: none
    source_recovered: dict | None = None    # entity -> records only a second reading of its pages had (ApiExtractor)

    @property
    def extracted(self) -> dict[str, int]:
        return {e: d.extracted for e, d in self.data.items()}


@dataclass
class Applied:
    outcomes: list[Outcome]
    rejected: list[Outcome]


@contextmanager
def _without_cyclic_gc():
    """A large tenant's run builds millions of small objects that never form reference cycles
    (records, findings, planned changes). CPython's cyclic collector walks all of them again
    each time the heap has grown by a quarter: a third of a size-L plan's CPU, for nothing.
    Reference counting still frees everything. When the step ends, its objects are moved out of
    the collector's sight (gc.freeze, which is cheap), or its first collection would walk all of
    them once more; the next step gives them back (gc.unfreeze), so that a cycle left behind by
    a run is still collected in a long-lived process."""
    enabled = gc.isenabled()
    gc.disable()
    gc.unfreeze()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


@_without_cyclic_gc()
def prepare(tenant: Tenant, target, state, *, run_date: dt.date | None = None, allow_deletes: bool = False,
            progress: Progress | None = None) -> Prepared:
    """Everything up to and including the plan. Writes nothing anywhere."""
    progress = progress or Progress(enabled=False)
    run_date = run_date or tenant_today(tenant)
    findings: list[Finding] = []
    timings: dict[str, float] = {}
    t = time.perf_counter()
    # first the child process (engine.parallel), then the reader of the portal, which may be a thread.
    # Where the portal comes packed, the records are packed as they become final, on both cores
    pack = reader_command(target) is not None
    worker = parallel.UsersWorker.start(tenant, run_date, pack=pack) if parallel.possible(tenant) else None
    try:
        # read while the source is extracted; with the second process a reader process reads only
        # once the users are left (until then both cores extract), at a lower priority
        portal = CurrentState(target, process_later=worker is not None)
        try:
            return _prepare(tenant, target, state, portal, worker, run_date, allow_deletes, progress, findings,
                            timings, t, pack)
        except DedupFailed as exc:
            # what the run found up to the stop, a row per person sharing an address among it: the
            # data-quality report the property manager fixes the ERP by (engine.commands._common.stopped_report)
            _name_mapped_fields(tenant, findings)
            exc.findings = findings
            raise
        finally:
            portal.close()
    finally:
        if worker is not None:
            worker.close()


def _prepare(tenant: Tenant, target, state, portal: CurrentState, worker, run_date: dt.date, allow_deletes: bool,
             progress: Progress, findings: list[Finding], timings: dict[str, float], t: float, pack: bool) -> Prepared:
    t0 = t
    def last_sent(entity: str, ids: list[str]) -> dict[str, dict]:
        """What the engine last wrote of these records (none without a state store)."""
        return state.last_written(tenant.id, entity, ids) if state else {}

    def pending_sent(entity: str, ids: list[str]) -> dict[str, dict]:
        """What the engine sent of these records without an answer (StateStore.remember_pending)."""
        return state.pending_written(tenant.id, entity, ids) if state else {}

    def holders(ids: list[str]) -> dict[str, str | None]:
        """The e-mail each user holds in the portal, as the engine last wrote it."""
        return {i: (r.get("email") or "").strip().lower() or None for i, r in last_sent("users", ids).items()}
    previous_winners = state.winners(tenant.id) if state else {}
    source_retries = source_recovered = None
    if worker is None:
        data, source_retries, source_recovered = extract(tenant, run_date, findings, progress)
        timings["extract"] = time.perf_counter() - t
        t = time.perf_counter()
        progress.start("normalise, resolve, dedup")
        winners = transform(tenant, data, run_date, previous_winners, findings, holders if state else None,
                            last_sent if state else None)
        timings["transform"] = time.perf_counter() - t
    else:     # sets both timings: normalising overlaps extracting there; SQL sources only, which retry nothing
        data, winners = _extract_transform_parallel(tenant, run_date, worker, findings, progress, previous_winners,
                                                    holders if state else None, timings, portal.start, pack,
                                                    last_sent if state else None)
    progress.advance(sum(len(d.records) for d in data.values()))
    progress.finish("records kept")
    _name_mapped_fields(tenant, findings)
    findings.extend(_filters_that_exclude_all(data))
    t = time.perf_counter()
    upserts: dict[str, list[Change]] = {}
    deletes: dict[str, list[Change]] = {}
    unchanged: dict[str, int] = {}
    drift: dict[str, Counter] = {}
    managed: dict[str, int] = {}
    releases: list[Change] = []
    unsent: list[Change] = []
    for entity in ENTITIES:
        progress.start(f"read portal {entity}")
        current = portal.read(entity)
        progress.advance(len(current))
        progress.finish()
        managed[entity] = len(current)
        upserts[entity], deletes[entity], unchanged[entity], drift[entity] = \
            diff_entity(entity, data[entity].records, current, partial(last_sent, entity), findings,
                        data[entity].packed_rows, partial(pending_sent, entity),
                        recreated=state is not None and state.wrote_any(tenant.id, entity))
        if entity == "users":
            releases = email_releases(data[entity].records, current)
        del current                 # one entity's portal records in memory at a time
    previous = state.last_extracted(tenant.id) if state else {}
    held = guard_deletes(deletes, managed, {e: d.extracted for e, d in data.items()}, previous,
                         tenant.deletion, allow_deletes)
    if held and deletes["users"]:       # a user whose archiving is held keeps its login tonight
        upserts["users"], releases, unsent = keep_held_logins(upserts["users"], releases, deletes["users"], winners,
                                                              findings)
        unchanged["users"] += len(unsent)
    plan = build_plan(tenant.id, upserts, deletes, unchanged, drift, held, releases, unsent)
    for reason in held:
        findings.append(Finding("deletes_held", reason.split(":")[0], "-", reason))
    timings["plan"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return Prepared(tenant, run_date, data, plan, findings, winners, timings, source_retries, source_recovered)


def _filters_that_exclude_all(data: dict[str, EntityData]) -> list[Finding]:
    """A warning where the filters excluded every row of an entity: almost always a value written
    so that it never matches (not_in: [01] is text), and the entity then reaches the portal empty,
    which the deletion guard notices only where the portal has records already."""
    return [Finding("filter_excludes_all", entity, "-",
                    (f"the filters excluded the only row of {entity} (" if d.extracted == 1 else
                     f"the filters excluded all {d.extracted:,} rows of {entity} (")
                    + ", ".join(f"{name} {n:,}" for name, n in d.filtered.most_common())
                    + f"): nothing of {entity} reaches the portal")
            for entity, d in data.items() if d.extracted and sum(d.filtered.values()) == d.extracted]


_MAPPED_FIELD_CODES = frozenset({"invalid_record", "name_too_long"})


def _name_mapped_fields(tenant: Tenant, findings: list[Finding]) -> None:
    """A record refused for a portal field says how the mapping makes that field from the ERP's
    columns ("role = map_values(Art, 'roles')"): the field's value alone (got None) does not tell
    the property manager which column of the ERP to correct."""
    codes = map(attrgetter("code"), findings)            # a few among hundreds of thousands: looked for in C
    for i in compress(range(len(findings)), map(_MAPPED_FIELD_CODES.__contains__, codes)):
        f = findings[i]
        if f.field and f.entity in tenant.entities:
            expr = tenant.entities[f.entity].fields.get(f.field)
            if expr is not None and expr.source != f.field:
                findings[i] = Finding(f.code, f.entity, f.key, f"{f.message} ({f.field} = {expr.source})", f.field)


@_without_cyclic_gc()
def apply(prepared: Prepared, target, progress: Progress | None = None) -> Applied:
    """Apply the plan; refused writes are retried once after the deletes (an e-mail or reference
    may have been freed by them), then reported as rejected records."""
    progress = progress or Progress(enabled=False)
    changes = prepared.plan.changes
    progress.start("apply", total=len(changes))
    outcomes = target.apply(changes, progress.advance)
    try:                                    # from here on, a failure or a stop carries what was written
        retry = [o.change for o in outcomes if not o.ok and o.change.action != "delete"
                 and o.code in ("email_taken", "unknown_reference")]
        if retry:
            retried = target.apply(retry)
            again = {o.change.external_id + o.change.entity: o for o in retried}
            outcomes = [again.get(o.change.external_id + o.change.entity, o) for o in outcomes]
    except BaseException as exc:
        exc.partial_outcomes = outcomes + list(getattr(exc, "partial_outcomes", None) or ())
        raise
    progress.finish()
    # a delete the portal answers with not_found has the desired result: the record is gone
    outcomes = [Outcome(o.change, True, o.status, o.code, o.message, o.field)
                if not o.ok and o.change.action == "delete" and o.code == "not_found" else o for o in outcomes]
    rejected = [o for o in outcomes if not o.ok]
    for o in rejected:
        c = o.change
        said = redact(f"{o.status} {o.code}: {o.message}")       # the portal's words may quote the request
        prepared.findings.append(Finding("rejected", c.entity, c.key or c.external_id,
                                         f"{c.action} refused by the portal: {said}", field=o.field))
    return Applied(outcomes, rejected)


@dataclass
class RunResult:
    summary: dict[str, Any]
    findings: list[Finding]
    exit_code: int
    prepared: Prepared
    applied: Applied


@contextmanager
def _refusal_recorded(state, tenant_id: str, allow_deletes: bool) -> Iterator[None]:
    """A run refused because another run of the tenant holds its lock (exit 7) is a row of the run
    history (status `locked`): the night's run did not start, and `status` says so instead of
    calling its cron time missed."""
    from engine.errors import LockedError, StateError, failure_message
    try:
        yield
    except LockedError as exc:
        try:
            with whole():
                state.record_locked(tenant_id, failure_message(exc), allow_deletes=allow_deletes)
        except StateError as err:
            log.warning("%s", err)              # the lock is what the run reports
        raise


def run_tenant(tenant: Tenant, state, *, run_date: dt.date | None = None, allow_deletes: bool = False,
               progress: Progress | None = None, target=None) -> RunResult:
    """The whole run under the tenant's lock, recorded in the run history."""
    from engine.errors import ExitCode, StateError, failure_message
    from engine.config.secrets import tenant_secrets, unresolved, unresolved_error
    from engine.report import summary
    from engine.targets import open_target

    with _refusal_recorded(state, tenant.id, allow_deletes), state.lock(tenant.id):
        status, prepared, applied, failure = "failed", None, None, None     # failure: why, for the history
        own_target, run_id, answered, in_flight, settled = target is None, None, None, [], None
        try:
            with whole():               # a stop as the row is written takes effect here, so the row is closed
                run_id = state.start_run(tenant.id, allow_deletes=allow_deletes)
            if problems := unresolved(tenant_secrets(tenant, target=own_target)):   # all at once, recorded
                raise unresolved_error(tenant.id, problems)
            target = target or open_target(tenant)
            prepared = prepare(tenant, target, state, run_date=run_date, allow_deletes=allow_deletes, progress=progress)
            t = time.perf_counter()
            with whole():
                earlier = pending_before(prepared, state)
                noted_over = note_writes_ahead(prepared, state)
            try:
                applied = apply(prepared, target, progress)
            except BaseException as exc:                # an interruption too (SIGTERM, Ctrl-C)
                answered = getattr(exc, "partial_outcomes", None)
                in_flight = getattr(exc, "in_flight", None) or []
                with whole():           # remember what the portal accepted, or the next run calls it drift
                    record(prepared, Applied(answered or [], []), state, run_id, complete=False,
                           in_flight=in_flight, earlier=earlier, noted_over=noted_over)
                raise
            prepared.timings["apply"] = time.perf_counter() - t
            prepared.timings["total"] += prepared.timings["apply"]
            with whole():                               # a stop waits until every entity is noted
                settled = record(prepared, applied, state, run_id, earlier=earlier, noted_over=noted_over)
            status = "rejected" if applied.rejected else "deletes_held" if prepared.plan.held_reasons else "ok"
        except BaseException as exc:
            failure = failure_message(exc)
            raise
        finally:
            s = None
            try:                                        # the history first: closing a target may wait
                with whole():                           # a stop while the summary is made waits for the row too
                    s = summary(prepared, mode="run", status=status, applied=applied, allow_deletes=allow_deletes,
                                retries=retries_of(target), settled=settled) \
                        if prepared and applied else None
                    held = "deletes held back: " + "; ".join(prepared.plan.held_reasons) \
                        if status in ("deletes_held", "rejected") and prepared.plan.held_reasons else None
                    # the history says why, as for a failure; refused records (exit 9) do not hide held deletes
                    if run_id is not None:              # None: its start could not be recorded
                        state.finish_run(run_id, status=status, summary=s,
                                         extracted=prepared.extracted if prepared else None,
                                         counts=None if s is not None or (answered is None and not in_flight)
                                         else _accepted(answered or [], in_flight),
                                         message=failure or held)
            except StateError as exc:
                if failure is None:                     # the run itself went through: the store's failure counts
                    raise
                log.warning("%s", exc)                  # the run's own failure is what it reports
            finally:
                if own_target and target is not None:
                    target.close()
    code = {"ok": ExitCode.OK, "rejected": ExitCode.REJECTED, "deletes_held": ExitCode.DELETES_HELD}[status]
    return RunResult(s, prepared.findings, int(code), prepared, applied)
