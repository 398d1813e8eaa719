"""One tenant, one run, top to bottom:

    load -> extract -> map -> filter -> normalise -> resolve -> dedup -> plan -> apply -> record -> report

Only extraction (engine.sources) and apply (engine.targets) do I/O, plus the state store at the
two ends; every step between is a pure function over records. `plan` is this path stopping
before apply.
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
from itertools import repeat
from typing import Any, Callable, Iterable, Iterator

from engine.config.model import ENTITIES, Tenant
from engine import parallel
from engine._stop import whole
from engine.current import CurrentState, reader_command
from engine.dedup import dedup_emails, dedup_phones, settle_restored_partners
from engine.entity_data import EntityData
from engine.findings import Finding
from engine.mapping import Mapper, kept_values, unknown_code_findings
from engine.normalize import PARTNERS, LastSent, keep_last_sent, normalize_entity
from engine.plan import Plan, build_plan, diff_entity, email_releases, guard_deletes, keep_held_logins
from engine.progress import Progress
from engine.redact import redact
from engine.report import SETTLED
from engine.references import (OccupancyIndex, apply_window, drop_users_without_occupancy, index_occupancies,
                               occupancy_gate, occupied_users, resolve_occupancy_references, resolve_units,
                               tenant_today, window_bounds, window_findings, window_gate)
from engine.targets.base import Change, Outcome, retries_of

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


EXTRACT_ORDER = ("buildings", "units", "occupancies", "users")
"""Occupancies before users: a person is mapped completely only if a contract in the window names it."""


def window_params(tenant: Tenant, run_date: dt.date) -> dict[str, dt.date]:
    """The bound parameters every query may use (:ref_date, :window_end_from, :window_start_until)."""
    ref, earliest_end, latest_start = window_bounds(tenant.window, run_date)
    return {"ref_date": ref, "window_end_from": earliest_end, "window_start_until": latest_start}


def extract_entity(tenant: Tenant, entity: str, source, params: dict, run_date: dt.date, gate,
                   findings: list[Finding], progress: Progress, *, keep_gated: bool = False,
                   early: tuple[str, Callable[[set | None], None]] | None = None) -> EntityData:
    """extract -> map -> filter for one entity, streamed in batches; `gate` (see Mapper) skips
    what is not wanted early, each skipped record a finding (`keep_gated`: left in `gated` for
    the caller, engine.parallel). `early` (field, tell): tell(the set of the field's values over
    the records) is called as soon as every row is read and it is known which become records,
    before they are made (None: it cannot be known before; the caller takes it from the
    records), so that a second process waiting for it starts sooner (the users' gate)."""
    out = EntityData(entity)
    mapper, columns_seen = None, None
    progress.start(f"extract {entity}")
    pending: list[tuple[Mapper, list]] = []         # with `early`: the first halves, in order
    rows_read = 0
    for columns, rows in source.batches(tenant.entities[entity], params):
        if mapper is None or columns != columns_seen:
            mapper, columns_seen = Mapper(tenant.entities[entity], columns, out, findings, gate), columns
        if early is None:
            mapper.map_rows(rows)
        else:
            pending.append((mapper, mapper.first_half(rows, (early[0],))))
        rows_read += len(rows)
        progress.advance(len(rows))
    if early is not None:
        early[1](kept_values((half for _, halves in pending for half in halves), early[0]))
        pending.reverse()
        progress.stage("mapped", 0, rows_read)      # the live line moves through the second half too
        while pending:                  # each batch's rows let go once its records are made
            batch_mapper, halves = pending.pop()
            batch_mapper.second_half(halves)
            progress.stage("mapped", out.extracted, rows_read)
    out.settle_duplicates()
    if not keep_gated:                  # else the caller reports both once the gate is settled
        findings.extend(unknown_code_findings(out))
        gated_findings(tenant, out, run_date, findings)
    progress.finish(f"({sum(out.filtered.values()):,} filtered)")
    return out


def gated_findings(tenant: Tenant, out: EntityData, run_date: dt.date, findings: list[Finding]) -> None:
    """A finding for every record a gate skipped (contracts outside the window, persons without one)."""
    if out.entity == "occupancies":
        findings.extend(window_findings([(key, reason, early) for _, key, reason, early in out.gated],
                                        tenant.window, run_date))
    else:
        findings.extend(gated_user_findings([key for _, key, _, _ in out.gated],
                                            [reason for _, _, reason, _ in out.gated]))
    out.gated.clear()


GATED_USER_MESSAGE = "no contract in the contract window; not sent"


def gated_user_findings(keys: Iterable[str], reasons: Iterable[str]) -> Iterator[Finding]:
    """The finding of each person the users' gate stopped (ERP key, reason)."""
    return map(Finding, reasons, repeat("users"), keys, repeat(GATED_USER_MESSAGE))


def users_gate(tenant: Tenant, occ: EntityData | set[str]):
    """The users' gate: persons without a contract in the window are skipped (unless the tenant sends them)."""
    return occupancy_gate(occ) if tenant.rules.users_without_occupancy == "skip" else None


def extract(tenant: Tenant, run_date: dt.date, findings: list[Finding],
            progress: Progress) -> tuple[dict[str, EntityData], dict | None, dict | None]:
    """extract -> map -> filter, entity by entity, streamed in batches. Contracts outside the
    window, and persons without a contract in it, are recognised early and not mapped in full.
    Also returns the requests the source sent again (an API source's, engine.sources.api; None
    when none were, or for a source that retries nothing, as an SQL source), and per entity the
    records that only the second reading of pages paged by position had (ApiExtractor.batches;
    None when there were none)."""
    from engine.sources import open_source
    params = window_params(tenant, run_date)
    data: dict[str, EntityData] = {}
    source = open_source(tenant, run_date=run_date)
    try:
        for entity in EXTRACT_ORDER:
            gate = window_gate(tenant.window, run_date) if entity == "occupancies" else \
                users_gate(tenant, data["occupancies"]) if entity == "users" else None
            data[entity] = extract_entity(tenant, entity, source, params, run_date, gate, findings, progress)
    finally:
        source.close()
    return {e: data[e] for e in ENTITIES}, retries_of(source), dict(getattr(source, "recovered", {})) or None


def transform(tenant: Tenant, data: dict[str, EntityData], run_date: dt.date, previous_winners: dict[str, str],
              findings: list[Finding], holders=None, last_sent: LastSent | None = None) -> dict[str, str]:
    """normalise -> resolve references and time -> dedup. Pure: changes `data` in place.

    The window and the persons without a contract are applied again here (a no-op after
    `extract`, which skips them early), so that this step is complete on its own. `last_sent`:
    what the engine last wrote, for the records that break a rule now (keep_last_sent)."""
    before, after = transform_without_users(tenant, data, run_date, last_sent=last_sent)
    return transform_with_users(tenant, data, before, None, after, previous_winners, findings, holders,
                                last_sent=last_sent)


def transform_without_users(tenant: Tenant, data: dict[str, EntityData], run_date: dt.date, *,
                            pack: bool = False, normalised: dict[str, list[Finding]] | None = None,
                            last_sent: LastSent | None = None) -> tuple[list[Finding], list[Finding]]:
    """The steps of `transform` that do not look at the users (so a run can do them while the
    users are still being extracted). Their findings come in two lists, those that come before
    the users' normalisation and those after, the order `transform` reports them in. `pack`:
    pack each record as normalised (EntityData.packed_rows), for a diff against a packed portal;
    `normalised`: entity -> normalize_entity's findings of the entities normalised already
    (buildings and units, by engine.parallel's second process)."""
    before: list[Finding] = []
    after: list[Finding] = []
    buildings, units, occ = data["buildings"], data["units"], data["occupancies"]
    for entity in ("buildings", "units"):
        if normalised and entity in normalised:
            before.extend(normalised[entity])
        else:
            normalize_entity(data[entity], tenant.rules, before, pack=pack)
        keep_last_sent(data[entity], last_sent, before)
    resolve_units(units, buildings, before)
    apply_window(occ, tenant.window, run_date, before)
    normalize_entity(occ, tenant.rules, after, pack=pack)
    keep_last_sent(occ, last_sent, after)
    return before, after


def transform_with_users(tenant: Tenant, data: dict[str, EntityData], before: list[Finding],
                         users_normalised: list[Finding] | None, after: list[Finding],
                         previous_winners: dict[str, str], findings: list[Finding], holders=None,
                         index: OccupancyIndex | None = None, last_sent: LastSent | None = None,
                         users_order: list[str] | None = None) -> dict[str, str]:
    """The rest of `transform`. `users_normalised`: the findings of normalising the users if
    that is done already (engine.parallel), else None, and `users_order` their external_ids as
    mapped; `index`: index_occupancies after transform_without_users, if made already (a run
    makes it while it waits for the users)."""
    users, occ = data["users"], data["occupancies"]
    index = index or index_occupancies(occ, data["units"])
    findings.extend(before)
    if users_normalised is None:
        drop_users_without_occupancy(users, occ, tenant.rules, findings, index)
        normalize_entity(users, tenant.rules, findings)
    else:
        findings.extend(_drop_normalised_users_without_occupancy(tenant, users, occ, index, users_order,
                                                                 users_normalised, findings))
    keep_last_sent(users, last_sent, findings)
    findings.extend(after)
    dropped = resolve_occupancy_references(occ, users, data["units"], findings, index)
    drop_users_without_occupancy(users, occ, tenant.rules, findings, index, dropped)
    winners = dedup_emails(users, occ, tenant.email_dedup, previous_winners, findings, holders, index)
    settle_restored_partners(users, occ, data["units"], tenant.rules, findings)
    dedup_phones(users, occ, tenant.phone_dedup, tenant.email_dedup.order, findings)
    return winners


def _drop_normalised_users_without_occupancy(tenant: Tenant, users: EntityData, occ: EntityData,
                                             index: OccupancyIndex, order: list[str] | None,
                                             normalised: list[Finding], findings: list[Finding]) -> list[Finding]:
    """drop_users_without_occupancy for users normalised already (engine.parallel), as `transform`
    drops them before normalising: also the persons normalising refused (users.invalid), whom
    keep_last_sent would otherwise keep in the portal without an occupancy, in the order mapped
    (`order`); returns `normalised` without the findings of the persons dropped."""
    invalid, records = users.invalid, users.records
    if invalid and order is not None:       # back among the records, where they were mapped
        users.records = {i: records[i] if i in records else invalid[i] for i in order if i in records or i in invalid}
        users.records.update(records)       # none left out (each is in `order`)
    before = len(findings)
    drop_users_without_occupancy(users, occ, tenant.rules, findings, index)
    gone_keys = {f.key for f in findings[before:]}
    for external_id in [i for i in invalid if i in users.records]:
        del users.records[external_id]      # still refused
    for external_id in [i for i in invalid if users.excluded.get(i) == "user_without_occupancy"]:
        del invalid[external_id]            # dropped: not kept as last sent either
    if not gone_keys:
        return normalised
    return [f for f in normalised if f.entity != "users" or f.key not in gone_keys]


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
    for entity in ENTITIES:
        progress.start(f"read portal {entity}")
        current = portal.read(entity)
        progress.advance(len(current))
        progress.finish()
        managed[entity] = len(current)
        upserts[entity], deletes[entity], unchanged[entity], drift[entity] = \
            diff_entity(entity, data[entity].records, current, partial(last_sent, entity), findings,
                        data[entity].packed_rows, partial(pending_sent, entity))
        if entity == "users":
            releases = email_releases(data[entity].records, current)
        del current                 # one entity's portal records in memory at a time
    previous = state.last_extracted(tenant.id) if state else {}
    held = guard_deletes(deletes, managed, {e: d.extracted for e, d in data.items()}, previous,
                         tenant.deletion, allow_deletes)
    if held and deletes["users"]:       # a user whose archiving is held keeps its login tonight
        upserts["users"], releases, dropped = keep_held_logins(upserts["users"], releases, deletes["users"], winners,
                                                               findings)
        unchanged["users"] += dropped
    plan = build_plan(tenant.id, upserts, deletes, unchanged, drift, held, releases)
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
                    f"the filters excluded all {d.extracted:,} rows of {entity} ("
                    + ", ".join(f"{name} {n:,}" for name, n in d.filtered.most_common())
                    + f"): nothing of {entity} reaches the portal")
            for entity, d in data.items() if d.extracted and sum(d.filtered.values()) == d.extracted]


_MAPPED_FIELD_CODES = frozenset({"invalid_record", "name_too_long"})


def _name_mapped_fields(tenant: Tenant, findings: list[Finding]) -> None:
    """A record refused for a portal field says how the mapping makes that field from the ERP's
    columns ("role = map_values(Art, 'roles')"): the field's value alone (got None) does not tell
    the property manager which column of the ERP to correct."""
    for i, f in enumerate(findings):
        if f.code in _MAPPED_FIELD_CODES and f.field and f.entity in tenant.entities:
            expr = tenant.entities[f.entity].fields.get(f.field)
            if expr is not None and expr.source != f.field:
                findings[i] = Finding(f.code, f.entity, f.key, f"{f.message} ({f.field} = {expr.source})", f.field)


def _extract_transform_parallel(tenant: Tenant, run_date: dt.date, worker, findings: list[Finding],
                                progress: Progress, previous_winners: dict[str, str], holders,
                                timings: dict[str, float], portal_may_read,
                                pack: bool, last_sent: LastSent | None = None
                                ) -> tuple[dict[str, EntityData], dict[str, str]]:
    """extract and transform with the users extracted by a second process (engine.parallel);
    the same records and findings, in the same order, as extract followed by transform.
    `portal_may_read()` is called when only the users are left to extract. `pack`: pack each
    record as it is normalised (EntityData.packed_rows), for the diff against a packed portal:
    the occupancies here, buildings and units by the child, the users by whoever normalises them."""
    from engine.sources import open_source
    t = time.perf_counter()
    params = window_params(tenant, run_date)
    found: dict[str, list[Finding]] = {e: [] for e in EXTRACT_ORDER}
    data: dict[str, EntityData] = {}
    source = open_source(tenant, run_date=run_date)
    try:     # the occupancies here while the child extracts buildings, units and persons
        gates: list = []         # the users' gate, sent as soon as it is known: the child waits for it

        def send_gate(user_ids: set | None) -> None:
            if user_ids is not None:
                gates.append(users_gate(tenant, user_ids))
                worker.send_gate(gates[0][1].wanted if gates[0] else None)
        sends_all = users_gate(tenant, set()) is None        # the tenant sends every person: no gate to wait for
        if sends_all:
            send_gate(set())
        data["occupancies"] = extract_entity(tenant, "occupancies", source, params, run_date,
                                             window_gate(tenant.window, run_date), found["occupancies"], progress,
                                             keep_gated=True, early=None if sends_all else ("user_id", send_gate))
        if not gates:                   # not known before the contracts' records were made
            send_gate(occupied_users(data["occupancies"]))
        gate = gates[0]
        found["occupancies"].extend(unknown_code_findings(data["occupancies"]))
        gated_findings(tenant, data["occupancies"], run_date, found["occupancies"])
        others = worker.others(progress)
        normalised: dict[str, list[Finding]] = {}          # entity -> normalize_entity's findings, where done
        for entity in ("buildings", "units"):
            if others is None:     # the child failed: extracted here
                data[entity] = extract_entity(tenant, entity, source, params, run_date, None, found[entity], progress)
            else:
                data[entity], found[entity], normalised[entity] = others[entity]
    finally:
        source.close()
    before, after = transform_without_users(tenant, data, run_date, pack=pack, normalised=normalised,
                                            last_sent=last_sent)
    portal_may_read()               # the child normalises the users now, this process takes a share
    index = index_occupancies(data["occupancies"], data["units"])     # while the child starts on them
    result = worker.result(tenant.rules, progress)
    if result is None:        # the child failed: the users are extracted here, with the same gate
        source = open_source(tenant, run_date=run_date)
        try:
            data["users"] = extract_entity(tenant, "users", source, params, run_date, gate, found["users"], progress)
        finally:
            source.close()
        normalised = None
    else:
        data["users"], normalised = result.users, result.normalise_findings
        found["users"] = result.extract_findings
    timings["extract"] = time.perf_counter() - t      # with normalising, which ran beside it
    t = time.perf_counter()
    progress.start("resolve, dedup")
    for entity in EXTRACT_ORDER:
        findings.extend(found[entity])
    data = {e: data[e] for e in ENTITIES}
    winners = transform_with_users(tenant, data, before, normalised, after, previous_winners, findings, holders,
                                   index, last_sent, None if result is None else result.order)
    timings["transform"] = time.perf_counter() - t
    return data, winners


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


def record(prepared: Prepared, applied: Applied, state, run_id: Any, *, complete: bool = True,
           in_flight: list[Change] = (), earlier: dict[str, set[str]] | None = None) -> dict[str, dict[str, int]]:
    """Remember what was written (drift detection) and, after a complete apply, the e-mail winners.
    `in_flight`: changes sent without an answer (a run stopped part-way), remembered as pending;
    `earlier`: entity -> the external_ids that were pending before this run noted its own writes
    (note_writes_ahead). A run stopped part-way keeps pending only those and its writes in flight:
    what it answered is recorded, what it never sent the portal does not hold.
    A complete run settles the pending records: one it did not write again and the portal did not
    refuse is as desired in the portal now (the plan found it unchanged), so that is what the
    engine last wrote; then the pending records are forgotten. Returns, for a complete run, how it
    found the writes earlier runs left unconfirmed, per entity (SETTLED; only entities that had
    any): `landed` (the portal held them as this run wants them), `sent_again` (it did not: this
    run wrote them), `refused` (this run's write was refused) and `gone` (no longer among the
    records the run sends)."""
    earlier = earlier or {}
    written: dict[str, dict[str, dict]] = {e: {} for e in ENTITIES}   # the last accepted write per record
    gone: dict[str, list[str]] = {e: [] for e in ENTITIES}
    for o in applied.outcomes:
        if o.ok:
            c = o.change
            if c.action == "delete":
                gone[c.entity].append(c.external_id)
                written[c.entity].pop(c.external_id, None)
            else:
                written[c.entity][c.external_id] = c.record
    refused_ids = {(o.change.entity, o.change.external_id) for o in applied.rejected}
    tenant_id = prepared.tenant.id
    partners = prepared.data["users"].partners       # each merged user written: its persons as merged
    merged = [{**person, "merged_into": merged_id} for merged_id in written["users"] if merged_id in partners
              for person in partners[merged_id]]
    if merged:
        state.remember_written(tenant_id, PARTNERS, merged)
    outcome: dict[str, dict[str, int]] = {}
    for entity in ENTITIES:
        pending = state.pending_written(tenant_id, entity) if complete else {}
        records = prepared.data[entity].records
        settled = [records[i].data for i in pending
                   if i in records and i not in written[entity] and (entity, i) not in refused_ids]
        state.remember_written(tenant_id, entity, [*written[entity].values(), *settled], gone[entity])
        if pending:
            state.forget_pending(tenant_id, entity)
        if complete and earlier.get(entity):
            found = Counter("sent_again" if i in written[entity] else "refused" if (entity, i) in refused_ids
                            else "landed" if i in records else "gone" for i in earlier[entity])
            outcome[entity] = {k: found[k] for k in SETTLED}
        if not complete:
            sent = {c.external_id for c in in_flight if c.entity == entity}
            state.forget_pending(tenant_id, entity, [c.external_id for c in prepared.plan.changes
                                                     if c.entity == entity and c.action != "delete"
                                                     and c.external_id not in sent
                                                     and c.external_id not in earlier.get(entity, ())])
            for action in ("create", "update"):
                state.remember_pending(tenant_id, entity, [c.record for c in in_flight
                                                           if c.entity == entity and c.action == action],
                                       action=action)
    if complete:
        refused = {o.change.external_id for o in applied.rejected if o.change.entity == "users"}
        state.replace_winners(prepared.tenant.id, {email: winner for email, winner in prepared.winners.items()
                                                   if winner not in refused})
    return outcome


def pending_before(prepared: Prepared, state) -> dict[str, set[str]]:
    """entity -> the external_ids of the writes earlier runs left unconfirmed (pending), read
    before this run notes its own (note_writes_ahead)."""
    return {e: state.pending_ids(prepared.tenant.id, e) for e in ENTITIES}


def note_writes_ahead(prepared: Prepared, state) -> None:
    """The plan's creates and updates noted as pending (StateStore.remember_pending) before
    anything is sent. A run killed outright (kill -9, the out-of-memory killer, the machine
    going down) cannot record what the portal accepted. Without the updates noted, the next
    change the ERP makes to such a record would find the portal holding the killed run's value,
    not the one the engine last recorded, and report the engine's own write as an edit made in
    the portal. Without the creates noted, a record the killed run created would have no drift
    check until the engine next wrote it: an edit in the portal before that was overwritten
    without a word. The next complete run settles the pending records (record)."""
    noted: dict[tuple[str, str], list[dict]] = {}
    for c in prepared.plan.changes:
        if c.action != "delete":
            noted.setdefault((c.entity, c.action), []).append(c.record)
    for (entity, action), records in noted.items():
        state.remember_pending(prepared.tenant.id, entity, records, action=action)


@dataclass
class RunResult:
    summary: dict[str, Any]
    findings: list[Finding]
    exit_code: int
    prepared: Prepared
    applied: Applied


def _accepted(outcomes: list[Outcome], in_flight: list[Change] = ()) -> dict[str, dict[str, int]]:
    """What the portal accepted of a run that failed or was stopped while applying, per entity and
    action, for the run history (its writes are not null: the portal did change); and, as
    `unconfirmed`, the writes sent without an answer (`in_flight`): the portal may have made them
    or not, the next complete run finds out (record)."""
    counts: dict[str, Counter] = {}
    for o in outcomes:
        if o.ok:
            counts.setdefault(o.change.entity, Counter())[o.change.action] += 1
    for c in in_flight:
        counts.setdefault(c.entity, Counter())["unconfirmed"] += 1
    return {e: dict(c) for e, c in counts.items()}


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
    from engine.report import summary
    from engine.targets import open_target

    with _refusal_recorded(state, tenant.id, allow_deletes), state.lock(tenant.id):
        status, prepared, applied, failure = "failed", None, None, None     # failure: why, for the history
        own_target, run_id, answered, in_flight, settled = target is None, None, None, [], None
        try:
            with whole():               # a stop as the row is written takes effect here, so the row is closed
                run_id = state.start_run(tenant.id, allow_deletes=allow_deletes)
            target = target or open_target(tenant)
            prepared = prepare(tenant, target, state, run_date=run_date, allow_deletes=allow_deletes, progress=progress)
            t = time.perf_counter()
            with whole():
                earlier = pending_before(prepared, state)
                note_writes_ahead(prepared, state)
            try:
                applied = apply(prepared, target, progress)
            except BaseException as exc:                # an interruption too (SIGTERM, Ctrl-C)
                answered = getattr(exc, "partial_outcomes", None)
                in_flight = getattr(exc, "in_flight", None) or []
                with whole():           # remember what the portal accepted, or the next run calls it drift
                    record(prepared, Applied(answered or [], []), state, run_id, complete=False,
                           in_flight=in_flight, earlier=earlier)
                raise
            prepared.timings["apply"] = time.perf_counter() - t
            prepared.timings["total"] += prepared.timings["apply"]
            with whole():                               # a stop waits until every entity is noted
                settled = record(prepared, applied, state, run_id, earlier=earlier)
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
