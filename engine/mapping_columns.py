"""Column-wise mapping: an entity's expressions, filters and gate bound to a query's columns
(Expr.bind_columns) and evaluated over a slice of rows at once, each field in a few C-level
passes; a record dict is built only for the rows that pass the filters and the gate. The
Mapper (engine.mapping) drives it slice by slice and records what a slice gives (_Batch,
_Gated) exactly as its row-by-row path would.
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import is_, is_not, itemgetter
from typing import Any, Callable, NamedTuple, Sequence

from engine import contract
from engine.config.model import EntityMapping
from engine.erp_keys import _as_text, _key_columns
from engine.unknown_codes import carriers


def _defaults(entity: str) -> dict[str, Any]:
    """Spec defaults for fields whose schema does not allow null (e.g. units.type -> 'other')."""
    out = {}
    for name, prop in contract.record_schema(entity)["properties"].items():
        types = prop.get("type")
        nullable = (isinstance(types, list) and "null" in types) or None in prop.get("enum", ())
        if "default" in prop and not nullable:
            out[name] = prop["default"]
    return out


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
