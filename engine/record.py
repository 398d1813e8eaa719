"""record: what a run wrote, remembered in the state store. Its creates and updates are noted as
pending before anything is sent; what the portal accepted is recorded once it answered (drift
detection), with the e-mail winners after a complete run, which also settles the writes earlier
runs left unconfirmed; a run stopped part-way keeps its writes in flight pending, and its
history row counts what the portal accepted."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from engine.config.model import ENTITIES
from engine.normalize import PARTNERS
from engine.report import SETTLED
from engine.targets.base import Change, Outcome

if TYPE_CHECKING:
    from engine.pipeline import Applied, Prepared
    from engine.state_writes import PendingWrite


def record(prepared: Prepared, applied: Applied, state, run_id: Any, *, complete: bool = True,
           in_flight: list[Change] = (), earlier: dict[str, set[str]] | None = None,
           noted_over: dict[str, dict[str, PendingWrite]] | None = None) -> dict[str, dict[str, int]]:
    """Remember what was written (drift detection) and, after a complete apply, the e-mail winners.
    `in_flight`: changes sent without an answer (a run stopped part-way), remembered as pending;
    `earlier`: entity -> the external_ids that were pending before this run noted its own writes
    (note_writes_ahead); `noted_over`: entity -> those pending writes as they were before it
    (note_writes_ahead's answer), of the records it noted. A run stopped part-way keeps pending only
    those and its writes in flight: what it answered is recorded, what it never sent the portal does
    not hold. A pending write of a record whose write the portal refused, or a run stopped before it
    sent, is put back as it was: the value noted ahead is not one the portal holds, so the drift
    check must not take it for the engine's own, nor let it push out an earlier one.
    A complete run settles the pending records: one it did not write again and the portal did not
    refuse is as desired in the portal now (the plan found it unchanged), so that is what the
    engine last wrote; a user whose update keep_held_logins left unsent (Plan.unsent) is in the
    portal as that update's record, with its own address, not the one the ERP gives it. Then the
    pending records are forgotten, except those earlier runs left unconfirmed that the portal kept
    as they were: this run's write of one was refused, or the deletion guard held back its
    archiving; it may still hold an earlier run's value of them, and the next complete run settles
    them. A write of this run's own that the portal refused was answered: it is not kept pending.
    Returns, for a complete run, how it found the writes earlier runs left unconfirmed, per entity
    (SETTLED; only entities that had any): `landed` (the portal held them as this run wants
    them), `sent_again` (it did not: this run wrote them), `refused` (this run's write was
    refused) and `gone` (no longer among the records the run sends)."""
    earlier, noted_over = earlier or {}, noted_over or {}
    written: dict[str, dict[str, dict]] = {e: {} for e in ENTITIES}   # the last accepted write per record
    gone: dict[str, list[str]] = {e: [] for e in ENTITIES}
    maybe_written = {(c.entity, c.external_id) for c in in_flight}    # the portal may hold these
    for o in applied.outcomes:
        if o.ok:
            maybe_written.add((o.change.entity, o.change.external_id))
            c = o.change
            if c.action == "delete":
                gone[c.entity].append(c.external_id)
                written[c.entity].pop(c.external_id, None)
            else:
                written[c.entity][c.external_id] = c.record
    refused_ids = {(o.change.entity, o.change.external_id) for o in applied.rejected}
    kept_ids = refused_ids | {(c.entity, c.external_id) for c in prepared.plan.held}   # the portal kept what it held
    tenant_id = prepared.tenant.id
    partners = prepared.data["users"].partners       # each merged user written: its persons as merged
    merged = [{**person, "merged_into": merged_id} for merged_id in written["users"] if merged_id in partners
              for person in partners[merged_id]]
    if merged:
        state.remember_written(tenant_id, PARTNERS, merged)
    outcome: dict[str, dict[str, int]] = {}
    for entity in ENTITIES:
        pending = state.pending_ids(tenant_id, entity) if complete else set()
        records = prepared.data[entity].records
        holds = {c.external_id: c.record for c in prepared.plan.unsent if c.entity == entity}
        settled = [holds[i] if i in holds else records[i].data for i in pending
                   if i in records and i not in written[entity] and (entity, i) not in refused_ids]
        state.remember_written(tenant_id, entity, [*written[entity].values(), *settled], gone[entity])
        state.restore_pending(tenant_id, entity, {i: w for i, w in noted_over.get(entity, {}).items()
                                                  if (entity, i) not in maybe_written})
        before = earlier.get(entity, ())     # this run's own refused writes were answered: not kept
        kept = {i for i in pending if (entity, i) in kept_ids and i in before}
        if pending:
            state.forget_pending(tenant_id, entity, pending - kept if kept else None)
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


def note_writes_ahead(prepared: Prepared, state) -> dict[str, dict[str, PendingWrite]]:
    """The plan's creates and updates noted as pending (StateStore.remember_pending) before
    anything is sent. A run killed outright (kill -9, the out-of-memory killer, the machine
    going down) cannot record what the portal accepted. Without the updates noted, the next
    change the ERP makes to such a record would find the portal holding the killed run's value,
    not the one the engine last recorded, and report the engine's own write as an edit made in
    the portal. Without the creates noted, a record the killed run created would have no drift
    check until the engine next wrote it: an edit in the portal before that was overwritten
    without a word. A record noted so already by a run killed before keeps that run's value too,
    which the portal may hold instead. The next complete run settles the pending records (record).
    Returns entity -> the pending writes as they were before, of the records noted that had one
    (StateStore.remember_pending): record puts back those the portal refused, or the run never sent."""
    noted: dict[tuple[str, str], list[dict]] = {}
    for c in prepared.plan.changes:
        if c.action != "delete":
            noted.setdefault((c.entity, c.action), []).append(c.record)
    before: dict[str, dict[str, PendingWrite]] = {}
    for (entity, action), records in noted.items():
        before.setdefault(entity, {}).update(state.remember_pending(prepared.tenant.id, entity, records, action=action))
    return before


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
