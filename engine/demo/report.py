"""What the engine made of each hard case of the demo ERP: the demo command's closing table.

For every manifest case: how many instances the ERP holds, which findings the run reported on
their ERP keys, and how many of their records are in the portal. It lets a person see at a
glance that every case of docs/demo-erp.md was handled, and how.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from engine.demo.manifest import Manifest
from engine.findings import Finding

_ENTITY = {"objektnr": "buildings", "einheitid": "units", "adressnr": "users"}
_FIELD = {"telefon": "phone", "mobil": "mobile", "nachname": "last_name", "vorname": "first_name",
          "anrede": "salutation", "email": "email"}
"""The portal field each ERP column of the shipped mapping fills (mappings/domus-sql.yaml): an
instance about one column (its `field`) counts only the findings on that field, or on none."""


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def hard_case_lines(manifest: Manifest, findings: Iterable[Finding], portal: dict[str, set[str]]) -> list[str]:
    """`portal`: entity -> external_ids present after the run. Per case: its instances; the
    findings on their ERP keys, each code with the number of instances it was reported for
    ("no finding": instances without any); and of the case's distinct ERP records those in the
    portal, per entity ("users 40 of 40, as 20 merged users"; the occupancies made of its
    contracts)."""
    by_key: dict[tuple[str, str], set[tuple[str, str | None]]] = defaultdict(set)    # -> (code, field)
    by_contract: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        by_key[(f.entity, f.key)].add((f.code, f.field))
        if f.entity == "occupancies":
            by_contract[f.key.split("/")[0]].add(f.code)
    merged = {part: eid for eid in portal.get("users", ()) if "+" in eid for part in eid.split("+")}
    contracts_in_portal = Counter(eid.split("-")[0] for eid in portal.get("occupancies", ()))
    lines = []
    for code, instances in manifest.as_dict()["cases"].items():
        codes: Counter = Counter()
        keys: dict[str, set[str]] = defaultdict(set)          # entity -> the case's distinct ERP keys
        contracts: set[str] = set()
        for inst in instances:
            seen: set[str] = set()
            field = _FIELD.get(inst.get("field"))
            for kind, entity in _ENTITY.items():
                for key in map(str, _as_list(inst.get(kind, []))):
                    seen |= {code for code, on in by_key.get((entity, key), ()) if field is None or on in (None, field)}
                    keys[entity].add(key)
            for contract in map(str, _as_list(inst.get("vertragnr", []))):
                seen |= by_contract.get(contract, set())
                contracts.add(contract)
            codes.update(seen or {"no finding"})
        found = ", ".join(f"{c} {n}" for c, n in sorted(codes.items(), key=lambda cn: (cn[0] == "no finding", cn[0])))
        lines.append(f"    {code:<36}{len(instances):>4}  findings: {found}; in the portal: "
                     f"{_present(keys, contracts, portal, merged, contracts_in_portal)}")
    return lines


def _present(keys: dict[str, set[str]], contracts: set[str], portal: dict[str, set[str]], merged: dict[str, str],
             contracts_in_portal: Counter) -> str:
    parts = []
    for entity in ("buildings", "units", "users"):
        if not keys.get(entity):
            continue
        there = {k for k in keys[entity] if k in portal.get(entity, ()) or (entity == "users" and k in merged)}
        part = f"{entity} {len(there)} of {len(keys[entity])}"
        into = {merged[k] for k in there if k in merged}
        if entity == "users" and into:
            part += f", {len(there & merged.keys())} as {len(into)} merged {'user' if len(into) == 1 else 'users'}"
        parts.append(part)
    occupancies = sum(contracts_in_portal.get(c, 0) for c in contracts)
    if contracts:
        parts.append(f"occupancies {occupancies} from {len(contracts)} {'contract' if len(contracts) == 1 else 'contracts'}")
    return "; ".join(parts) if parts else "nothing"
