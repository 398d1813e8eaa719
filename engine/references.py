"""References and time: drop what would hang in the air, and what is outside the contract window.

- a unit whose building is missing (orphan_unit) or excluded is not sent;
- an occupancy outside the contract window (ended before the grace period, or starting after the
  future horizon) is not sent; one whose user or unit is missing or excluded is dropped; a date
  that cannot be read as one (to_date leaves such a text as it is) decides nothing here: the
  record check refuses the occupancy and names the value;
- users with no occupancy left are not sent (rules.users_without_occupancy = skip).
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache
from itertools import compress, filterfalse, repeat
from operator import attrgetter, itemgetter, not_
from typing import Any, Callable, NamedTuple, Sequence

from engine.config.model import ContractWindow, Rules, Tenant
from engine.entity_data import EntityData
from engine.expr._columns import iso_column
from engine.expr.functions import is_iso_date
from engine.findings import Finding


def tenant_today(tenant: Tenant) -> dt.date:
    """The day it is now for the tenant: in its schedule's time zone (the one its cron times are
    in), so that a run after the tenant's midnight measures its window from the tenant's day, not
    from the sync server's (a server in UTC is still on the day before until 01:00 or 02:00
    Berlin time); on this machine's clock for a tenant without a schedule."""
    if tenant.schedule is None:
        return dt.date.today()
    import zoneinfo
    return dt.datetime.now(zoneinfo.ZoneInfo(tenant.schedule.timezone)).date()


def window_bounds(window: ContractWindow, run_date: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """(reference date, earliest end date kept, latest start date kept), both edges inclusive."""
    ref = window.reference_date or run_date
    return ref, _shifted(ref, -window.grace_days), _shifted(ref, window.future_days)


def _shifted(day: dt.date, days: int) -> dt.date:
    """`day` moved by `days`; a window that reaches past the calendar (future_days: 9999999, a
    --date in the year 9999) ends at its first or last day: no ERP date lies beyond it."""
    try:
        return day + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def _iso(value) -> str | None:
    """Dates compare as ISO strings (YYYY-MM-DD), whatever type the source delivered."""
    if value is None or value.__class__ is str:
        return value[:10] if value else None
    if isinstance(value, dt.date):
        return value.isoformat()[:10]
    return str(value)[:10]


def resolve_units(units: EntityData, buildings: EntityData, findings: list[Finding]) -> None:
    for external_id in _failing(units, buildings.records.__contains__, "building_id"):
        rec = units.records[external_id]
        building = rec.data.get("building_id")
        if building in buildings.excluded:
            findings.append(Finding("unit_of_excluded_building", "units", rec.key,
                                    f"building {building} is excluded ({buildings.excluded[building]})"))
            units.excluded[external_id] = "unit_of_excluded_building"
        else:
            findings.append(Finding("orphan_unit", "units", rec.key,
                                    f"building {building!r} does not exist in the ERP", field="building_id"))
            units.excluded[external_id] = "orphan_unit"
        del units.records[external_id]


WINDOW_FIELDS = ("start_date", "end_date")


class WindowGate:
    """The Mapper's gate for occupancies: the reason a contract is outside the window, or None.

    Called with a record's early fields (a dict), or over a batch's columns (`over_columns`)."""

    def __init__(self, window: ContractWindow, run_date: dt.date):
        _, earliest_end, latest_start = window_bounds(window, run_date)
        self.first_end, self.last_start = earliest_end.isoformat(), latest_start.isoformat()

    @property
    def bounds(self) -> tuple[str, str]:
        """What decides the gate's answers: two gates with the same bounds answer alike."""
        return self.first_end, self.last_start

    def ended(self, end) -> bool:
        end = _readable_iso(end)
        return end is not None and end < self.first_end

    def future(self, start) -> bool:
        start = _readable_iso(start)
        return start is not None and start > self.last_start

    def __call__(self, data: dict) -> str | None:
        if self.ended(data.get("end_date")):        # a mapping without the field: no end, no start
            return "contract_ended"
        if self.future(data.get("start_date")):
            return "contract_future"
        return None

    def over_columns(self, early: dict[str, Sequence], external_ids: Sequence[str]) -> list[str | None]:
        ends = early["end_date"] if "end_date" in early else [None] * len(external_ids)   # a mapping without
        starts = early["start_date"] if "start_date" in early else [None] * len(external_ids)   # it: no end, no start
        if _iso_dates(ends) and _iso_dates(starts):      # then _iso(v) is v: compared as they are
            first_end, last_start = self.first_end, self.last_start
            return ["contract_ended" if e is not None and e < first_end else
                    "contract_future" if s is not None and s > last_start else None for e, s in zip(ends, starts)]
        ended = _per_value(self.ended, ends)
        future = _per_value(self.future, starts)
        return ["contract_ended" if e else "contract_future" if f else None for e, f in zip(ended, future)]


def window_gate(window: ContractWindow, run_date: dt.date) -> tuple[tuple[str, ...], WindowGate]:
    """(fields, gate) for the Mapper: the reason an occupancy is outside the window, or None."""
    return WINDOW_FIELDS, WindowGate(window, run_date)


def _iso_dates(values: Sequence) -> bool:
    """Whether every value is null or an ISO date text (what to_date gives for a date it reads).
    One pass over the values: dates repeat, a few hundred distinct days in a slice of contracts,
    each checked once for the run (is_iso_date); none where to_date made the column of ISO
    dates and nulls only (iso_column: a database's ISO texts given back as they were, or a
    driver's dates read as texts)."""
    if iso_column(values):
        return True
    try:
        distinct = set(values)
    except TypeError:                                # a value that is no date at all (a list)
        return False
    distinct.discard(None)
    return all(map(is_iso_date, distinct))


def _readable_iso(value) -> str | None:
    """_iso of a value, None where it is no readable date (the record check refuses such a text)."""
    iso = _iso(value)
    return iso if iso is None or is_iso_date(iso) else None


def _per_value(fn, values: Sequence) -> list:
    from engine.expr._columns import map_memo
    memo = map_memo(fn, values)
    return memo if memo is not None else list(map(fn, values))


def window_finding(key: str, reason: str, data: dict, window: ContractWindow, run_date: dt.date) -> Finding:
    return window_findings([(key, reason, data)], window, run_date)[0]


def window_findings(gated: Sequence[tuple[str, str, dict]], window: ContractWindow,
                    run_date: dt.date) -> list[Finding]:
    """A finding per occupancy outside the window: (ERP key, reason, its fields) each."""
    ended, future = _window_texts(window, run_date)
    ended, future = ", " + ended, ", " + future
    return [Finding(reason, "occupancies", key, "ended " + str(_iso(data.get("end_date"))) + ended
                    if reason == "contract_ended" else "starts " + str(_iso(data.get("start_date"))) + future)
            for key, reason, data in gated]


@lru_cache(maxsize=16)
def _window_texts(window: ContractWindow, run_date: dt.date) -> tuple[str, str]:
    """The end of the window findings' messages (the same for every contract of a run)."""
    ref, earliest_end, latest_start = window_bounds(window, run_date)
    return (f"before {earliest_end.isoformat()} (reference date {ref.isoformat()} minus {window.grace_days} grace days)",
            f"after {latest_start.isoformat()} (reference date {ref.isoformat()} plus {window.future_days} days)")


def apply_window(occ: EntityData, window: ContractWindow, run_date: dt.date, findings: list[Finding]) -> None:
    """Drop occupancies that ended before the grace period or start after the future horizon;
    nothing to do where every record passed the same window as it was mapped (occ.window)."""
    _, gate = window_gate(window, run_date)
    if occ.window is not None and occ.window == gate.bounds:
        return
    try:                                                 # a no-op after extract: checked column-wise
        datas = [rec.data for rec in occ.records.values()]
        early = {name: list(map(dict.get, datas, repeat(name))) for name in WINDOW_FIELDS}
        reasons = gate.over_columns(early, list(occ.records))
    except Exception:                                    # what the record-by-record check raises
        reasons = [gate(rec.data) for rec in occ.records.values()]
    dropped = [(external_id, rec, reason) for (external_id, rec), reason in zip(occ.records.items(), reasons)
               if reason is not None] if any(reasons) else []
    for external_id, rec, reason in dropped:
        findings.append(window_finding(rec.key, reason, rec.data, window, run_date))
        del occ.records[external_id]
        occ.excluded[external_id] = reason


def _failing(data: EntityData, holds: Callable[[Any], bool], name: str) -> list[str]:
    """The external_ids of the records whose field `name` (dict.get) does not pass `holds`, in order."""
    values = map(dict.get, map(attrgetter("data"), data.records.values()), repeat(name))
    return list(compress(data.records, map(not_, map(holds, values))))


_KEEP_OR_SKIP = {True: None, False: "user_without_occupancy"}


class OccupancyGate:
    """The users' gate: persons with no occupancy left are not mapped. `wanted`: the user_ids
    of the occupancies kept (occupied_users)."""

    def __init__(self, wanted: set[str]):
        self.wanted = wanted

    def __call__(self, data: dict) -> str | None:
        return None if data["external_id"] in self.wanted else "user_without_occupancy"

    def over_columns(self, early: dict[str, Sequence], external_ids: Sequence[str]) -> list[str | None]:
        return list(map(_KEEP_OR_SKIP.__getitem__, map(self.wanted.__contains__, external_ids)))


def occupied_users(occ: EntityData) -> set[str]:
    """The user_ids of the occupancies kept."""
    return set(map(itemgetter("user_id"), map(attrgetter("data"), occ.records.values())))


def occupancy_gate(occ: EntityData | set[str]) -> tuple[tuple[str, ...], OccupancyGate]:
    """(fields, gate) for the users' Mapper: persons with no occupancy left are not mapped."""
    return (), OccupancyGate(occ if isinstance(occ, set) else occupied_users(occ))


class OccupancyIndex(NamedTuple):
    """The occupancies' references, read once for the steps that need the users
    (resolve_occupancy_references, drop_users_without_occupancy, dedup's facts). Made by
    index_occupancies once the occupancies are normalised; a run with a second process makes it
    while it waits for the users (engine.parallel_prepare)."""
    ids: list[str]                 # the occupancies' external_ids, in order
    user_ids: list                 # each one's user_id
    unit_ok: list[bool]            # whether its unit is among the units sent
    by_user: dict[str, list[int]]  # user_id -> the positions of its occupancies whose unit is sent
    occupied: set                  # every user_id of them (set(user_ids))
    unit_missing: list[int]        # the positions whose unit is not sent, in order

    def fits(self, occ: EntityData) -> bool:
        """Whether it was made from these occupancies (records are only ever removed)."""
        return len(self.ids) == len(occ.records)


def index_occupancies(occ: EntityData, units: EntityData) -> OccupancyIndex:
    datas = list(map(attrgetter("data"), occ.records.values()))
    user_ids = list(map(dict.get, datas, repeat("user_id")))
    unit_ok = list(map(units.records.__contains__, map(dict.get, datas, repeat("unit_id"))))
    by_user: dict[str, list[int]] = {}
    for i in compress(range(len(user_ids)), unit_ok):
        by_user.setdefault(user_ids[i], []).append(i)
    unit_missing = list(compress(range(len(user_ids)), map(not_, unit_ok)))
    return OccupancyIndex(list(occ.records), user_ids, unit_ok, by_user, set(user_ids), unit_missing)


def resolve_occupancy_references(occ: EntityData, users: EntityData, units: EntityData,
                                 findings: list[Finding], index: OccupancyIndex | None = None) -> list[tuple[str, Any]]:
    """Drop occupancies whose user or unit is missing or excluded; returns the (external_id,
    user_id) of those dropped. `index`: index_occupancies of `occ` and `units`, if made already."""
    if index is None or not index.fits(occ):
        index = index_occupancies(occ, units)
    add = findings.append
    dropped = []
    # the positions whose user or unit is not sent: those of the users not sent (few), from the
    # index, and those whose unit is not, in order
    no_user = index.occupied.difference(users.records.keys())
    lacking = sorted({*index.unit_missing, *(i for u in no_user for i in index.by_user.get(u, ()))}) \
        if no_user else index.unit_missing
    for i in lacking:
        external_id = index.ids[i]
        rec = occ.records[external_id]
        d = rec.data
        for ref_field, target, label in (("user_id", users, "user"), ("unit_id", units, "unit")):
            value = d.get(ref_field)
            if value in target.records:
                continue
            if value in target.excluded:          # the codes written out: docs/findings.md lists them
                reason = "occupancy_excluded_user" if label == "user" else "occupancy_excluded_unit"
                add(Finding(reason, "occupancies", rec.key,
                            f"{label} {value} is excluded ({target.excluded[value]})", field=ref_field))
            else:
                reason = "occupancy_unknown_user" if label == "user" else "occupancy_unknown_unit"
                add(Finding(reason, "occupancies", rec.key, f"{label} {value!r} does not exist in the ERP",
                            field=ref_field))
            dropped.append((external_id, reason, d.get("user_id")))
            break
    for external_id, reason, _ in dropped:
        del occ.records[external_id]
        occ.excluded[external_id] = reason
    return [(external_id, user_id) for external_id, _, user_id in dropped]


def resolve_occupancies(occ: EntityData, users: EntityData, units: EntityData, window: ContractWindow,
                        run_date: dt.date, findings: list[Finding]) -> None:
    apply_window(occ, window, run_date, findings)
    resolve_occupancy_references(occ, users, units, findings)


def drop_users_without_occupancy(users: EntityData, occ: EntityData, rules: Rules, findings: list[Finding],
                                 index: OccupancyIndex | None = None,
                                 dropped: list[tuple[str, Any]] | None = None) -> None:
    """Users with no occupancy left are not sent (unless the tenant sends them). `index`:
    index_occupancies of `occ`, if made already; `dropped`: what resolve_occupancy_references
    dropped since, when this ran on the users once already after the index was made (then only
    the users of those occupancies may have lost their last one)."""
    if rules.users_without_occupancy == "send":
        return
    if index is not None and index.fits(occ):
        unoccupied = list(filterfalse(index.occupied.__contains__, users.records))
    elif index is not None and dropped is not None and len(index.ids) == len(occ.records) + len(dropped):
        ids, records = index.ids, occ.records
        lost = {user_id for _, user_id in dropped
                if not any(ids[i] in records for i in index.by_user.get(user_id, ()))}
        unoccupied = list(filter(lost.__contains__, users.records))
    else:
        unoccupied = list(filterfalse(occupied_users(occ).__contains__, users.records))
    why: dict[Any, set[str]] = {}      # a person whose contracts in the window were dropped just now: why
    for occupancy_id, user_id in dropped or ():
        why.setdefault(user_id, set()).add(occ.excluded.get(occupancy_id, ""))
    for external_id in unoccupied:
        rec = users.records.pop(external_id)
        reasons = why.get(external_id)
        findings.append(Finding("user_without_occupancy", "users", rec.key,
                                f"no occupancy left: its contracts in the contract window are not sent "
                                f"({', '.join(sorted(reasons))}); not sent" if reasons else
                                "no contract in the contract window; not sent"))
        users.excluded[external_id] = "user_without_occupancy"
