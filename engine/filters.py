"""Filters: named exclusion rules with reason codes, compiled into predicates over source rows.

A filter looks at the source record (the ERP's columns, before mapping), so that its reason can
be told to the property manager in the ERP's terms ("Einheit 4711: Fiktiv = 1").
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Callable, Sequence

from engine.config.model import FilterRule

_TRUTHY = frozenset({"1", "true", "j", "ja", "y", "yes", "x", "wahr"})

Predicate = Callable[[Any], bool]
ColumnPredicate = Callable[[Sequence[Sequence[Any]], int], list]


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _value_test(rule: FilterRule) -> Callable[[Any], bool]:
    """For the rules on one field: whether the field's value excludes the row."""
    if rule.kind in ("in", "not_in"):
        values = frozenset(_text(v) for v in rule.values or ())
        if rule.kind == "in":
            return lambda v: v is not None and _text(v) in values
        return lambda v: v is None or _text(v) not in values
    if rule.kind == "flag":
        return lambda v: v is not None and (v is True or _text(v) in _TRUTHY)
    if rule.kind == "regex":
        search = rule.pattern.search
        return lambda v: v is not None and search(str(v)) is not None
    if rule.kind == "range":
        lo = float("-inf") if rule.min is None else rule.min
        hi = float("inf") if rule.max is None else rule.max
        return lambda v: (n := _number(v)) is not None and lo <= n <= hi
    raise ValueError(f"unknown filter kind {rule.kind!r}")


def compile_filter(rule: FilterRule, columns: Sequence[str] | None) -> Predicate:
    """A predicate that is true when the rule excludes the row (tuple row, or dict with columns=None)."""
    if rule.kind == "expr":
        fn = rule.expr.bind(columns)
        return lambda row: bool(fn(row))
    from engine.expr import compile_expression
    get = compile_expression(rule.field).bind(columns)
    test = _value_test(rule)
    return lambda row: test(get(row))


def compile_filter_columns(rule: FilterRule, columns: Sequence[str]) -> ColumnPredicate:
    """The same predicate over a batch's columns (see Expr.bind_columns): one bool per row. The
    test runs once per distinct value when the values repeat (type codes, flags, names)."""
    if rule.kind == "expr":
        evaluate = rule.expr.bind_columns(columns)
        return lambda cols, n: list(map(bool, evaluate(cols, n)))
    from engine.expr import compile_expression
    from engine.expr._columns import map_memo
    evaluate = compile_expression(rule.field).bind_columns(columns)
    test = _value_test(rule)

    def excluded(cols, n):
        values = evaluate(cols, n)
        memo = map_memo(test, values, costly=True)
        return memo if memo is not None else list(map(test, values))
    return excluded


def describe(rule: FilterRule, value: Any) -> str:
    """A sentence for the finding: which rule matched, on which value."""
    if rule.kind == "expr":
        return f"excluded by filter '{rule.name}' ({rule.expr.source})"
    if rule.kind == "flag":     # the set value reads 1, True or 'J' depending on the database: not shown
        return f"excluded by filter '{rule.name}': {rule.field} is set"
    listed = ", ".join(sorted(rule.values or ()))
    shown = {"in": f"is one of the filter's values ({listed}; compared ignoring case)",
             "not_in": f"is not one of the filter's values ({listed})",
             "regex": f"matches /{rule.pattern.pattern if rule.pattern else ''}/",
             "range": f"is in the range {_bound(rule.min)}..{_bound(rule.max)}"}[rule.kind]
    return f"excluded by filter '{rule.name}': {rule.field} = {_shown(value)} {shown}"


def _shown(value: Any) -> str:
    """The value as the ERP holds it: text quoted, a DECIMAL or a date as digits (not Python's
    `Decimal('185.35')` or `datetime.date(2024, 1, 31)`, which PostgreSQL and SQL Server return)."""
    if isinstance(value, (Decimal, dt.date)):
        from engine.expr.functions import as_text
        return as_text(value)
    return repr(value)


def _bound(number: float | None) -> str:
    if number is None:
        return ""
    return str(int(number)) if float(number).is_integer() else str(number)
