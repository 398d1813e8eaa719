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


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def hard_case_lines(manifest: Manifest, findings: Iterable[Finding], portal: dict[str, set[str]]) -> list[str]:
    """`portal`: entity -> external_ids present after the run."""
    by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
    by_contract: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        by_key[(f.entity, f.key)].add(f.code)
        if f.entity == "occupancies":
            by_contract[f.key.split("/")[0]].add(f.code)
    merged = {part: eid for eid in portal.get("users", ()) if "+" in eid for part in eid.split("+")}
    contracts_in_portal = Counter(eid.split("-")[0] for eid in portal.get("occupancies", ()))
    lines = []
    for code, instances in manifest.as_dict()["cases"].items():
        codes: Counter = Counter()
        present: Counter = Counter()
        for inst in instances:
            seen: set[str] = set()
            for kind, entity in _ENTITY.items():
                for key in map(str, _as_list(inst.get(kind, []))):
                    seen |= by_key.get((entity, key), set())
                    if key in portal.get(entity, ()) or (entity == "users" and key in merged):
                        present[entity] += 1
            for contract in map(str, _as_list(inst.get("vertragnr", []))):
                seen |= by_contract.get(contract, set())
                present["occupancies"] += contracts_in_portal.get(contract, 0)
            codes.update(seen)
        found = ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) or "no finding"
        sent = ", ".join(f"{e} {n}" for e, n in present.items() if n) or "nothing"
        lines.append(f"    {code:<36}{len(instances):>4}  findings: {found}; in the portal: {sent}")
    return lines
