"""Map and filter: source rows -> portal records, with every exclusion counted and explained.

The compiled expressions of an entity are bound once per result set (column order), so a row
is mapped by calling a handful of closures: no dict per row, no jmespath search for plain
columns (see engine.expr). A batch of tuple rows (SQL sources) is evaluated column by column,
a slice at a time (engine.mapping_columns); the Mapper records what either path gives in an
EntityData (engine.entity_data), exactly alike.
"""
from __future__ import annotations

from itertools import repeat
from operator import itemgetter
from typing import Any, Callable, Iterable, Sequence

from engine import contract
from engine.config.model import EntityMapping
from engine.entity_data import EntityData, Rec, as_recs
from engine.errors import ExpressionError
from engine.erp_keys import EMPTY_KEY, _as_text, _field_getter, _key_getter
from engine.filters import compile_filter, describe
from engine.findings import Finding
from engine.mapping_columns import _Batch, _ColumnBindings, _defaults, _Gated
from engine.unknown_codes import UnknownCodes, code_column


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
        before the records are made (engine.extract.extract_entity's `early`): this half
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
        try:
            self._map_each_row(rows)
        except Exception as exc:
            failure = self._expression_failure(rows)
            if failure is None:         # not an expression of the mapping: a bug, reported as one
                raise
            raise failure from exc

    def _expression_failure(self, rows: Sequence[Any]) -> ExpressionError | None:
        """The first expression of the mapping that cannot be computed for one of `rows` (a
        jmespath built-in given a null or a number: `join`, `starts_with`, `length`, ...), in the
        order _map_each_row computes them (a row a filter or the gate excludes is not mapped
        further), as an ExpressionError naming the record, the expression and where it is used;
        None when every expression computes for every row."""
        mapping = self.mapping
        fields = [(name, mapping.fields[name], get) for name, get in self._early]
        rest = [(name, mapping.fields[name], get) for name, get in self._getters]
        if self._contract is not None:
            rest.append(("contract", mapping.contract, self._contract))
        for row in rows:
            what, expr = "external_id", mapping.fields["external_id"]
            try:
                data = {"external_id": self._id(row)}
                for rule, predicate, _ in self._filters:
                    what, expr = f"filter '{rule.name}'", rule.expr.source if rule.kind == "expr" else rule.field
                    if predicate(row):
                        break
                else:
                    for what, expr, get in fields:
                        data[what] = get(row)
                    if self._passes_gate(data):
                        for what, expr, get in rest:
                            get(row)
            except _NotAnExpression:
                return None
            except Exception as exc:
                try:
                    key = self._key(row)
                except Exception:
                    key = EMPTY_KEY
                return ExpressionError(mapping.name, key, what, getattr(expr, "source", expr), exc)
        return None

    def _passes_gate(self, data: dict[str, Any]) -> bool:
        try:
            return self._gate is None or self._gate(data) is None
        except Exception as exc:        # the engine's own code, not an expression of the mapping
            raise _NotAnExpression from exc

    def _map_each_row(self, rows: Sequence[Any]) -> None:
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


class _NotAnExpression(Exception):
    """Raised by the engine's own code while Mapper._expression_failure looks for the expression
    that failed: no expression is to blame."""


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


def unreturned_columns(mapping: EntityMapping, columns: Sequence[str]) -> list[str]:
    """The columns the mapping reads (its key, fields, contract and filters, but what an
    expression over the whole row reads, '@') that `columns` lack, compared case-insensitively
    as binding them does (engine.expr); sorted."""
    have = {c.casefold() for c in columns}
    return sorted(c for c in mapping.source_names(known=True) if c.casefold() not in have)


def _noter(notes: list, name: str) -> Callable[[str, Any], None]:
    """Expr.bind's `note` for field `name`: appends (name, table, code) to `notes`."""
    return lambda table, code: notes.append((name, table, code))


def unknown_code_findings(data: EntityData) -> list[Finding]:
    """The codes the entity's records met that their code tables do not hold, one finding per
    field and code (engine.unknown_codes), counting the records the entity keeps."""
    return data.unknown_codes.findings(data.records) if data.unknown_codes is not None else []
