"""What extraction, mapping and filtering make of one entity: its records (Rec, made by
engine.mapping's Mapper) and the rows left out, counted and explained (EntityData), which the
later steps (normalize, references, dedup, plan) read and change.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Iterable, Iterator, NamedTuple

from engine.unknown_codes import UnknownCodes


class Rec(NamedTuple):
    """One desired portal record and where it came from. A named tuple, so that a batch's
    records are made in C (`as_recs`); its `data` is the one part later steps change."""
    key: str                      # the ERP key, e.g. "4711" or "1001/2002"
    data: dict[str, Any]          # portal fields -> values
    contract: str | None = None   # occupancies: the ERP contract it comes from


def as_recs(keys: Iterable[str], datas: Iterable[dict[str, Any]], contracts: Iterable[str | None]) -> Iterator[Rec]:
    """Rec(key, data, contract) for each, made in C (tuple.__new__)."""
    return map(tuple.__new__, repeat(Rec), zip(keys, datas, contracts))


@dataclass
class EntityData:
    """What extraction, mapping and filtering made of one entity."""
    entity: str
    records: dict[str, Rec] = field(default_factory=dict)   # external_id -> record
    excluded: dict[str, str] = field(default_factory=dict)  # external_id -> reason code
    extracted: int = 0                                      # rows read from the source
    filtered: Counter = field(default_factory=Counter)      # filter name -> rows excluded
    unkeyed: Counter = field(default_factory=Counter)       # reason -> rows dropped without an external_id of their own
    gated: list = field(default_factory=list)               # skipped by a gate: (external_id, key, reason,
                                                            # early fields or None)
    invalid: dict = field(default_factory=dict)
    """external_id -> the record as normalize_entity dropped it for breaking a rule (its ERP key
    and contract are what keep_last_sent needs, so that a record the portal has from an earlier
    run is kept as last sent instead of archived)."""
    partners: dict = field(default_factory=dict)
    """users: merged external_id -> the data of the persons dedup merged into it (merge_partnership),
    which the state store keeps for a refused partner (keep_last_sent)."""
    restored_partners: dict = field(default_factory=dict)
    """users: external_id of a refused person taken back as the partner the engine last merged ->
    (the merged user's external_id then, its record as refused, the code it was refused with);
    engine.dedup.settle_restored_partners."""
    packed_rows: dict = field(default_factory=dict)
    """external_id -> the record's row packed as the plan compares it (engine.current.pack_rows),
    made by normalize_entity where a run compares with a packed portal; code that changes a
    record's data afterwards (dedup) removes its entry."""
    unknown_codes: UnknownCodes | None = None
    """The records whose fields met a code that their code table does not hold (Mapper);
    unknown_code_findings reports them once the entity's records are settled."""
    window: tuple[str, str] | None = None
    """occupancies: the contract window (WindowGate.bounds) that every record passed as it was
    mapped, so that references.apply_window need not look at them again; None: not known."""

    def settle_duplicates(self) -> None:
        """An external_id both sent (a record) and excluded (another row with the same key,
        filtered out or stopped by a gate): that row is counted apart (`unkeyed`), as a key
        excluded twice is, so that a later step dropping the record counts it under its own
        reason instead of overwriting the other row's (one row fewer in the summary)."""
        if self.excluded and self.records:
            for external_id in self.excluded.keys() & self.records.keys():
                self.unkeyed[self.excluded.pop(external_id)] += 1
