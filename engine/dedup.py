"""E-mail as login: resolve groups of persons that share one address, by the tenant's policy.

The portal's login must be unique. For every group of users with the same (normalised) e-mail:
  first_wins         the first by the declared order keeps the address; the others are sent
                     without e-mail (they exist in the portal but cannot be invited);
  none_wins          every member is sent without e-mail;
  merge_partnership  members who are parties of the same contract become one portal user
                     ("Hans und Grete Müller", external_id "<key>+<key>"); what is still shared
                     after merging falls back to the declared fallback policy;
  fail               the run stops before any write and lists the groups.
Winners are sticky: the previous night's winner keeps the address while it still qualifies,
so unrelated changes in the ERP never move a login from one person to another.
"""
from __future__ import annotations

import functools
from collections import Counter, defaultdict
from itertools import compress, repeat
from operator import attrgetter, gt, itemgetter
from typing import Any, Callable, Iterable

from engine.config.model import EmailDedup, PhoneDedup
from engine.entity_data import EntityData, Rec
from engine.errors import DedupFailed
from engine.findings import Finding
from engine.plural import counted
from engine.references import OccupancyIndex

ROLE_RANK = {"owner": 0, "tenant": 1}
PERSON_SALUTATIONS = {"mr", "ms", "mx", "family", None}
NAME_LIMIT = 70


class _Facts:
    """What the winner order looks at, per user: best role, earliest start, contracts."""
    __slots__ = ("role", "start", "contracts", "occupancies")

    def __init__(self):
        self.role, self.start, self.contracts, self.occupancies = 9, None, set(), []


class _FactsTable(dict):
    """external_id -> _Facts. A merged user's facts (_merged_facts of its members') are made
    only when asked for: only a group that merging leaves with more than one user orders them,
    one in twenty-five of a large tenant's groups."""

    def __init__(self, *args):
        super().__init__(*args)
        self.merged_from: dict[str, list[str]] = {}     # merged external_id -> its members

    def __missing__(self, external_id: str) -> _Facts:
        members = self.merged_from[external_id]         # KeyError for an id that is neither
        facts = self[external_id] = _merged_facts([self[m] for m in members])
        return facts


def _shared(users: EntityData, name: str) -> dict[Any, list[str]]:
    """Values of a field that several users hold -> those users, in record order. One pass over
    the values in C finds the shared ones; only their holders are grouped."""
    values = list(map(dict.get, map(attrgetter("data"), users.records.values()), repeat(name)))
    counts = Counter(values)                                        # counted in C
    shared_values = set(filter(None, compress(counts, map(gt, counts.values(), repeat(1)))))
    groups: dict[Any, list[str]] = defaultdict(list)
    if shared_values:
        for external_id, value in compress(zip(users.records, values), map(shared_values.__contains__, values)):
            groups[value].append(external_id)
    return groups


def _facts(members: Iterable[str], occ: EntityData, index: OccupancyIndex | None = None) -> _FactsTable:
    """The facts of each member from its occupancies, in their order; `index`
    (references.index_occupancies, made before the occupancies lost those whose user or unit is
    not sent) spares a pass over all of them."""
    facts = _FactsTable()
    facts.update((m, _Facts()) for m in members)
    if index is None:
        user_ids = list(map(itemgetter("user_id"), map(attrgetter("data"), occ.records.values())))
        found = compress(occ.records.items(), map(facts.__contains__, user_ids))
    else:
        ids, records, by_user = index.ids, occ.records, index.by_user
        in_order = [ids[i] for i in sorted(i for m in facts for i in by_user.get(m, ()))]
        found = [(x, records[x]) for x in in_order if x in records]
    for external_id, rec in found:
        f = facts[rec.data["user_id"]]
        f.occupancies.append(external_id)
        f.role = min(f.role, ROLE_RANK.get(rec.data.get("role"), 9))
        start = rec.data.get("start_date")
        if start is not None and (f.start is None or str(start) < str(f.start)):
            f.start = start
        if rec.contract is not None:
            f.contracts.add(rec.contract)
    return facts


def _order(members: list[str], users: EntityData, facts: dict[str, _Facts], order: tuple[str, ...]) -> list[str]:
    """The members by the declared order: each item a fact (role, start_date), the external_id
    or a field of the user, `-` first for descending; missing values last either way; ties by
    external_id."""
    if len(members) == 2:                      # a couple: the one comparison sorted() makes
        a, b = members
        return [b, a] if _compare(b, a, users, facts, order) < 0 else [a, b]
    return sorted(members, key=functools.cmp_to_key(lambda a, b: _compare(a, b, users, facts, order)))


def _compare(a: str, b: str, users: EntityData, facts: dict[str, _Facts], order: tuple[str, ...]) -> int:
    for item in order:
        va, vb = _value(a, item, users, facts), _value(b, item, users, facts)
        if va == vb:
            continue
        if va is None or vb is None:          # missing values sort last in either direction
            return 1 if va is None else -1
        result = -1 if va < vb else 1
        return -result if item[0] == "-" else result
    return -1 if a < b else (1 if a > b else 0)


def _value(member: str, item: str, users: EntityData, facts: dict[str, _Facts]) -> Any:
    name = item.lstrip("-")
    if name == "role":
        return facts[member].role
    if name == "start_date":
        start = facts[member].start
        return None if start is None else str(start)
    if name == "external_id":
        return member
    return users.records[member].data.get(name)


def dedup_emails(users: EntityData, occ: EntityData, policy: EmailDedup, previous: dict[str, str],
                 findings: list[Finding],
                 holders: Callable[[list[str]], dict[str, str | None]] | None = None,
                 index: OccupancyIndex | None = None) -> dict[str, str]:
    """Resolve shared e-mails in place. Returns the winners to remember: e-mail -> user external_id.
    `index`: references.index_occupancies of `occ` before references were resolved, if made."""
    shared = _shared(users, "email")
    if not shared:
        return {}
    facts = _facts((m for ms in shared.values() for m in ms), occ, index)
    groups = sorted(shared.items())
    merging = policy.policy == "merge_partnership"
    mode = policy.fallback if merging else policy.policy
    # the members of each group by the contracts they share: the partnerships merging makes
    components = {email: _components(members, facts) for email, members in groups} if merging else {}
    if holders is not None and mode == "first_wins":
        # a group that forms tonight: the person who holds the address in the portal keeps it
        # (asked only where merging leaves more than one user to decide between)
        undecided = [(email, ms) for email, ms in groups if not _merged_into_one(components.get(email), users)]
        previous = _with_holders(undecided, previous, holders)
    winners: dict[str, str] = {}
    failed: list[tuple[str, list[str]]] = []
    for email, members in groups:
        if merging:
            members = _merge_partnerships(email, components[email], users, occ, facts, policy, findings)
            if len(members) == 1:
                winners[email] = members[0]
                continue
        ordered = _order(members, users, facts, policy.order)
        if mode == "fail":
            failed.append((email, ordered))
            for m in ordered:
                findings.append(Finding("email_shared_failed", "users", users.records[m].key,
                                        f"{email} is shared by {len(ordered)} persons: "
                                        f"{', '.join(users.records[x].key for x in ordered)}", field="email"))
            continue
        winner = None
        moved = ""
        if mode == "first_wins":
            held = previous.get(email)
            winner = held if held in members else ordered[0]
            winners[email] = winner
            if held is not None and held != winner:     # its holder until now is no longer among those sharing it
                moved = f", until now the login of portal user {held!r}"
        for m in ordered:
            if m == winner:
                continue
            users.records[m].data["email"] = None
            users.packed_rows.pop(m, None)
            whom = f"kept by {users.records[winner].key}{moved}" if winner else "kept by nobody (policy none_wins)"
            findings.append(Finding("email_shared", "users", users.records[m].key,
                                    f"{email} is shared by {len(ordered)} persons; {whom}; "
                                    "sent without e-mail (cannot be invited)", field="email"))
    if failed:
        lines = [f"  {email}: {', '.join(users.records[m].key for m in ms)}" for email, ms in failed[:20]]
        more = f"\n  ... and {counted(len(failed) - 20, 'more group')}" if len(failed) > 20 else ""
        are = "is" if len(failed) == 1 else "are"
        raise DedupFailed(f"{counted(len(failed), 'e-mail address', 'e-mail addresses')} {are} shared by several "
                          "persons and the dedup "
                          f"policy is 'fail'; nothing was written:\n" + "\n".join(lines) + more,
                          hint="give each person their own address in the ERP, or choose another dedup policy")
    return winners


def settle_restored_partners(users: EntityData, occ: EntityData, units: EntityData, rules, findings: list[Finding]) -> None:
    """After dedup: a refused person taken back as last merged (engine.normalize._restore_partners)
    that dedup merged again is reported as kept (invalid_kept); one that was not merged (its
    partner no longer shares the address or a contract) is refused again, with its occupancies:
    a record never sent on its own stays out."""
    if not users.restored_partners:
        return
    from engine.references import drop_users_without_occupancy, resolve_occupancy_references
    alone = False
    for external_id, (merged_id, rec, reason) in sorted(users.restored_partners.items()):
        if users.excluded.get(external_id) == "partnership_merged":
            findings.append(Finding("invalid_kept", "users", rec.key,
                                    f"not updated: merged into portal user {merged_id!r} with its data as the last "
                                    "run sent it, until the ERP's record passes the rules again (see its "
                                    f"{reason} finding)"))
        else:
            users.records.pop(external_id, None)
            users.packed_rows.pop(external_id, None)
            users.excluded[external_id] = reason
            users.invalid[external_id] = rec
            alone = True
    if alone:
        dropped = resolve_occupancy_references(occ, users, units, findings)
        drop_users_without_occupancy(users, occ, rules, findings, None, dropped)


def _merged_id(members: Iterable[str]) -> str:
    """The external_id of the portal user a partnership is merged into: deterministic."""
    return "+".join(sorted(members))


def _merged_into_one(components: list[list[str]] | None, users: EntityData) -> bool:
    """Whether merging makes one user of a group (_merge_partnerships: one partnership, whose
    merged id no other record has)."""
    return components is not None and len(components) == 1 and _merged_id(components[0]) not in users.records


def _with_holders(groups: list[tuple[str, list[str]]], previous: dict[str, str],
                  holders: Callable[[list[str]], dict[str, str | None]]) -> dict[str, str]:
    """The previous winners, and for a group that forms tonight (none of its members won its
    address before) the member who holds the address in the portal, if exactly one does."""
    unsettled = [m for email, ms in groups if previous.get(email) not in ms for m in ms]
    held = holders(unsettled) if unsettled else {}
    previous = dict(previous)
    for email, ms in groups:
        owners = [m for m in ms if held.get(m) == email]
        if previous.get(email) not in ms and len(owners) == 1:
            previous[email] = owners[0]
    return previous


def _components(members: list[str], facts: dict[str, _Facts]) -> list[list[str]]:
    """The members grouped by the contracts they share (directly or through another member), in
    the order of their first member."""
    if len(members) == 2:                      # the common case, a couple: without union-find
        a, b = members
        return [members] if facts[a].contracts & facts[b].contracts else [[a], [b]]
    parent = {m: m for m in members}

    def root(m: str) -> str:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    by_contract: dict[str, list[str]] = defaultdict(list)
    for m in members:
        for c in facts[m].contracts:
            by_contract[c].append(m)
    for parties in by_contract.values():
        for other in parties[1:]:
            parent[root(other)] = root(parties[0])
    components: dict[str, list[str]] = defaultdict(list)
    for m in members:
        components[root(m)].append(m)
    return list(components.values())


def _merge_partnerships(email: str, components: list[list[str]], users: EntityData, occ: EntityData,
                        facts: dict[str, _Facts], policy: EmailDedup, findings: list[Finding]) -> list[str]:
    """Merge the members of each component (_components: they share a contract); returns the
    group's members after merging. A partnership whose merged id is already another ERP record's
    external_id is not merged (that record would be replaced): its members stay apart, each with
    a finding."""
    if len(components) == 1 and len(components[0]) == 2:      # a couple of one contract: the common case
        a, b = components[0]
        merged_id = a + "+" + b if a < b else b + "+" + a       # _merged_id
        if merged_id not in users.records:
            if _compare(b, a, users, facts, policy.order) < 0:    # _order of two
                a, b = b, a
            return [_merge_couple(email, a, b, merged_id, users, occ, facts, policy, findings)]
    result = []
    for component in components:
        if len(component) == 1:
            result.append(component[0])
        elif (merged_id := _merged_id(component)) in users.records:
            result.extend(component)
            keys = ", ".join(users.records[m].key for m in component)
            for m in component:
                findings.append(Finding("partnership_not_merged", "users", users.records[m].key,
                                        f"shares {email} and a contract with {keys}, but the merged user's "
                                        f"external_id {merged_id!r} is already ERP record "
                                        f"{users.records[merged_id].key}'s; sent apart"))
        else:
            result.append(_merge(email, _order(component, users, facts, policy.order), users, occ, facts, policy,
                                 findings))
    return sorted(result)


def _merge(email: str, ordered: list[str], users: EntityData, occ: EntityData, facts: dict[str, _Facts],
           policy: EmailDedup, findings: list[Finding]) -> str:
    merged_id = _merged_id(ordered)
    if len(ordered) == 2:
        return _merge_couple(email, ordered[0], ordered[1], merged_id, users, occ, facts, policy, findings)
    recs = list(map(users.records.__getitem__, ordered))
    datas = list(map(attrgetter("data"), recs))
    data = dict(datas[0])
    data["external_id"] = merged_id
    lasts = [d.get("last_name") or "" for d in datas]
    firsts = list(map(dict.get, datas, repeat("first_name")))
    if len(set(map(str.casefold, lasts))) == 1:
        data["first_name"] = policy.joiner.join(filter(None, firsts)) or None
        data["last_name"] = lasts[0]
    else:
        data["first_name"] = None
        data["last_name"] = policy.joiner.join([f"{f} {l}" if f and l else f or l for f, l in zip(firsts, lasts)])
    if PERSON_SALUTATIONS.issuperset(map(dict.get, datas, repeat("salutation"))):
        data["salutation"] = "family"
    data["title"] = None
    for phone_field in ("phone", "mobile"):
        data[phone_field] = next(filter(None, map(dict.get, datas, repeat(phone_field))), None)
    key = "+".join([r.key for r in recs])
    _cut_long_names(data, key, findings)
    for m, r in zip(ordered, recs):
        del users.records[m]
        users.excluded[m] = "partnership_merged"
        others = ", ".join([x.key for x in recs if x is not r])
        findings.append(Finding("partnership_merged", "users", r.key,
                                f"shares {email} and a contract with {others}; sent as one portal user {merged_id!r}"))
    users.records[merged_id] = Rec(key, data)
    users.partners[merged_id] = datas
    users.packed_rows.pop(merged_id, None)           # a record of that id dropped earlier may have left one
    facts.merged_from[merged_id] = ordered
    _rewire_occupancies(ordered, merged_id, occ, facts, findings)
    return merged_id


def _cut_long_names(data: dict[str, Any], key: str, findings: list[Finding]) -> None:
    """A merged user's names cut to the portal's limit, each cut a finding."""
    for name in ("first_name", "last_name"):
        value = data.get(name)
        if value and len(value) > NAME_LIMIT:
            data[name] = value[:NAME_LIMIT].rstrip()
            findings.append(Finding("name_truncated", "users", key,
                                    f"merged name has {len(value)} characters, cut to {NAME_LIMIT}", field=name))


def _merged_facts(member_facts: list[_Facts]) -> _Facts:
    """The facts of a merged user: its members' best role, earliest start and every contract."""
    merged = _Facts()
    merged.role = min([f.role for f in member_facts])
    starts = [str(f.start) for f in member_facts if f.start is not None]
    merged.start = min(starts) if starts else None
    merged.contracts = set().union(*[f.contracts for f in member_facts])
    return merged


def _merge_couple(email: str, a: str, b: str, merged_id: str, users: EntityData, occ: EntityData,
                  facts: _FactsTable, policy: EmailDedup, findings: list[Finding]) -> str:
    """_merge of two persons (a first by the order) into `merged_id`, written out for the common
    case, a couple: the same record, findings and facts as _merge gives."""
    records = users.records
    ra, rb = records[a], records[b]
    da, db = ra.data, rb.data
    data = da.copy()
    data["external_id"] = merged_id
    la, lb = da.get("last_name") or "", db.get("last_name") or ""
    fa, fb = da.get("first_name"), db.get("first_name")
    if la.casefold() == lb.casefold():
        data["first_name"] = (policy.joiner.join([fa, fb]) if fa and fb else fa or fb) or None
        data["last_name"] = la
    else:
        data["first_name"] = None
        data["last_name"] = (f"{fa} {la}" if fa and la else fa or la) + policy.joiner + \
            (f"{fb} {lb}" if fb and lb else fb or lb)
    if da.get("salutation") in PERSON_SALUTATIONS and db.get("salutation") in PERSON_SALUTATIONS:
        data["salutation"] = "family"
    data["title"] = None
    data["phone"] = da.get("phone") or db.get("phone") or None
    data["mobile"] = da.get("mobile") or db.get("mobile") or None
    key = ra.key + "+" + rb.key
    first, last = data["first_name"], data["last_name"]
    if first and len(first) > NAME_LIMIT or last and len(last) > NAME_LIMIT:
        _cut_long_names(data, key, findings)
    del records[a], records[b]
    users.excluded[a] = users.excluded[b] = "partnership_merged"
    tail = f"; sent as one portal user {merged_id!r}"
    findings.append(Finding("partnership_merged", "users", ra.key, f"shares {email} and a contract with {rb.key}{tail}"))
    findings.append(Finding("partnership_merged", "users", rb.key, f"shares {email} and a contract with {ra.key}{tail}"))
    records[merged_id] = Rec(key, data)
    users.partners[merged_id] = [da, db]
    if users.packed_rows:                            # a record of that id dropped earlier may have left one
        users.packed_rows.pop(merged_id, None)
    facts.merged_from[merged_id] = [a, b]
    _rewire_occupancies((a, b), merged_id, occ, facts, findings)
    return merged_id


def _rewire_occupancies(members: list[str], merged_id: str, occ: EntityData, facts: dict[str, _Facts],
                        findings: list[Finding]) -> None:
    """Point the members' occupancies at the merged user; one occupancy per contract, unit and role."""
    kept: dict[tuple, Rec] = {}
    records, packed = occ.records, occ.packed_rows
    ids = [x for m in members for x in facts[m].occupancies]
    ids.sort()
    for external_id in ids:
        rec = records.get(external_id)
        if rec is None:
            continue
        d = rec.data
        d["user_id"] = merged_id
        if packed:
            packed.pop(external_id, None)
        first = kept.setdefault((rec.contract, d.get("unit_id"), d.get("role")), rec)
        if first is rec:
            continue
        kept_data = first.data
        kept_data["start_date"] = _min_date(kept_data.get("start_date"), d.get("start_date"))
        kept_data["end_date"] = _max_end(kept_data.get("end_date"), d.get("end_date"))
        del records[external_id]
        occ.excluded[external_id] = "partnership_merged"
        findings.append(Finding("partnership_merged", "occupancies", rec.key,
                                f"merged into occupancy {kept_data['external_id']!r} of portal user {merged_id!r}"))


def _min_date(a, b):
    """The earlier of two dates (ISO texts, as normalised; other values by their text), the first if equal."""
    if a is None or b is None:
        return b if a is None else a
    if type(a) is type(b) is str:           # the common case, without min()'s key
        return b if b < a else a
    return min(a, b, key=str)


def _max_end(a, b):
    """The later of two end dates, the first if equal; None (open) if either is."""
    if a is None or b is None:
        return None
    if type(a) is type(b) is str:
        return b if b > a else a
    return max(a, b, key=str)


def dedup_phones(users: EntityData, occ: EntityData, policy: PhoneDedup, order: tuple[str, ...],
                 findings: list[Finding]) -> None:
    """With phone.unique: a number shared by several users stays with the first by order."""
    if not policy.unique:
        return
    for name in ("phone", "mobile"):
        shared = _shared(users, name)
        if not shared:
            continue
        facts = _facts((m for ms in shared.values() for m in ms), occ)
        for number, members in sorted(shared.items()):
            ordered = _order(members, users, facts, order)
            for m in ordered[1:]:
                users.records[m].data[name] = None
                users.packed_rows.pop(m, None)
                findings.append(Finding("phone_shared", "users", users.records[m].key,
                                        f"{number} is shared by {len(ordered)} persons; kept by "
                                        f"{users.records[ordered[0]].key}; sent without it", field=name))
