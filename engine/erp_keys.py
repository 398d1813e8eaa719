"""ERP keys as findings show them: a record's key columns as one text ('4711', '1001/2002'),
an empty part as '(empty)' instead of Python's 'None'. _key_getter reads a key row by row (the
Mapper's row path, the API source's messages), _key_columns over a slice's columns (the column
path, engine.mapping_columns); the two give the same texts.
"""
from __future__ import annotations

from typing import Any, Sequence


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
