"""References and time: drop what would hang in the air, and what is outside the contract window.

- a unit whose building is missing (orphan_unit) or excluded is not sent;
- an occupancy outside the contract window (ended before the grace period, or starting after the
  future horizon) is not sent; one whose user or unit is missing or excluded is dropped;
- users with no occupancy left are not sent (rules.users_without_occupancy = skip).
"""
from __future__ import annotations

import datetime as dt

from engine.config.model import ContractWindow, Rules
from engine.findings import Finding
from engine.mapping import EntityData


def window_bounds(window: ContractWindow, run_date: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """(reference date, earliest end date kept, latest start date kept), both edges inclusive."""
    ref = window.reference_date or run_date
    return ref, ref - dt.timedelta(days=window.grace_days), ref + dt.timedelta(days=window.future_days)


def _date(value) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def resolve_units(units: EntityData, buildings: EntityData, findings: list[Finding]) -> None:
    for external_id, rec in list(units.records.items()):
        building = rec.data.get("building_id")
        if building in buildings.records:
            continue
        if building in buildings.excluded:
            findings.append(Finding("unit_of_excluded_building", "units", rec.key,
                                    f"building {building} is excluded ({buildings.excluded[building]})"))
            units.excluded[external_id] = "unit_of_excluded_building"
        else:
            findings.append(Finding("orphan_unit", "units", rec.key,
                                    f"building {building!r} does not exist in the ERP", field="building_id"))
            units.excluded[external_id] = "orphan_unit"
        del units.records[external_id]


def resolve_occupancies(occ: EntityData, users: EntityData, units: EntityData, window: ContractWindow,
                        run_date: dt.date, findings: list[Finding]) -> None:
    ref, earliest_end, latest_start = window_bounds(window, run_date)
    add = findings.append
    for external_id, rec in list(occ.records.items()):
        d = rec.data
        start, end = _date(d.get("start_date")), _date(d.get("end_date"))
        reason = None
        if end is not None and end < earliest_end:
            reason = "contract_ended"
            add(Finding(reason, "occupancies", rec.key,
                        f"ended {end.isoformat()}, before {earliest_end.isoformat()} (reference date {ref.isoformat()} "
                        f"minus {window.grace_days} grace days)"))
        elif start is not None and start > latest_start:
            reason = "contract_future"
            add(Finding(reason, "occupancies", rec.key,
                        f"starts {start.isoformat()}, after {latest_start.isoformat()} (reference date {ref.isoformat()} "
                        f"plus {window.future_days} days)"))
        else:
            for ref_field, target, label in (("user_id", users, "user"), ("unit_id", units, "unit")):
                value = d.get(ref_field)
                if value in target.records:
                    continue
                if value in target.excluded:
                    reason = f"occupancy_excluded_{label}"
                    add(Finding(reason, "occupancies", rec.key,
                                f"{label} {value} is excluded ({target.excluded[value]})", field=ref_field))
                else:
                    reason = f"occupancy_unknown_{label}"
                    add(Finding(reason, "occupancies", rec.key, f"{label} {value!r} does not exist in the ERP",
                                field=ref_field))
                break
        if reason:
            del occ.records[external_id]
            occ.excluded[external_id] = reason


def drop_users_without_occupancy(users: EntityData, occ: EntityData, rules: Rules, findings: list[Finding]) -> None:
    if rules.users_without_occupancy == "send":
        return
    occupied = {rec.data["user_id"] for rec in occ.records.values()}
    for external_id, rec in list(users.records.items()):
        if external_id not in occupied:
            findings.append(Finding("user_without_occupancy", "users", rec.key,
                                    "no contract in the contract window; not sent"))
            del users.records[external_id]
            users.excluded[external_id] = "user_without_occupancy"
