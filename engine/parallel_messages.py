"""What crosses the pipes between a run with two cores (engine.parallel) and its second process
(engine.parallel_child): the users' gate, records in blocks, an entity's counts and exclusions,
findings and the gated persons, made into the plain lists, dicts and texts that marshal writes
fast (engine._pipe), and rebuilt on the other side. Each function that packs sits beside the one
that rebuilds what it made (_gate_message and _gate_set, _blocks and _records, _counts and
_unpack_counts, _compact and _uncompact).
"""
from __future__ import annotations

from itertools import repeat, starmap
from typing import Sequence

from engine.entity_data import EntityData, Rec, as_recs
from engine.findings import Finding


_SEPARATOR = "\x00"


def _gate_message(wanted: set | None) -> str | list | None:
    """The gate's user_ids as one text, joined by NUL (marshal writes it three times faster than
    a list of 275,000 texts, and the child splits it in C); as a list where a user_id is not a
    text or holds a NUL itself (a set would be written in sorted order, ten times slower)."""
    if wanted is None:
        return None
    ids = list(wanted)
    if set(map(type, ids)) <= {str}:
        joined = _SEPARATOR.join(ids)
        if joined.count(_SEPARATOR) == max(len(ids) - 1, 0) and ids != [""]:
            return joined
    return ids


def _gate_set(message: str | list) -> set:
    if isinstance(message, str):
        return set(message.split(_SEPARATOR)) if message else set()
    return set(message)


def _blocks(ids: list[str], recs: list[Rec], start: int, stop: int | None = None) -> dict:
    """Records from position `start` (to `stop`), as the parent rebuilds them (_records)."""
    kept = recs[start:stop]
    return {"ids": ids[start:stop], "keys": [r.key for r in kept], "datas": [r.data for r in kept],
            "contracts": [r.contract for r in kept] if any(r.contract for r in kept) else None}


def _records(packed: dict) -> dict[str, Rec]:
    return dict(zip(packed["ids"], as_recs(packed["keys"], packed["datas"], packed["contracts"] or repeat(None))))


def _invalid(data: EntityData) -> dict:
    """The records normalize_entity dropped (EntityData.invalid) as _records rebuilds them: ERP
    key and contract only, which is all keep_last_sent takes of them (their values broke a
    rule, and may be none that marshal sends)."""
    return _blocks(list(data.invalid), [rec._replace(data={}) for rec in data.invalid.values()], 0)


def _shared_blocks(packed: dict) -> EntityData:
    return EntityData("users", records=_records(packed))


def _split_blocks(packed: dict, block: int) -> list[dict]:
    """Records as _blocks packed them, split before their last block (whole blocks from the
    first, so that normalising the parts one after the other gives what normalising them
    together gives); one part where they are a block or less."""
    at = (len(packed["ids"]) - 1) // block * block
    if at <= 0:
        return [packed]
    return [{name: None if values is None else values[:at] for name, values in packed.items()},
            {name: None if values is None else values[at:] for name, values in packed.items()}]


def _add_block(users: EntityData, block: dict, normalised: list[Finding]) -> None:
    users.records.update(_records(block))
    users.packed_rows.update(block["packed"])                     # empty where not packing
    users.invalid.update(_records(block["invalid"]))
    users.excluded.update(block["refused"])             # invalid_record or name_too_long, as normalize_entity set
    normalised.extend(starmap(Finding, block["findings"]))


def _finding(f: Finding) -> tuple:
    return f.code, f.entity, f.key, f.message, f.field


def _counts(data: EntityData) -> dict:
    """An entity's exclusions and counts, as _unpack_counts rebuilds them."""
    return {"excluded": data.excluded, "extracted": data.extracted, "filtered": dict(data.filtered),
            "unkeyed": dict(data.unkeyed)}


def _unpack_counts(entity: str, packed: dict) -> EntityData:
    """The entity without records (they cross in blocks, _records), with its counts and exclusions."""
    from collections import Counter
    return EntityData(entity, excluded=packed["excluded"], extracted=packed["extracted"],
                      filtered=Counter(packed["filtered"]), unkeyed=Counter(packed["unkeyed"]))


def _compact(ids: list[str], keys: list[str], reasons: list[str]) -> tuple:
    """The gated persons as they cross the pipe: their ERP keys only where they are not their
    external_ids (the shipped mappings' persons: to_text of the key), their reason once where it
    is the same for all (a quarter of a million texts fewer each)."""
    return (ids, None if keys == ids else keys,
            reasons[0] if reasons and reasons.count(reasons[0]) == len(reasons) else reasons)


def _uncompact(ids: list[str], keys: list[str] | None, reasons: list[str] | str) -> tuple[list, list, Sequence]:
    return ids, ids if keys is None else keys, [reasons] * len(ids) if isinstance(reasons, str) else reasons


def _unpack_users(packed: dict) -> tuple[EntityData, list[Finding]]:
    """The users' counts and exclusions after the gate (their records follow in blocks); the
    extraction's findings, the gated ones last."""
    from engine.extract import gated_user_findings
    users = _unpack_counts("users", packed)
    gated_ids, gated_keys, reasons = _uncompact(*packed["gated"])
    users.excluded.update(zip(gated_ids, reasons))    # disjoint: _gate_afterwards declines otherwise
    found = list(starmap(Finding, packed["findings"]))
    found.extend(gated_user_findings(gated_keys, reasons))
    return users, found
