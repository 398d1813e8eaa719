"""Map and filter: source rows -> portal records, with every exclusion counted and explained.

The compiled expressions of an entity are bound once per result set (column order), so a row
is mapped by calling a handful of closures: no dict per row, no jmespath search for plain
columns (see engine.expr).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_, is_not, itemgetter
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

from engine import contract
from engine.config.model import EntityMapping
from engine.filters import compile_filter, describe
from engine.findings import Finding
from engine.unknown_codes import UnknownCodes, carriers, code_column


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

    def settle_duplicates(self) -> None:
        """An external_id both sent (a record) and excluded (another row with the same key,
        filtered out or stopped by a gate): that row is counted apart (`unkeyed`), as a key
        excluded twice is, so that a later step dropping the record counts it under its own
        reason instead of overwriting the other row's (one row fewer in the summary)."""
        if self.excluded and self.records:
            for external_id in self.excluded.keys() & self.records.keys():
                self.unkeyed[self.excluded.pop(external_id)] += 1


def _defaults(entity: str) -> dict[str, Any]:
    """Spec defaults for fields whose schema does not allow null (e.g. units.type -> 'other')."""
    out = {}
    for name, prop in contract.record_schema(entity)["properties"].items():
        types = prop.get("type")
        nullable = (isinstance(types, list) and "null" in types) or None in prop.get("enum", ())
        if "default" in prop and not nullable:
            out[name] = prop["default"]
    return out


Gate = Callable[[dict[str, Any]], "str | None"]

SLICE = 2048
"""Rows evaluated column by column together: few enough that a slice's values stay in the
processor's caches through all the passes over its columns."""


class Mapper:
    """Maps batches of one entity's rows; `columns` is None for dict records (API sources).

    `gate` (optional) names fields that decide early whether a record is wanted at all, and a
    function over those fields that returns a reason code to skip the record (None: keep). The
    gate's fields are mapped first; only records that pass are mapped completely. The pipeline
    uses it to skip the full mapping of contracts outside the window and of persons with no
    contract, which are most rows of a large ERP.
    """

    def __init__(self, mapping: EntityMapping, columns: Sequence[str] | None, out: EntityData,
                 findings: list[Finding], gate: tuple[tuple[str, ...], Callable[[dict], str | None]] | None = None):
        self.mapping, self.out, self.findings = mapping, out, findings
        gate_fields, self._gate = gate if gate else ((), None)
        names = [f for f in contract.fields(mapping.name) if f in mapping.fields and f != "external_id"]
        if out.unknown_codes is None:
            out.unknown_codes = UnknownCodes(out.entity)
        self._notes: list[tuple[str, str, Any]] = []     # (field, code table, code): map_values' misses
        noted = {n: _noter(self._notes, n) for n in names if mapping.fields[n].notes_codes}
        self._early = [(n, mapping.fields[n].bind(columns, noted.get(n))) for n in names if n in gate_fields]
        self._getters = [(n, mapping.fields[n].bind(columns, noted.get(n))) for n in names if n not in gate_fields]
        self._raw = {n: code_column(mapping.fields[n], columns) for n in noted}
        self._unmapped = {n: None for n in contract.fields(mapping.name) if n not in mapping.fields}
        self._defaults = list(_defaults(mapping.name).items())
        self._id = mapping.fields["external_id"].bind(columns)
        self._contract = mapping.contract.bind(columns) if mapping.contract else None
        self._filters = [(rule, compile_filter(rule, columns),
                          _field_getter(rule.field, columns) if rule.field else None)
                         for rule in mapping.filters]
        self._key = _key_getter(mapping.key, columns)
        self._columns = None if columns is None else \
            _ColumnBindings(mapping, columns, names, gate_fields, self._notes, noted,
                            {n: get for n, get in self._early + self._getters if n in noted}, self._raw)
        self._source_columns = columns

    def map_rows(self, rows: Sequence[Any]) -> None:
        """Map one batch: column by column for tuple rows (see _ColumnBindings), else row by row."""
        if self._columns is None:
            self._map_each(rows)
            return
        for start in range(0, len(rows), SLICE):
            part = rows[start:start + SLICE]
            try:
                batch = self._columns.evaluate(part, self._gate)
            except Exception:       # mapped again row by row: what raises is what the row path raises
                self._map_each(part)
                continue
            self._take(part, batch)

    def first_half(self, rows: Sequence[Any], wanted: Sequence[str]) -> list[tuple[Sequence[Any], "_Gated | None"]]:
        """map_rows in two halves, for a caller that needs `wanted` fields of the records-to-be
        before the records are made (engine.pipeline.extract_entity's `early`): this half
        changes nothing and gives each slice of rows with which of them become records and
        their `wanted` values (None: the slice is mapped row by row); second_half makes the
        records. Together they record exactly what map_rows would."""
        if self._columns is None:
            return [(rows, None)]
        halves = []
        for start in range(0, len(rows), SLICE):
            part = rows[start:start + SLICE]
            try:
                halves.append((part, self._columns.first(part, self._gate, wanted)))
            except Exception:       # mapped row by row in second_half: what raises is what the row path raises
                halves.append((part, None))
        return halves

    def second_half(self, halves: list[tuple[Sequence[Any], "_Gated | None"]]) -> None:
        for part, first in halves:
            try:
                batch = None if first is None else self._columns.rest(first)
            except Exception:
                batch = None
            if batch is None:
                self._map_each(part)
            else:
                self._take(part, batch)

    def _map_each(self, rows: Sequence[Any]) -> None:
        out, records = self.out, self.out.records
        getters, early, gate, unmapped, defaults = self._getters, self._early, self._gate, self._unmapped, self._defaults
        id_of, key_of, contract_of = self._id, self._key, self._contract
        filters = self._filters
        one_filter = filters[0][1] if len(filters) == 1 else None
        notes = self._notes
        notes.clear()
        out.extracted += len(rows)
        for row in rows:
            external_id = id_of(row)
            if external_id.__class__ is not str and external_id is not None:
                external_id = _as_text(external_id)
            if filters and (one_filter is None or one_filter(row)) and self._filtered(row, external_id):
                continue
            if not external_id:
                self._unkeyed(key_of(row), row)
                continue
            data = {"external_id": external_id}
            if gate is not None:
                for name, get in early:
                    data[name] = get(row)
                reason = gate(data)
                if reason is not None:
                    if notes:
                        notes.clear()
                    self._gated(external_id, key_of(row), reason, data if early else None)
                    continue
            for name, get in getters:
                data[name] = get(row)
            if unmapped:
                data.update(unmapped)
            for name, default in defaults:
                if data[name] is None:
                    data[name] = default
            if notes:                                   # a code that a code table does not hold
                self._note_codes(row, external_id, key_of(row), data)
            if external_id in records:
                self._duplicate(external_id, key_of(row), data)
                continue
            records[external_id] = Rec(key_of(row), data, contract_of(row) if contract_of else None)

    def _note_codes(self, row: Any, external_id: str, key: str, data: dict[str, Any]) -> None:
        """The codes this row's fields met that their code tables do not hold (self._notes)."""
        note, notes = self.out.unknown_codes.note, self._notes
        for name, table, code in notes:
            label, raw_of = self._raw[name]
            note(name, label, table, code, code if raw_of is None else raw_of(row), data[name], external_id, key)
        notes.clear()

    def _take(self, rows: Sequence[Any], b: "_Batch") -> None:
        """Record what a batch evaluated column by column gives, exactly as _map_each would."""
        out, records = self.out, self.out.records
        out.extracted += len(rows)
        if b.misses:
            note = out.unknown_codes.note
            for miss in b.misses:
                note(*miss)
        ids, keys, kept_ids = b.ids, b.keys, b.kept_ids
        if records.keys().isdisjoint(kept_ids) and len(set(kept_ids)) == len(kept_ids):
            if not self._exclude_at_once(rows, b):
                for i in sorted(b.filtered.keys() | b.unkeyed | b.gated.keys()):
                    self._exclude(i, rows[i], b)
            records.update(zip(kept_ids, as_recs(b.kept_keys, b.datas, b.contracts)))
            return
        kept = {i: k for k, i in enumerate(b.kept)}      # duplicate keys: one pass in row order
        contracts = b.contracts
        for i in range(len(rows)):
            k = kept.get(i)
            if k is None:
                self._exclude(i, rows[i], b)
            elif ids[i] in records:
                self._duplicate(ids[i], keys[i], b.datas[k])
            else:
                records[ids[i]] = Rec(keys[i], b.datas[k], contracts[k])

    def _exclude_at_once(self, rows: Sequence[Any], b: "_Batch") -> bool:
        """_exclude for every excluded row of the batch, with the gated rows (most of a large
        ERP's persons and contracts) recorded in bulk; False (and nothing done) when a key is
        excluded twice, where row order decides."""
        out, ids = self.out, b.ids
        if not b.filtered and not b.unkeyed:          # only rows the gate stopped (most batches): in C
            return self._gated_at_once(b)
        entries = sorted([(i, ids[i]) for i, _ in b.filtered.items() if ids[i]] + [(i, ids[i]) for i in b.gated])
        excluded_ids = [external_id for _, external_id in entries]
        if len(set(excluded_ids)) < len(excluded_ids) or not out.excluded.keys().isdisjoint(excluded_ids):
            return False
        reasons = {i: self._filters[k][0].reason for i, k in b.filtered.items()} | b.gated
        out.excluded.update((external_id, reasons[i]) for i, external_id in entries)
        for i in sorted(b.filtered.keys() | b.unkeyed):
            rule_index = b.filtered.get(i)
            if rule_index is None:
                self._unkeyed(b.keys[i], rows[i])
                continue
            rule, _, value_of = self._filters[rule_index]
            out.filtered[rule.name] += 1
            if not ids[i]:
                out.unkeyed[rule.reason] += 1
            self.findings.append(Finding(rule.reason, self.mapping.name, b.keys[i],
                                         describe(rule, value_of(rows[i]) if value_of else None)))
        if b.gated:
            self._add_gated(b, *_gated_rows(b))
        return True

    def _gated_at_once(self, b: "_Batch") -> bool:
        """_exclude_at_once for a batch whose excluded rows the gate stopped, all of them."""
        if not b.gated:
            return True
        pick, gated_ids = _gated_rows(b)
        if len(set(gated_ids)) < len(gated_ids) or not self.out.excluded.keys().isdisjoint(gated_ids):
            return False
        self.out.excluded.update(zip(gated_ids, b.gated.values()))
        self._add_gated(b, pick, gated_ids)
        return True

    def _add_gated(self, b: "_Batch", pick: Callable, gated_ids: Sequence[str]) -> None:
        """The batch's gated rows into out.gated, in row order, with their early fields."""
        if b.early:
            fields = zip(gated_ids, *map(pick, b.early.values()))
            datas = map(dict, map(zip, repeat(("external_id", *b.early)), fields))
        else:                   # a gate without fields (the users'): nothing to keep of them
            datas = repeat(None)
        self.out.gated.extend(zip(gated_ids, pick(b.keys), b.gated.values(), datas))

    def _exclude(self, i: int, row: Any, b: "_Batch") -> None:
        """Row i of a batch is filtered out, has no external_id or is stopped by the gate."""
        rule_index = b.filtered.get(i)
        if rule_index is not None:
            self._filtered_by(self._filters[rule_index], row, b.ids[i], b.keys[i])
        elif i in b.unkeyed:
            self._unkeyed(b.keys[i], row)
        else:
            data = {"external_id": b.ids[i], **{name: values[i] for name, values in b.early.items()}} \
                if b.early else None
            self._gated(b.ids[i], b.keys[i], b.gated[i], data)

    def _gated(self, external_id: str, key: str, reason: str, data: dict[str, Any]) -> None:
        out = self.out
        if external_id in out.excluded:
            out.unkeyed[reason] += 1        # the same key again: counted, not overwritten
        else:
            out.excluded[external_id] = reason
        out.gated.append((external_id, key, reason, data))

    def _unkeyed(self, key: str, row: Any) -> None:
        values = row if self._source_columns is None else dict(zip(self._source_columns, row))
        self.findings.append(Finding("invalid_record", self.mapping.name, EMPTY_KEY if key in (None, "") else key,
                                     f"external_id maps to an empty value; the row: {_described(values, 4)}",
                                     field="external_id"))
        self.out.unkeyed["invalid_record"] += 1

    def _duplicate(self, external_id: str, key: str, data: dict[str, Any]) -> None:
        first = self.out.records[external_id]
        source = f"another row with the same ERP key {key}" if first.key == key else f"ERP record {first.key}"
        self.findings.append(Finding("duplicate_key", self.mapping.name, key,
                                     f"external_id '{external_id}' is also produced by {source}, read first and "
                                     f"sent ({_described(first.data)}); this row is not sent ({_described(data)})"))
        self.out.unkeyed["duplicate_key"] += 1

    def _filtered(self, row: Any, external_id: str | None) -> bool:
        """Apply the filters in order; the first that matches excludes the row, with a finding."""
        for f in self._filters:
            if f[1](row):
                self._filtered_by(f, row, external_id, self._key(row))
                return True
        return False

    def _filtered_by(self, f: tuple, row: Any, external_id: str | None, key: str) -> None:
        rule, _, value_of = f
        self.out.filtered[rule.name] += 1
        if external_id and external_id not in self.out.excluded:
            self.out.excluded[external_id] = rule.reason
        else:                                   # no key, or the same key again: counted apart
            self.out.unkeyed[rule.reason] += 1
        self.findings.append(Finding(rule.reason, self.mapping.name, key,
                                     describe(rule, value_of(row) if value_of else None)))


def _described(data: dict[str, Any], most: int = 3) -> str:
    """A record by its first few values (not the external_id), for a person to tell two rows apart."""
    shown = [f"{name} {value!r}" for name, value in data.items()
             if name != "external_id" and value not in (None, "")][:most]
    return ", ".join(shown) or "no values"


def _gated_rows(b: "_Batch") -> tuple[Callable, Sequence[str]]:
    """(a column's values -> those of the gated rows, their external_ids); b.gated is in row order."""
    at = list(b.gated)
    pick = itemgetter(*at) if len(at) > 1 else lambda values: (values[at[0]],)
    return pick, pick(b.ids)


def kept_values(halves: Iterable[tuple[Sequence[Any], "_Gated | None"]], name: str) -> set | None:
    """The values of field `name` of the records that Mapper.second_half will make of these
    halves (where two rows give one external_id, the first one's record is made, as in _take);
    None where that cannot be known before (a slice mapped row by row, the field not computed)."""
    ids: list = []
    values: list = []
    for _, first in halves:
        if first is None or name not in first.computed:
            return None
        ids.extend(first.pick(first.ids))
        values.extend(first.computed[name])
    if len(set(ids)) == len(ids):
        return set(values)
    return set(dict(zip(reversed(ids), reversed(values))).values())     # the first of each id wins


def _noter(notes: list, name: str) -> Callable[[str, Any], None]:
    """Expr.bind's `note` for field `name`: appends (name, table, code) to `notes`."""
    return lambda table, code: notes.append((name, table, code))


def unknown_code_findings(data: EntityData) -> list[Finding]:
    """The codes the entity's records met that their code tables do not hold, one finding per
    field and code (engine.unknown_codes), counting the records the entity keeps."""
    return data.unknown_codes.findings(data.records) if data.unknown_codes is not None else []


def _as_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _key_part(value: Any) -> str:
    """One column of an ERP key as findings show it: an empty one as '(empty)', not Python's 'None'."""
    return EMPTY_KEY if value is None or value == "" else _as_text(value)


EMPTY_KEY = "(empty)"


def _field_getter(name: str, columns: Sequence[str] | None):
    from engine.expr import compile_expression
    return compile_expression(name).bind(columns)


def _key_getter(key: Sequence[str], columns: Sequence[str] | None):
    getters = [_field_getter(k, columns) for k in key]
    if len(getters) == 1:
        g = getters[0]
        return lambda row: _key_part(g(row))
    if len(getters) == 2:
        g1, g2 = getters
        return lambda row: f"{_key_part(g1(row))}/{_key_part(g2(row))}"
    return lambda row: "/".join([_key_part(g(row)) for g in getters])


class _Batch(NamedTuple):
    """One batch evaluated column by column (row indexes are positions in the batch)."""
    ids: list                       # external_id per row
    keys: Sequence[str]             # ERP key per row
    filtered: dict[int, int]        # row -> index of the first filter that excludes it
    unkeyed: set[int]               # rows without an external_id (not filtered)
    gated: dict[int, str]           # row -> the gate's reason (not filtered, with an external_id), in row order
    early: dict[str, Sequence]      # the gate's fields, per row
    kept: Sequence[int]             # the rows that become records, in order
    kept_ids: Sequence[str]
    kept_keys: Sequence[str]
    datas: list[dict[str, Any]]     # their records
    contracts: Sequence[Any]
    misses: list                    # UnknownCodes.note's arguments, per kept row and code a code table lacks


class _Gated(NamedTuple):
    """A batch after the first half of _ColumnBindings.evaluate (see _Batch for the fields)."""
    ids: list
    keys: Sequence[str]
    filtered: dict[int, int]
    unkeyed: set[int]
    gated: dict[int, str]
    early: dict[str, Sequence]
    kept: Sequence[int]
    sub: list                       # the kept rows' columns
    pick: Callable                  # a column's values -> the kept rows' values
    computed: dict[str, Sequence]   # field -> its values over the kept rows, computed already
    noted: set[str]                 # fields that met a code their code table does not hold


class _ColumnBindings:
    """An entity's expressions bound to a query's columns for batches (Expr.bind_columns): each
    field is computed for the whole batch in a few C-level passes; a record dict is built only
    for the rows that pass the filters and the gate."""

    def __init__(self, mapping: EntityMapping, columns: Sequence[str], names: list[str], gate_fields: Sequence[str],
                 notes: list, noted: dict[str, Callable], by_row: dict[str, Callable],
                 raw: dict[str, tuple[str, Callable | None]]):
        """`notes`: where the fields in `noted` (field -> its Expr.bind note) put the codes their
        code tables do not hold; `by_row`: those fields bound row by row with the same note,
        `raw` their column (Mapper._raw), to find the rows that carry such a code."""
        from engine.filters import compile_filter_columns
        fields = mapping.fields
        self.notes, self.by_row, self.raw = notes, by_row, raw
        self.early = [(n, fields[n].bind_columns(columns, noted.get(n))) for n in names if n in gate_fields]
        self.getters = [(n, fields[n].bind_columns(columns, noted.get(n))) for n in names if n not in gate_fields]
        unmapped = [n for n in contract.fields(mapping.name) if n not in fields]
        self.names = ("external_id", *(n for n, _ in self.early), *(n for n, _ in self.getters), *unmapped)
        self.unmapped = len(unmapped)
        self.position = position = {n: k for k, n in enumerate(self.names)}
        self._defaults_by_name = _defaults(mapping.name)
        self.defaults = [(position[n], default) for n, default in self._defaults_by_name.items()]
        self.id = fields["external_id"].bind_columns(columns)
        self.contract = mapping.contract.bind_columns(columns) if mapping.contract else None
        self.filters = [compile_filter_columns(rule, columns) for rule in mapping.filters]
        self.key = _key_columns(mapping.key, columns)
        self.shared = [(k, _SharedTexts()) for k in range(1, len(self.names) - self.unmapped)]

    def evaluate(self, rows: Sequence[Any], gate: Any) -> _Batch:
        """Everything about a batch, computed without changing anything (so that it can be redone row by row)."""
        return self.rest(self.first(rows, gate))

    def first(self, rows: Sequence[Any], gate: Any, wanted: Sequence[str] = ()) -> _Gated:
        """The first half of `evaluate`: which rows are filtered out, lack a key, are stopped by
        the gate or kept, and the `wanted` fields of the kept rows (computed once: `rest` uses them)."""
        n = len(rows)
        self.notes.clear()                      # what a failed evaluation left
        cols = list(zip(*rows))
        ids = self.id(cols, n)
        if not set(map(type, ids)) <= _TEXT_OR_NULL:
            ids = [v if v is None or v.__class__ is str else _as_text(v) for v in ids]
        keys = self.key(cols, n)
        filtered: dict[int, int] = {}
        for k, excludes in enumerate(self.filters):
            for i in compress(range(n), excludes(cols, n)):
                filtered.setdefault(i, k)
        unkeyed = set() if all(ids) else {i for i in range(n) if not ids[i] and i not in filtered}
        early = {name: get(cols, n) for name, get in self.early}
        dropped = filtered.keys() | unkeyed
        gated: dict[int, str] = {}
        if gate is None:
            kept = [i for i in range(n) if i not in dropped] if dropped else range(n)
        else:
            reasons = list(self._reasons(gate, early, ids, n))
            for i in dropped:                   # filtered out or without a key: neither kept nor gated
                reasons[i] = _DROPPED
            kept = list(compress(range(n), map(is_, reasons, repeat(None))))
            stopped = list(compress(range(n), map(is_not, reasons, repeat(None))))
            if dropped:
                stopped = [i for i in stopped if i not in dropped]
            gated = dict(zip(stopped, map(reasons.__getitem__, stopped)))
        m = len(kept)
        if m == n:
            sub, pick = cols, list
        else:
            pick = itemgetter(*kept) if m > 1 else lambda values: [values[i] for i in kept]
            sub = [pick(c) for c in cols]
        computed = {name: self._default(name, get(sub, m)) for name, get in self.getters if name in wanted}
        noted = self._drain()
        return _Gated(ids, keys, filtered, unkeyed, gated, early, kept, sub, pick, computed, noted)

    def rest(self, g: _Gated) -> _Batch:
        """The second half of `evaluate`: the records of the kept rows."""
        m, sub, pick, computed = len(g.kept), g.sub, g.pick, g.computed
        self.notes.clear()                      # first() of another batch may have run since g's
        kept_ids = pick(g.ids)
        values = [kept_ids, *(pick(g.early[name]) for name, _ in self.early),
                  *(computed[name] if name in computed else get(sub, m) for name, get in self.getters)]
        for k, default in self.defaults:
            values[k] = _filled(values[k], default)
        for k, shared in self.shared:
            if shared.on:
                values[k] = shared(values[k])
        rows_of_values = zip(*values, *[repeat(None)] * self.unmapped)
        datas = list(map(dict, map(zip, repeat(self.names), rows_of_values)))
        contracts = self.contract(sub, m) if self.contract is not None else [None] * m
        kept_keys = pick(g.keys)
        noted = g.noted | self._drain()
        misses = self._misses(noted, sub, m, values, kept_ids, kept_keys) if noted else []
        return _Batch(g.ids, g.keys, g.filtered, g.unkeyed, g.gated, g.early, g.kept, kept_ids, kept_keys, datas,
                      contracts, misses)

    def _drain(self) -> set[str]:
        """The fields whose evaluation since the last call met a code missing from a code table."""
        if not self.notes:
            return set()
        noted = {name for name, _, _ in self.notes}
        self.notes.clear()
        return noted

    def _misses(self, noted: set[str], sub: list, m: int, values: list, kept_ids: Sequence[str],
                kept_keys: Sequence[str]) -> list[tuple]:
        """Which kept rows carry the codes missing from the code tables of the `noted` fields, as
        Mapper._note_codes notes them (only in a batch where a code was missing)."""
        rows = list(zip(*sub)) if sub else [()] * m
        misses: list[tuple] = []
        for name in sorted(noted, key=self.position.__getitem__):
            misses.extend(carriers(name, self.by_row[name], self.raw[name], self.notes, rows,
                                   values[self.position[name]], kept_ids, kept_keys))
        return misses

    def _default(self, name: str, values: Sequence[Any]) -> Sequence[Any]:
        """A field's values as the record gets them: null where the spec has a default is the default."""
        default = self._defaults_by_name.get(name, _NO_DEFAULT)
        return values if default is _NO_DEFAULT else _filled(values, default)

    @staticmethod
    def _reasons(gate: Any, early: dict[str, Sequence], ids: Sequence, n: int) -> Sequence[str | None]:
        over_columns = getattr(gate, "over_columns", None)
        if over_columns is not None:
            return over_columns(early, ids)
        return [gate({"external_id": ids[i], **{name: values[i] for name, values in early.items()}}) for i in range(n)]


class _SharedTexts:
    """One object for each distinct text of a field over the whole run (names, numbers, cities,
    references that repeat): a record's dict holds the shared text instead of the database's
    own copy of it in every row. The records then take less memory, and crossing to the run
    from a second process (engine.parallel) marshal writes a repeated text once and reads it
    back as one object. A field whose texts are mostly distinct (e-mails, phones) is left
    alone after its first SHARED_PROBE values; other types are never touched (1 and 1.0 are
    equal keys of a dict, and must stay what they are)."""
    __slots__ = ("on", "_table", "_seen")

    def __init__(self):
        self.on, self._table, self._seen = True, {}, 0

    def __call__(self, values: Sequence[Any]) -> Sequence[Any]:
        if not set(map(type, values)) <= _TEXT_OR_NULL:
            return values
        table = self._table
        shared = list(map(table.setdefault, values, values))
        self._seen += len(values)
        if self._seen >= SHARED_PROBE and len(table) * 2 > self._seen:
            self.on, self._table = False, {}
        return shared


SHARED_PROBE = 16_384
"""Values of a field after which _SharedTexts stops sharing it if most of them were distinct."""


def _filled(values: Sequence[Any], default: Any) -> Sequence[Any]:
    """The values with null as the default (the values themselves where none is null)."""
    return [default if v is None else v for v in values] if None in values else values


_TEXT_OR_NULL = {str, type(None)}
_DROPPED = object()
_NO_DEFAULT = object()


def _key_columns(key: Sequence[str], columns: Sequence[str]):
    """The ERP key of every row of a batch, as _key_getter gives it."""
    from engine.expr import compile_expression
    getters = [compile_expression(k).bind_columns(columns) for k in key]

    def keys(cols, n):
        parts = [_texts(get(cols, n)) for get in getters]
        return parts[0] if len(parts) == 1 else list(map("/".join, zip(*parts)))
    return keys


def _texts(values: Sequence[Any]) -> Sequence[str]:
    from engine.expr._columns import whole_numbers_as_text
    types = set(map(type, values))
    if types == {str} and "" not in values:
        return values
    if types == {int}:
        return whole_numbers_as_text(values)
    return list(map(_key_part, values))
