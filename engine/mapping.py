"""Map and filter: source rows -> portal records, with every exclusion counted and explained.

The compiled expressions of an entity are bound once per result set (column order), so a row
is mapped by calling a handful of closures: no dict per row, no jmespath search for plain
columns (see engine.expr).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

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


def _defaults(entity: str) -> dict[str, Any]:
    """Spec defaults for fields whose schema does not allow null (e.g. units.type -> 'other')."""
    out = {}
    for name, prop in contract.record_schema(entity)["properties"].items():
        types = prop.get("type")
        nullable = (isinstance(types, list) and "null" in types) or None in prop.get("enum", ())
        if "default" in prop and not nullable:
            out[name] = prop["default"]
    return out


class Mapper:
    """Maps batches of one entity's rows; `columns` is None for dict records (API sources)."""

    def __init__(self, mapping: EntityMapping, columns: Sequence[str] | None, out: EntityData,
                 findings: list[Finding]):
        self.mapping, self.out, self.findings = mapping, out, findings
        names = [f for f in contract.fields(mapping.name) if f in mapping.fields]
        self._getters = [(n, mapping.fields[n].bind(columns)) for n in names]
        self._unmapped = {n: None for n in contract.fields(mapping.name) if n not in mapping.fields}
        self._defaults = _defaults(mapping.name)
        self._id = mapping.fields["external_id"].bind(columns)
        self._contract = mapping.contract.bind(columns) if mapping.contract else None
        self._filters = [(rule, compile_filter(rule, columns),
                          _field_getter(rule.field, columns) if rule.field else None)
                         for rule in mapping.filters]
        self._key = _key_getter(mapping.key, columns)

    def map_rows(self, rows: Iterable[Any]) -> None:
        out, records, findings, entity = self.out, self.out.records, self.findings, self.mapping.name
        getters, unmapped, defaults, filters = self._getters, self._unmapped, self._defaults, self._filters
        id_of, key_of, contract_of = self._id, self._key, self._contract
        for row in rows:
            out.extracted += 1
            external_id = id_of(row)
            if external_id is not None and not isinstance(external_id, str):
                external_id = _as_text(external_id)
            excluded = False
            for rule, matches, value_of in filters:
                if matches(row):
                    out.filtered[rule.name] += 1
                    if external_id is not None:
                        out.excluded[external_id] = rule.reason
                    findings.append(Finding(rule.reason, entity, key_of(row),
                                            describe(rule, value_of(row) if value_of else None)))
                    excluded = True
                    break
            if excluded:
                continue
            if not external_id:
                findings.append(Finding("invalid_record", entity, key_of(row),
                                        "external_id maps to an empty value", field="external_id"))
                continue
            data = {name: get(row) for name, get in getters}
            data["external_id"] = external_id
            if unmapped:
                data.update(unmapped)
            for name, default in defaults.items():
                if data.get(name) is None:
                    data[name] = default
            if external_id in records:
                findings.append(Finding("duplicate_key", entity, key_of(row),
                                        f"external_id '{external_id}' is also produced by ERP record "
                                        f"{records[external_id].key}; this one is not sent"))
                continue
            records[external_id] = Rec(key_of(row), data, contract_of(row) if contract_of else None)


def _as_text(value: Any) -> str:
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
    return lambda row: "/".join(_as_text(g(row)) for g in getters)
