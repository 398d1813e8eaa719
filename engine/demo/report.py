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


def hard_cases(manifest: Manifest, findings: Iterable[Finding], portal: dict[str, set[str]]) -> list[dict]:
    """What the run made of each case of the manifest (`portal`: entity -> external_ids present
    after the run), as `demo --json` gives it under `hard_cases` (docs/demo-erp.md):
    {"case", "instances", "findings": {code: instances it was reported for}, "without_finding":
    instances without any, "in_portal": {entity: {"present", "of"[, "merged_users"]}} of the
    case's distinct ERP records, plus "occupancies": {"present", "contracts"}}."""
    by_key: dict[tuple[str, str], set[tuple[str, str | None]]] = defaultdict(set)    # -> (code, field)
    by_contract: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        by_key[(f.entity, f.key)].add((f.code, f.field))
        if f.entity == "occupancies":
            by_contract[f.key.split("/")[0]].add(f.code)
    merged = {part: eid for eid in portal.get("users", ()) if "+" in eid for part in eid.split("+")}
    contracts_in_portal = Counter(eid.split("-")[0] for eid in portal.get("occupancies", ()))
    cases = []
    for code, instances in manifest.as_dict()["cases"].items():
        codes: Counter = Counter()
        keys: dict[str, set[str]] = defaultdict(set)          # entity -> the case's distinct ERP keys
        contracts: set[str] = set()
        without = 0
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
            codes.update(seen)
            without += not seen
        in_portal: dict[str, dict[str, int]] = {}
        for entity in ("buildings", "units", "users"):
            if keys.get(entity):
                there = {k for k in keys[entity] if k in portal.get(entity, ()) or (entity == "users" and k in merged)}
                in_portal[entity] = {"present": len(there), "of": len(keys[entity])}
                if entity == "users" and (into := {merged[k] for k in there if k in merged}):
                    in_portal[entity] |= {"merged": len(there & merged.keys()), "merged_users": len(into)}
        if contracts:
            in_portal["occupancies"] = {"present": sum(contracts_in_portal.get(c, 0) for c in contracts),
                                        "contracts": len(contracts)}
        cases.append({"case": code, "instances": len(instances), "findings": dict(sorted(codes.items())),
                      "without_finding": without, "in_portal": in_portal})
    return cases


def hard_case_lines(cases: list[dict]) -> list[str]:
    """The demo's closing table (docs/demo-erp.md): a line per case of hard_cases."""
    return [f"    {c['case']:<36}{c['instances']:>4}  findings: {_found(c)}; in the portal: {_present(c['in_portal'])}"
            for c in cases]


def _found(case: dict) -> str:
    parts = [f"{code} {n}" for code, n in case["findings"].items()]
    if case["without_finding"]:
        parts.append(f"no finding {case['without_finding']}")
    return ", ".join(parts)


def _present(in_portal: dict[str, dict[str, int]]) -> str:
    parts = []
    for entity, n in in_portal.items():
        if entity == "occupancies":
            contracts = n["contracts"]
            parts.append(f"occupancies {n['present']} from {contracts} {'contract' if contracts == 1 else 'contracts'}")
            continue
        part = f"{entity} {n['present']} of {n['of']}"
        if "merged_users" in n:
            part += f", {n['merged']} as {n['merged_users']} merged {'user' if n['merged_users'] == 1 else 'users'}"
        parts.append(part)
    return "; ".join(parts) if parts else "nothing"
