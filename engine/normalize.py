"""Normalise records to the import API's rules before anything else looks at them.

Which fields get which treatment is derived from the spec (engine.contract): fields with
`format: email` are parsed as login addresses, fields with the E.164 pattern are normalised as
phone numbers, strings with `maxLength` are truncated or rejected by the tenant's rule. Every
change is a finding; a record that still breaks a rule is reported and not sent.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import compress, repeat
from operator import is_not, itemgetter, ne
from typing import Any, Callable, Mapping, Sequence

from engine import contract
from engine.config.model import Rules
from engine.entity_data import EntityData, Rec
from engine.findings import Finding

E164 = r"^\+[1-9][0-9]{6,14}$"


def _spec_fields(entity: str) -> tuple[list[str], list[str], list[tuple[str, int]], list[str], list[str]]:
    emails, phones, limited, texts, numbers = [], [], [], [], []
    for name, prop in contract.record_schema(entity)["properties"].items():
        types = prop.get("type", [])
        types = [types] if isinstance(types, str) else types
        if "string" in types:
            texts.append(name)
        elif "number" in types or "integer" in types:
            numbers.append(name)
        if prop.get("format") == "email":
            emails.append(name)
        elif prop.get("pattern") == E164:
            phones.append(name)
        if "maxLength" in prop and name != "external_id":
            limited.append((name, prop["maxLength"]))
    return emails, phones, limited, texts, numbers


def _as_text(value: Any) -> Any:
    """Database values in string fields: dates as ISO dates, whole floats without '.0'."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()[:10]
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _as_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.replace(",", ".")) if value.strip() else None
        except ValueError:
            return value          # left for the record check to report
    return value


CHUNK = 1024
"""Records normalised together: few enough that their values stay in the processor's caches
while a chunk goes through all the steps (a step over all of a large entity's records would
fetch every value from memory again)."""


def normalize_entity(data: EntityData, rules: Rules, findings: list[Finding], *, pack: bool = False) -> None:
    """Normalise every record of one entity in place; records that break a rule are dropped.
    `pack`: also pack each record kept, as it is now, into data.packed_rows (the plan compares
    those bytes with a packed portal, engine.current), from the columns a chunk has read anyway.

    Chunk by chunk of records, the work goes field by field, in the order a record is treated
    (texts, numbers, e-mails, phones, length limits, then the import API's record check), so
    that each step is a few passes over a column; the record check runs only on the records
    that may still break a rule (engine.contract.rules.suspects). Findings come out in record
    order, as if the records were treated one by one.
    """
    ids, recs = list(data.records), list(data.records.values())
    dropped: list[tuple[int, str]] = []
    for start in range(0, len(recs), CHUNK):
        chunk_findings, chunk_dropped, packed = _normalize_chunk(data.entity, recs[start:start + CHUNK], rules, pack)
        findings.extend(chunk_findings)
        dropped.extend((start + i, reason) for i, reason in chunk_dropped)
        if packed is not None:
            data.packed_rows.update(zip(ids[start:start + CHUNK], packed))
    for i, reason in dropped:             # the code of the record's finding: invalid_record or name_too_long
        data.invalid[ids[i]] = data.records.pop(ids[i])
        data.excluded[ids[i]] = reason
        data.packed_rows.pop(ids[i], None)


LastSent = Callable[[str, list[str]], Mapping[str, dict[str, Any]]]
"""(entity, external_ids) -> the record the engine last wrote to the portal, for those it wrote."""


def keep_last_sent(data: EntityData, last_sent: LastSent | None, findings: list[Finding]) -> None:
    """A record that normalize_entity dropped for breaking a rule, but which the engine wrote
    to the portal on an earlier run, stays in the portal as it was last sent: it is desired
    again with that data, so the plan neither updates nor archives it, and the records that
    refer to it (a building's units, a person's occupancies) are not dropped with it. One bad
    value in the ERP (a country 'DEU', a language 'fr') must not take a building with its units
    and residents out of the portal overnight. Each such record gets an `invalid_kept` finding
    beside its `invalid_record`; a record never sent stays out. In external_id order, so that
    a run gives the same records and findings whichever process normalised them."""
    if not data.invalid or last_sent is None:
        return
    ids = sorted(data.invalid)
    last = last_sent(data.entity, ids)
    for external_id in ids:
        record = last.get(external_id)
        if record is None:
            continue
        rec = data.invalid.pop(external_id)
        reason = data.excluded.pop(external_id)
        data.records[external_id] = Rec(rec.key, dict(record), rec.contract)
        findings.append(Finding("invalid_kept", data.entity, rec.key,
                                "not updated: the portal keeps the record as the last run sent it, until the "
                                f"ERP's record passes the rules again (see its {reason} finding)"))
    if data.entity == "users" and data.invalid:
        _restore_partners(data, last_sent)


PARTNERS = "partners"
"""The state store's name for the persons the engine sent merged into one user (merge_partnership):
each person's data as last merged, with `merged_into`, the merged user's external_id
(engine.record.record)."""


def _restore_partners(users: EntityData, last_sent: LastSent) -> None:
    """A refused person whom the engine last sent merged with a partner into one user, which the
    portal still has, is taken back with its data as last merged, so that dedup merges the couple
    again: one partner's bad value does not split the couple overnight (the other partner sent
    alone, the merged user archived). engine.dedup.settle_restored_partners reports it, or drops
    it again where it is not merged."""
    ids = sorted(users.invalid)
    found = last_sent(PARTNERS, ids)
    merged = sorted({r.get("merged_into") for r in found.values() if isinstance(r.get("merged_into"), str)})
    alive = last_sent("users", merged) if merged else {}
    for external_id in ids:
        record = found.get(external_id)
        if record is None or record.get("merged_into") not in alive:
            continue
        rec = users.invalid.pop(external_id)
        reason = users.excluded.pop(external_id)
        data = {name: value for name, value in record.items() if name != "merged_into"}
        users.records[external_id] = Rec(rec.key, data, rec.contract)
        users.restored_partners[external_id] = (record["merged_into"], rec, reason)


def _normalize_chunk(entity: str, recs: list, rules: Rules,
                     pack: bool = False) -> tuple[list[Finding], list[int], list[bytes] | None]:
    """(findings in record order, positions of the records to drop, with `pack` each record
    packed or None) for some records of an entity."""
    from engine.contract.rules import check_record, suspects
    from engine.expr.emails import analyze_emails
    from engine.expr.phones import analyze_phone, normalize_phones

    emails, phones, limited, texts, numbers = _spec_fields(entity)
    datas = [rec.data for rec in recs]
    cache = _columns(datas, contract.fields(entity))    # field -> (values, every record has it)
    seen: dict[str, set[type]] = {}                      # field -> the types of its values
    found: list[tuple[int, int, Finding]] = []          # (record, sequence, finding)

    def column(name: str) -> list[Any]:
        if name not in cache:
            cache[name] = _column(datas, name)
        return cache[name][0]

    def types(name: str) -> set[type]:
        if name not in seen:
            seen[name] = set(map(type, column(name)))
        return seen[name]

    def put(i: int, name: str, value: Any) -> None:
        datas[i][name] = cache[name][0][i] = value
        seen.pop(name, None)

    def add(i: int, code: str, message: str, name: str) -> None:
        found.append((i, len(found), Finding(code, entity, recs[i].key, message, field=name)))

    for name in texts:
        values = column(name)
        if not types(name) <= _TEXT_OR_NULL:
            for i, value in enumerate(values):
                if value is not None and value.__class__ is not str:
                    put(i, name, _as_text(value))
    for name in numbers:
        values = column(name)
        if not types(name) <= _NUMBER_OR_NULL:
            for i, value in enumerate(values):
                if value is not None and value.__class__ is not float and value.__class__ is not int:
                    put(i, name, _as_number(value))
    unplain: set[int] = set()                           # records with an e-mail off the fast path
    for name in emails:
        at, raws = _present(column(name))
        logins, others = analyze_emails(raws)
        unplain.update(at[k] for k in others)
        for k in compress(range(len(at)), map(ne, raws, logins)):
            put(at[k], name, logins[k])
        for k, info in others.items():
            i, raw = at[k], raws[k]
            if info.invalid:
                what = "no valid address" if info.login is None else f"ignored invalid part(s) {list(info.invalid)}"
                add(i, "email_invalid", f"{what} in {raw!r}", name)
            if info.annotated:
                add(i, "email_annotated", f"annotation removed from {raw!r}", name)
            if info.multiple and len(info.addresses) > 1:
                add(i, "email_multiple", f"{len(info.addresses)} addresses in {raw!r}; login is {info.login}", name)
    for name in phones:
        at, raws = _present(column(name))
        if not cache[name][1]:
            for d in datas:
                d.setdefault(name, None)                # as record by record: a missing phone becomes null
        blank = set() if set(map(type, raws)) == {str} and all(map(str.strip, raws)) else \
            {k for k, raw in enumerate(raws) if isinstance(raw, str) and not raw.strip()}
        for k in sorted(blank):
            put(at[k], name, None)
        if blank:
            keep = [k for k in range(len(at)) if k not in blank]
            at, raws = [at[k] for k in keep], [raws[k] for k in keep]
        for i, raw, e164 in zip(at, raws, normalize_phones(raws)):
            if e164 != raw:
                put(i, name, e164)
            if e164 is None and analyze_phone(raw).invalid:       # a placeholder ('keine', '-'): an empty field
                add(i, "phone_invalid", f"{raw!r} is not a phone number; sent empty", name)
    rejected: set[int] = set()
    for name, limit in limited:
        values = column(name)
        if types(name) <= _TEXT_OR_NULL and max(map(len, filter(None, values)), default=0) <= limit:
            continue
        for i, value in enumerate(values):
            if isinstance(value, str) and len(value) > limit and i not in rejected:
                if rules.long_names == "truncate":
                    put(i, name, cut := value[:limit].rstrip())
                    add(i, "name_truncated", f"{len(value)} characters, cut to {limit}: {cut!r}", name)
                else:
                    add(i, "name_too_long", f"{len(value)} characters, at most {limit} allowed; not sent", name)
                    rejected.add(i)
    invalid = set()
    # What the steps above enforced cannot fail the check: lengths of the limited fields, and the
    # e-mail format of a login from analyze_emails' fast path (the others are checked).
    settled = {name: ("max_length",) for name, _ in limited}
    settled.update((name, ("format",)) for name in emails)
    complete = {name: values for name, (values, every) in cache.items() if every}
    for i in sorted(set(suspects(entity, datas, complete, {name: types(name) for name in complete}, settled))
                    | unplain):
        if i in rejected:
            continue
        for v in check_record(entity, datas[i]):
            add(i, "invalid_record", f"{v.message}; not sent", v.field)
            invalid.add(i)
            break
    found.sort(key=itemgetter(0, 1))
    return ([f for _, _, f in found], sorted([(i, "name_too_long") for i in rejected] + [(i, "invalid_record") for i in invalid]),
            _packed(entity, datas, cache) if pack else None)


def _packed(entity: str, datas: list[dict[str, Any]], cache: dict[str, tuple[list[Any], bool]]) -> list[bytes] | None:
    """Each record as engine.current.pack_rows packs it, from the chunk's columns where it has
    read them all (they hold every change the chunk made); None for a value marshal cannot pack."""
    from engine.current import pack_rows, tuples
    names = contract.fields(entity)
    try:
        if all(name in cache for name in names):
            return pack_rows(zip(*[cache[name][0] for name in names]))
        return pack_rows(tuples(datas, names))
    except ValueError:
        return None


_TEXT_OR_NULL = {str, type(None)}
_NUMBER_OR_NULL = {float, int, type(None)}


def _columns(datas: list[dict[str, Any]], names: Sequence[str]) -> dict[str, tuple[list[Any], bool]]:
    """The records' values of the spec's fields, read in one pass (each record's dict is visited
    once); empty when a record lacks one of them (then _column reads field by field)."""
    try:
        rows = list(map(itemgetter(*names), datas))
    except KeyError:
        return {}
    return {name: (list(values), True) for name, values in zip(names, zip(*rows))} if rows else {}


def _column(datas: list[dict[str, Any]], name: str) -> tuple[list[Any], bool]:
    """(the field's value in every record, None where a record lacks it; whether none lacks it)."""
    try:
        return list(map(itemgetter(name), datas)), True
    except KeyError:
        return [d.get(name) for d in datas], False


def _present(values: list[Any]) -> tuple[Sequence[int], list[Any]]:
    """(positions, values) of the values that are not null."""
    if None not in values:
        return range(len(values)), list(values)
    at = list(compress(range(len(values)), map(is_not, values, repeat(None))))
    return at, [values[i] for i in at]
