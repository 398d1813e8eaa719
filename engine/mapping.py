"""Map and filter: source rows -> portal records, with every exclusion counted and explained.

The compiled expressions of an entity are bound once per result set (column order), so a row
is mapped by calling a handful of closures: no dict per row, no jmespath search for plain
columns (see engine.expr).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine import contract
from engine.config.model import EntityMapping
from engine.filters import compile_filter, describe
from engine.findings import Finding


class Rec:
    """One desired portal record and where it came from."""
    __slots__ = ("key", "data", "contract")

    def __init__(self, key: str, data: dict[str, Any], contract: str | None = None):
        self.key = key            # the ERP key, e.g. "4711" or "1001/2002"
        self.data = data          # portal fields -> values
        self.contract = contract  # occupancies: the ERP contract it comes from

    def __repr__(self) -> str:
        return f"Rec({self.key!r}, {self.data!r})"


@dataclass
class EntityData:
    """What extraction, mapping and filtering made of one entity."""
    entity: str
    records: dict[str, Rec] = field(default_factory=dict)   # external_id -> record
    excluded: dict[str, str] = field(default_factory=dict)  # external_id -> reason code
    extracted: int = 0                                      # rows read from the source
    filtered: Counter = field(default_factory=Counter)      # filter name -> rows excluded
    unkeyed: Counter = field(default_factory=Counter)       # reason -> rows dropped without an external_id of their own
    gated: list = field(default_factory=list)               # (external_id, key, reason, early fields) skipped by a gate


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
        self._early = [(n, mapping.fields[n].bind(columns)) for n in names if n in gate_fields]
        self._getters = [(n, mapping.fields[n].bind(columns)) for n in names if n not in gate_fields]
        self._unmapped = {n: None for n in contract.fields(mapping.name) if n not in mapping.fields}
        self._defaults = list(_defaults(mapping.name).items())
        self._id = mapping.fields["external_id"].bind(columns)
        self._contract = mapping.contract.bind(columns) if mapping.contract else None
        self._filters = [(rule, compile_filter(rule, columns),
                          _field_getter(rule.field, columns) if rule.field else None)
                         for rule in mapping.filters]
        self._key = _key_getter(mapping.key, columns)

    def map_rows(self, rows: Sequence[Any]) -> None:
        out, records, findings, entity = self.out, self.out.records, self.findings, self.mapping.name
        getters, early, gate, unmapped, defaults = self._getters, self._early, self._gate, self._unmapped, self._defaults
        id_of, key_of, contract_of = self._id, self._key, self._contract
        filters = self._filters
        one_filter = filters[0][1] if len(filters) == 1 else None
        out.extracted += len(rows)
        for row in rows:
            external_id = id_of(row)
            if external_id.__class__ is not str and external_id is not None:
                external_id = _as_text(external_id)
            if filters and (one_filter is None or one_filter(row)) and self._filtered(row, external_id):
                continue
            if not external_id:
                findings.append(Finding("invalid_record", entity, key_of(row),
                                        "external_id maps to an empty value", field="external_id"))
                out.unkeyed["invalid_record"] += 1
                continue
            data = {"external_id": external_id}
            if gate is not None:
                for name, get in early:
                    data[name] = get(row)
                reason = gate(data)
                if reason is not None:
                    if external_id in out.excluded:
                        out.unkeyed[reason] += 1        # the same key again: counted, not overwritten
                    else:
                        out.excluded[external_id] = reason
                    out.gated.append((external_id, key_of(row), reason, data))
                    continue
            for name, get in getters:
                data[name] = get(row)
            if unmapped:
                data.update(unmapped)
            for name, default in defaults:
                if data[name] is None:
                    data[name] = default
            if external_id in records:
                findings.append(Finding("duplicate_key", entity, key_of(row),
                                        f"external_id '{external_id}' is also produced by ERP record "
                                        f"{records[external_id].key}; this one is not sent"))
                out.unkeyed["duplicate_key"] += 1
                continue
            records[external_id] = Rec(key_of(row), data, contract_of(row) if contract_of else None)

    def _filtered(self, row: Any, external_id: str | None) -> bool:
        """Apply the filters in order; the first that matches excludes the row, with a finding."""
        for rule, matches, value_of in self._filters:
            if matches(row):
                self.out.filtered[rule.name] += 1
                if external_id and external_id not in self.out.excluded:
                    self.out.excluded[external_id] = rule.reason
                else:                                   # no key, or the same key again: counted apart
                    self.out.unkeyed[rule.reason] += 1
                self.findings.append(Finding(rule.reason, self.mapping.name, self._key(row),
                                             describe(rule, value_of(row) if value_of else None)))
                return True
        return False


def _as_text(value: Any) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _field_getter(name: str, columns: Sequence[str] | None):
    from engine.expr import compile_expression
    return compile_expression(name).bind(columns)


def _key_getter(key: Sequence[str], columns: Sequence[str] | None):
    getters = [_field_getter(k, columns) for k in key]
    if len(getters) == 1:
        g = getters[0]
        return lambda row: _as_text(g(row))
    if len(getters) == 2:
        g1, g2 = getters
        return lambda row: f"{_as_text(g1(row))}/{_as_text(g2(row))}"
    return lambda row: "/".join([_as_text(g(row)) for g in getters])
