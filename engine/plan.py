"""Plan: compare the desired records with the target's current state, field by field.

Creates and updates go in dependency order (buildings, units, users, occupancies), deletes in
reverse. Only records the engine manages (those with an external_id) are ever compared, so a
record a person created in the portal is never touched. The deletion guard holds back every
delete of the run when an extract looks incomplete or a threshold trips.
"""
from __future__ import annotations

from collections import Counter
from itertools import compress, repeat
from operator import attrgetter, eq, is_, itemgetter, not_
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from engine import contract
from engine.config.model import ENTITIES, Deletion
from engine.current import Packed, Rows, pack_rows, tuples
from engine.entity_data import Rec
from engine.findings import Finding
from engine.plural import counted
from engine.targets.base import Change

ACTIONS = ("create", "update", "delete")
GONE = "(deleted)"
"""The drift counter's key for records the engine wrote that the portal no longer holds (deleted
or archived there): the plan creates them again. Not a field's name: those have no parentheses."""


@dataclass
class Plan:
    tenant: str
    changes: list[Change] = field(default_factory=list)       # in apply order
    unchanged: dict[str, int] = field(default_factory=dict)
    held: list[Change] = field(default_factory=list)           # deletes held back by the guard
    held_reasons: list[str] = field(default_factory=list)
    drift: dict[str, Counter] = field(default_factory=dict)    # entity -> field (or GONE) -> records edited in the portal
    unsent: list[Change] = field(default_factory=list)         # keep_held_logins: the portal holds their `record`

    def counts(self) -> dict[str, dict[str, int]]:
        out = {e: {a: 0 for a in ACTIONS} | {"unchanged": self.unchanged.get(e, 0), "held": 0} for e in ENTITIES}
        for c in self.changes:
            out[c.entity][c.action] += 1
        for c in self.held:
            out[c.entity]["held"] += 1
        return out

    @property
    def writes(self) -> int:
        return len(self.changes)


def diff_entity(entity: str, desired: Mapping[str, Rec], current: Rows | Packed,
                last_written: Callable[[list[str]], Mapping[str, dict[str, Any]]],
                findings: list[Finding], known: Mapping[str, bytes] | None = None,
                pending: Callable[[list[str]], Mapping[str, dict[str, Any]]] | None = None,
                recreated: bool = False) -> tuple[list[Change], list[Change], int, Counter]:
    """(upserts, deletes, unchanged count, drift counter) for one entity.

    `current` holds the portal's records (engine.current): as rows (external_id -> the values in
    contract.fields order), or packed, when only the records that differ are read in full;
    `known`: desired records packed already (EntityData.packed_rows). `last_written(ids)`
    returns what the engine last wrote for those ids; it is asked only for the records that
    differ, so a run that changes little reads little of the state store. `pending(ids)`: what
    the engine sent without an answer (engine.state.PendingWrite: runs stopped mid-batch, or
    killed after noting their writes): a portal value equal to one of those is the engine's own
    write, not an edit in the portal; a record such a run created, which the engine has not
    recorded writing, is compared with what was sent (the portal can hold nothing else of the
    engine's). `recreated`: the engine has written records of the entity before
    (StateStore.wrote_any), so a create may be one of them that the portal no longer holds,
    deleted or archived there: drift, counted under GONE, each with a finding."""
    names = contract.fields(entity)
    drift: Counter = Counter()
    if not current:                                       # a first run: everything is created, in C
        recs = desired.values()
        fields = zip(repeat(entity), repeat("create"), desired.keys(), map(attrgetter("data"), recs), repeat(()),
                     repeat(None), map(attrgetter("key"), recs))
        creates = list(map(tuple.__new__, repeat(Change), fields))
        if recreated:
            _gone_from_portal(entity, creates, last_written, findings, drift)
        return creates, [], 0, drift
    ids, recs = list(desired), list(desired.values())
    datas = list(map(attrgetter("data"), recs))
    if isinstance(current, Packed) and (compared := compare_packed(entity, desired, current, known)):
        same, gone, differ = compared                     # only what differs is read in full
        current = current.rows(gone.union(differ)) if gone or differ else {}
    else:                                                 # rows, compared in C
        if isinstance(current, Packed):                   # a value marshal cannot pack (a date left in a record)
            current = current.rows()
        same = list(map(eq, tuples(datas, names), map(current.get, ids)))
        gone = current.keys() - desired.keys()
    unchanged = same.count(True)
    upserts: list[Change] = []
    for i in compress(range(len(ids)), map(not_, same)):
        external_id, rec, data = ids[i], recs[i], datas[i]
        cur = current.get(external_id)
        if cur is None:
            upserts.append(Change(entity, "create", external_id, data, key=rec.key))
            continue
        before = dict(zip(names, cur))
        changed = tuple(n for n in names if data.get(n) != before[n])
        if not changed:
            unchanged += 1
            continue
        upserts.append(Change(entity, "update", external_id, data, changed, before, rec.key))
    if recreated:
        _gone_from_portal(entity, [c for c in upserts if c.action == "create"], last_written, findings, drift)
    updates = [c for c in upserts if c.action == "update"]
    last = last_written([c.external_id for c in updates]) if updates else {}
    sent = pending([c.external_id for c in updates]) if updates and pending is not None else {}
    for c in updates:
        before, unanswered = last.get(c.external_id), sent.get(c.external_id)
        if before is None and (unanswered is None or unanswered.action != "create"):
            continue                          # the engine's last write is not known: no drift check
        ours = (before,) if unanswered is None else (*unanswered.records, *((before,) if before is not None else ()))
        edited = [n for n in c.changed if all(c.before.get(n) != r.get(n) for r in ours)]
        if edited:
            drift.update(edited)
            findings.append(Finding("drift", entity, c.key,
                                    "edited in the portal since the engine wrote it; the ERP's value replaces the edit: " +
                                    ", ".join(f"{n} {c.before.get(n)!r} -> {c.record.get(n)!r}" for n in edited)))
    deletes = [Change(entity, "delete", external_id, before=dict(zip(names, cur)))
               for external_id, cur in current.items() if external_id in gone] if gone else []
    return upserts, deletes, unchanged, drift


def _gone_from_portal(entity: str, creates: list[Change], last_written: Callable[[list[str]], Mapping[str, Any]],
                      findings: list[Finding], drift: Counter) -> None:
    """The creates of records the engine wrote and has not archived (what it last wrote of them is
    known): the portal no longer holds them, someone deleted or archived them there. Drift, as an
    edit is; the create puts each back with the ERP's values."""
    if not creates:
        return
    written = last_written([c.external_id for c in creates])
    for c in creates:
        if c.external_id in written:
            drift[GONE] += 1
            named = "" if c.key == c.external_id else f" (external_id {c.external_id!r})"
            findings.append(Finding("drift", entity, c.key or c.external_id,
                                    f"deleted or archived in the portal since the engine wrote it{named}; created "
                                    "again with the ERP's values"))


Compared = tuple[list[bool], set[str], list[str]]
"""compare_packed's answer: (same per desired record, the external_ids to delete, those that differ)."""


def compare_packed(entity: str, desired: Mapping[str, Rec], packed: Packed,
                   known: Mapping[str, bytes] | None = None) -> Compared | None:
    """(same per desired record, the external_ids to delete, those of the portal's records that
    differ) against the portal's packed rows; None when a desired value cannot be packed. Records
    in the portal's order (a rerun's usual case) are compared position by position. `known`: the
    desired records packed already (EntityData.packed_rows); the others are packed here."""
    ids = list(desired)
    try:
        mine = _pack_desired(entity, desired, ids, known)
    except ValueError:
        return None
    if ids == packed.ids:
        same = list(map(eq, mine, packed.packed))
        return same, set(), list(compress(ids, map(not_, same)))
    theirs = list(map(packed.index.get, ids))
    same = list(map(eq, mine, theirs))
    differ = [ids[i] for i in compress(range(len(ids)), map(not_, same)) if theirs[i] is not None]
    return same, packed.index.keys() - desired.keys(), differ


def _pack_desired(entity: str, desired: Mapping[str, Rec], ids: list[str],
                  known: Mapping[str, bytes] | None) -> list[bytes]:
    names = contract.fields(entity)
    if not known:
        return pack_rows(tuples(list(map(attrgetter("data"), desired.values())), names))
    mine = list(map(known.get, ids))
    missing = list(compress(range(len(ids)), map(is_, mine, repeat(None))))
    for i, row in zip(missing, pack_rows(tuples([desired[ids[i]].data for i in missing], names))):
        mine[i] = row
    return mine


def guard_deletes(deletes: dict[str, list[Change]], managed: dict[str, int], extracted: dict[str, int],
                  previous: Mapping[str, int], policy: Deletion, allow: bool) -> list[str]:
    """Reasons to hold back the run's deletes (empty: deletes may go ahead)."""
    reasons = []
    for entity in ENTITIES:
        n_del, n_managed = len(deletes.get(entity, ())), managed.get(entity, 0)
        rows, before = extracted.get(entity, 0), previous.get(entity)
        if n_managed and rows == 0:
            reasons.append(f"{entity}: the source returned no rows (incomplete extract?)")
        elif before and rows < policy.min_source_ratio * before:       # counts as the summary prints them: 20,003
            reasons.append(f"{entity}: the source returned {counted(rows, 'row')}, fewer than "
                           f"{policy.min_source_ratio:.0%} "
                           f"of the {before:,} of the last successful run (incomplete extract?)")
        if n_del > policy.max_count:
            exceed = "exceeds" if n_del == 1 else "exceed"
            reasons.append(f"{entity}: {counted(n_del, 'delete')} {exceed} the limit of {policy.max_count:,} per run")
        if n_managed and n_del > policy.max_share * n_managed:      # both limits named where both trip
            are = "is" if n_del == 1 else "are"
            reasons.append(f"{entity}: {counted(n_del, 'delete')} {are} {_share(n_del / n_managed, policy.max_share)} "
                           f"of {counted(n_managed, 'managed record')}, more than the limit of {policy.max_share:.0%}")
    if allow or not any(deletes.values()):
        return []
    return reasons


def _share(share: float, limit: float) -> str:
    """A share as a percentage, with as many decimals as it takes to read as more than `limit`
    (10.4%, not 10%, against a limit of 10%)."""
    for decimals in range(4):
        text = f"{share:.{decimals}%}"
        if float(text.rstrip("%")) > limit * 100:
            return text
    return f"{share:.4%}"


def email_releases(desired: Mapping[str, Rec], current: Rows | Packed) -> list[Change]:
    """Users whose portal e-mail this run gives to another user: the address is cleared on them
    first, so that its new holder can take it. Covers swaps, a partnership merged into one user
    or split again, and a person replaced by another; without it the portal refuses the new
    holder (email_taken) night after night. `current`: the portal's users (engine.current)."""
    if not current:                                       # a first run: nobody holds an address yet
        return []
    names = contract.fields("users")
    if isinstance(current, Packed):
        held_by, emails = current.ids, current.emails
    else:
        held_by, emails = list(current), list(map(itemgetter(names.index("email")), current.values()))
    mine = list(map(dict.get, map(attrgetter("data"), desired.values()), repeat("email")))
    if emails == mine and held_by == list(desired):       # a rerun's usual case: every address stays where it is
        return []                                         # (the portal holds each at most once, so tonight too)
    wanted = dict(zip(_email_keys(mine), desired))        # e-mail -> its holder tonight (the last one)
    wanted.pop(None, None)
    holders = list(map(wanted.get, _email_keys(emails)))
    leaving = [external_id for external_id, holder in zip(held_by, holders)
               if holder is not None and holder != external_id]
    if not leaving:
        return []
    rows = current.rows(leaving) if isinstance(current, Packed) else current
    releases = []
    for external_id in leaving:
        before = dict(zip(names, rows[external_id]))
        releases.append(Change("users", "update", external_id, {**before, "email": None}, ("email",), before))
    return releases


def keep_held_logins(upserts: list[Change], releases: list[Change], deleted: list[Change], winners: dict[str, str],
                     findings: list[Finding]) -> tuple[list[Change], list[Change], list[Change]]:
    """(users' upserts, releases) for a run whose deletes the guard holds back: a user whose
    archiving is held keeps the portal login it has. The extract looks incomplete, so its
    address is not cleared on it and not given to another user tonight: the user who would
    take it keeps the address it has in the portal, unless that one goes to another user
    tonight, else none (an update that then changes nothing is not sent, and counts as
    unchanged), with a finding; `winners` keeps the address with its holder, so that an ERP put
    right tomorrow finds the login where it was. `deleted`: the users' deletes, all held.
    Returns (upserts, releases, updates no longer sent): the portal holds the `record` of each of
    those as it is, not the ERP's record, which gives it the held address."""
    held = {c.external_id for c in deleted}
    kept = {contract.email_key(r.before.get("email")): r.external_id for r in releases if r.external_id in held}
    kept.pop(None, None)
    if not kept:
        return upserts, releases, []
    leaving = {r.external_id for r in releases}         # their portal address goes to another user
    names = contract.fields("users")
    out: list[Change] = []
    unsent: list[Change] = []
    for c in upserts:
        holder = kept.get(contract.email_key(c.record.get("email")))
        if holder is None or holder == c.external_id:
            out.append(c)
            continue
        own = (c.before or {}).get("email") if c.action == "update" and c.external_id not in leaving else None
        findings.append(Finding("email_held", "users", c.key or c.external_id,
                                f"{c.record['email']!r} stays with user {holder}, whose archiving the deletion guard "
                                "holds back; until the deletes are applied this user is sent "
                                + (f"with its address in the portal, {own!r}" if own else "without an address"),
                                field="email"))
        record = {**c.record, "email": own}
        if c.action == "update":
            changed = tuple(n for n in names if record.get(n) != (c.before or {}).get(n))
            (out if changed else unsent).append(c._replace(record=record, changed=changed))
        else:
            out.append(c._replace(record=record))
    winners.update(kept)
    return out, [r for r in releases if r.external_id not in held], unsent


def _email_keys(values: list[Any]) -> list[str | None]:
    """contract.email_key of each value, in C when every value is a text or null."""
    if set(map(type, values)) <= {str, type(None)}:
        return [k or None for k in map(str.lower, map(str.strip, [v or "" for v in values]))]
    return list(map(contract.email_key, values))


def build_plan(tenant: str, upserts: dict[str, list[Change]], deletes: dict[str, list[Change]],
               unchanged: dict[str, int], drift: dict[str, Counter], held_reasons: Iterable[str],
               releases: Iterable[Change] = (), unsent: Iterable[Change] = ()) -> Plan:
    plan = Plan(tenant, unchanged=dict(unchanged), drift=drift, held_reasons=list(held_reasons), unsent=list(unsent))
    plan.changes.extend(releases)
    for entity in ENTITIES:
        plan.changes.extend(upserts.get(entity, []))
    for entity in reversed(ENTITIES):
        (plan.held if plan.held_reasons else plan.changes).extend(deletes.get(entity, []))
    return plan


def plan_to_json(plan: Plan, *, with_records: bool = True) -> dict[str, Any]:
    def change(c: Change) -> dict[str, Any]:
        out = {"entity": c.entity, "action": c.action, "external_id": c.external_id, "erp_key": c.key or None}
        if c.changed:
            out["changed"] = {n: {"from": (c.before or {}).get(n), "to": c.record.get(n)} for n in c.changed}
        if with_records and c.action == "create":
            out["record"] = c.record
        return out
    return {"tenant": plan.tenant, "counts": plan.counts(),
            "deletes_held": {"reasons": plan.held_reasons, "changes": [change(c) for c in plan.held]},
            "drift": {e: dict(c) for e, c in plan.drift.items() if c},
            "changes": [change(c) for c in plan.changes]}
