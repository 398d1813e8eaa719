"""normalise -> resolve references and time -> dedup: pure functions over the extracted records,
which they change in place. Split in two around the users, so that a run whose users a second
process extracts (engine.parallel_prepare) does the first part while it waits for them."""
from __future__ import annotations

import datetime as dt
from itertools import compress
from operator import attrgetter

from engine.config.model import Tenant
from engine.dedup import dedup_emails, dedup_phones, settle_restored_partners
from engine.errors import DedupFailed
from engine.entity_data import EntityData
from engine.findings import Finding
from engine.normalize import LastSent, keep_last_sent, normalize_entity
from engine.references import (OccupancyIndex, apply_window, drop_users_without_occupancy, index_occupancies,
                               resolve_occupancy_references, resolve_units)


def transform(tenant: Tenant, data: dict[str, EntityData], run_date: dt.date, previous_winners: dict[str, str],
              findings: list[Finding], holders=None, last_sent: LastSent | None = None) -> dict[str, str]:
    """normalise -> resolve references and time -> dedup. Pure: changes `data` in place.

    The window and the persons without a contract are applied again here (a no-op after
    `extract`, which skips them early), so that this step is complete on its own; occupancies
    that extraction marked with the window they passed (EntityData.window) are not looked at
    again. `last_sent`:
    what the engine last wrote, for the records that break a rule now (keep_last_sent)."""
    before, after = transform_without_users(tenant, data, run_date, last_sent=last_sent)
    return transform_with_users(tenant, data, before, None, after, previous_winners, findings, holders,
                                last_sent=last_sent)


def transform_without_users(tenant: Tenant, data: dict[str, EntityData], run_date: dt.date, *,
                            pack: bool = False, last_sent: LastSent | None = None) -> tuple[list[Finding], list[Finding]]:
    """The steps of `transform` that do not look at the users (so a run can do them while the
    users are still being extracted). Their findings come in two lists, those that come before
    the users' normalisation and those after, the order `transform` reports them in. `pack`:
    pack each record as normalised (EntityData.packed_rows), for a diff against a packed portal."""
    before: list[Finding] = []
    after: list[Finding] = []
    buildings, units, occ = data["buildings"], data["units"], data["occupancies"]
    for entity in ("buildings", "units"):
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
    recount_unknown_codes(data, findings)
    try:
        winners = dedup_emails(users, occ, tenant.email_dedup, previous_winners, findings, holders, index)
    except DedupFailed as exc:      # named, as every failure is: a scheduler's mail holds many tenants' lines
        raise DedupFailed(f"tenant '{tenant.id}': {exc.message}", hint=exc.hint) from None
    settle_restored_partners(users, occ, data["units"], tenant.rules, findings)
    dedup_phones(users, occ, tenant.phone_dedup, tenant.email_dedup.order, findings)
    return winners


def recount_unknown_codes(data: dict[str, EntityData], findings: list[Finding]) -> None:
    """code_not_in_table of buildings, units and occupancies counted again over the records still
    sent once references and the window are resolved: a unit of an excluded building whose type
    code the table lacks is no record the property manager need check (its own finding says why
    it is not sent). In place, where extraction reported them; a code none of whose records is
    sent any more loses its finding; a record refused by the record check still counts (the
    table's default may be what it was refused for). The users' are counted as extracted: a
    second process maps and counts them (engine.parallel), and its gate keeps only persons with a
    contract already. Each entity's findings are one run of the list (one extend each)."""
    entities = [e for e in ("buildings", "units", "occupancies")
                if data[e].unknown_codes is not None and data[e].unknown_codes.codes]
    if not entities:
        return
    # a few among hundreds of thousands of findings: looked for in C
    found = list(compress(range(len(findings)), map("code_not_in_table".__eq__, map(attrgetter("code"), findings))))
    places = {e: at for e in entities if (at := [i for i in found if findings[i].entity == e])}
    for entity, at in sorted(places.items(), key=lambda ea: -ea[1][0]):   # from the back: the others' stay valid
        d = data[entity]
        # refused records count: the default the code became may be what the record check refused
        again = d.unknown_codes.findings({**d.invalid, **d.records} if d.invalid else d.records)
        for i in reversed(at):
            del findings[i]
        findings[at[0]:at[0]] = again


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
