"""Column-wise evaluation: a compiled expression applied to a whole batch at once.

`Expr.bind_columns(columns)` gives `evaluate(cols, n)`: `cols` holds one sequence per source
column (a batch of rows transposed, `list(zip(*rows))`), each of length n; the result is a
sequence of n values, the same values `Expr.bind(columns)` gives row by row.

Why it is faster: a call f(g(Col)) becomes `map(f, map(g, col))`, looped in C instead of two
closure calls per row; the common functions have column versions that look at the column's value
types once (a text column is trimmed with `str.strip`, a column of whole numbers becomes text
with `str`); a literal is one object repeated. Nodes without a column form (paths into JSON,
projections, comparisons) run the row function over the batch's rows.

`map_memo` computes a function once per distinct value when the values of a column repeat
(salutations, languages, type codes, dates): a dict lookup per row instead of nested calls.
"""
from __future__ import annotations

import datetime as dt
from functools import partial
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

from jmespath.functions import Functions

from engine._table import ValueTable
from engine.expr._compile import Compiler, Note
from engine.expr.functions import (DISTINCT_DATES, FUNCTIONS, Lookup, _date_from_text, as_text, concat, is_iso_date,
                                   lower, map_values, map_values_noting, to_date, trim, upper)

Columns = Sequence[Sequence[Any]]
ColumnFunction = Callable[[Columns, int], Sequence[Any]]

_NONE = type(None)
_TEXT = {str}
_TEXT_OR_NULL = {str, _NONE}
_WHOLE_NUMBERS = {int}

# Value types that may share a cache entry only with equal values of the same type and give the
# same result for equal values (not float or Decimal: 1.0 == 1, and Decimal('1.0') reads '1.0';
# not bool: True == 1).
MEMO_TYPES = frozenset({str, int, _NONE, dt.date})
# Results that rows may share: immutable values only (a list must stay each row's own).
_SHARED_RESULTS = frozenset({str, int, float, bool, _NONE, Decimal, dt.date, dt.datetime})
_MEMO_MIN_ROWS = 32
_PROBE = 300


def map_memo(fn: Callable[[Any], Any], values: Sequence[Any], *, costly: bool = False) -> list | None:
    """[fn(v) for v in values], computing fn once per distinct value; None when that does not pay
    (few rows, values mostly distinct, or types whose equal values may give different results).
    `costly`: fn costs much more than a dict lookup (a regex), so that even a column with half
    its values distinct gains."""
    n = len(values)
    share = 0.75 if costly else 1 / 3                 # of distinct values up to which it pays
    if n < _MEMO_MIN_ROWS:
        return None
    probe = values[:_PROBE]
    if not set(map(type, probe)) <= MEMO_TYPES or (not costly and len(set(probe)) > share * len(probe)):
        return None                                 # the first values are mostly distinct
    if not set(map(type, values)) <= MEMO_TYPES:
        return None
    distinct = set(values)
    if len(distinct) > share * n:
        return None
    table = {v: fn(v) for v in distinct}
    if not set(map(type, table.values())) <= _SHARED_RESULTS:
        return None
    return list(map(table.__getitem__, values))


# --- column versions of the registered functions: same results as map(function, column) ----------
def text_column(values: Sequence[Any]) -> Sequence[Any]:
    """as_text over a column."""
    types = set(map(type, values))
    if types <= _TEXT_OR_NULL:
        return values
    if types == _WHOLE_NUMBERS:
        return whole_numbers_as_text(values)
    return list(map(as_text, values))


class _ByColumn:
    """Something known of the last few columns, by the identity of the column (the entry holds
    the column, so that its id stays its own while the entry lasts)."""
    __slots__ = ("_entries",)

    def __init__(self):
        self._entries: dict[int, tuple[Sequence[Any], Any]] = {}

    def get(self, column: Sequence[Any]) -> Any:
        """What was put for this very column; None if nothing (or it was let go)."""
        entry = self._entries.get(id(column))
        return entry[1] if entry is not None and entry[0] is column else None

    def put(self, column: Sequence[Any], value: Any) -> None:
        if len(self._entries) >= 8:
            self._entries.clear()
        self._entries[id(column)] = (column, value)


_AS_TEXT = _ByColumn()


def whole_numbers_as_text(values: Sequence[int]) -> tuple[str, ...]:
    """str() of each int of a column. A key column is read by several fields of a batch (the
    external_id, the ERP key, a reference, the contract), so the last few results are kept,
    by the identity of the column."""
    known = _AS_TEXT.get(values)
    if known is not None:
        return known
    texts = tuple(map(repr, values))     # repr of an int is its str, without str()'s type call
    _AS_TEXT.put(values, texts)
    return texts


def _string_method(method: Callable[[str], str], scalar: Callable[[Any], Any]) -> Callable[[Sequence], list]:
    def column(values: Sequence[Any]) -> list:
        types = set(map(type, values))
        if types == _TEXT:
            return list(map(method, values))
        if types <= _TEXT_OR_NULL:
            return [None if v is None else method(v) for v in values]
        return list(map(scalar, values))
    return column


_DATES = ValueTable(_date_from_text, fixed={None: None})
"""Date texts -> what to_date gives for them, read once per distinct text for every slice of a run."""

_ISO_TEXTS: set[str] = set()
"""Texts seen in the run that hold an ISO date (2024-01-31) as to_date gives it: to_date gives
each back unchanged."""

_ISO_COLUMNS = _ByColumn()
"""The last few columns _date_column gave back as ISO date texts and nulls, unchanged or made of
a driver's dates: the window gate compares them as they are without looking at them again
(iso_column)."""

_DATE_OBJECTS = ValueTable(dt.date.isoformat, fixed={None: None})
"""A driver's dates (PostgreSQL's, SQL Server's) -> to_date's ISO text, once per distinct day for
the run, as _DATES for texts."""

_DATES_OR_NULL = {dt.date, _NONE}                       # dt.date itself: not datetime, which to_date cuts


def _date_column(values: Sequence[Any]) -> Sequence[Any]:
    types = set(map(type, values))
    if types <= _DATES_OR_NULL and dt.date in types:
        iso = _DATE_OBJECTS(values)                     # isoformat() gives ISO texts only
        _ISO_COLUMNS.put(iso, True)
        return iso
    if types <= _TEXT_OR_NULL:                          # dates repeat: read once per distinct text
        distinct = set(values)
        distinct.discard(None)
        new = distinct.difference(_ISO_TEXTS)
        iso = set(filter(is_iso_date, new)) if new else new
        if iso:
            if len(_ISO_TEXTS) + len(iso) > DISTINCT_DATES:
                _ISO_TEXTS.clear()
            _ISO_TEXTS.update(iso)
        if len(iso) == len(new):                         # ISO dates already (a database's own): as they are
            _ISO_COLUMNS.put(values, True)
            return values
        return _DATES(values)                            # None stays None
    memo = map_memo(to_date, values)
    return memo if memo is not None else list(map(to_date, values))


def iso_column(values: Sequence[Any]) -> bool:
    """Whether `values` is a column _date_column gave back as ISO date texts and nulls."""
    return _ISO_COLUMNS.get(values) is True


def _concat_column(*columns: Sequence[Any]) -> list:
    texts = [text_column(c) for c in columns]
    if all(set(map(type, t)) == _TEXT for t in texts):     # no null to skip: the texts joined per row
        return list(map("".join, zip(*texts)))
    return list(map(concat, *columns))


SELF_MEMO = frozenset({"to_date"})
"""Functions whose column version computes each distinct value once (across slices)."""

COLUMN_VERSIONS: dict[str, Callable[..., Sequence[Any]]] = {
    "trim": _string_method(str.strip, trim),
    "lower": _string_method(str.lower, lower),
    "upper": _string_method(str.upper, upper),
    "to_text": text_column,
    "to_date": _date_column,
    "concat": _concat_column,
}


def _translate_noting(value: Any, lookup: Lookup, tell: Callable[[Any], None]) -> Any:
    return map_values_noting(value, lookup, tell)


class ColumnCompiler:
    """Compiles an AST into a ColumnFunction; nodes without a column form use `rows`' compiler."""

    def __init__(self, functions: Functions, positions: Mapping[str, int], note: Note | None = None):
        self.functions = functions
        self.positions = positions
        self.note = note
        self.rows = Compiler(functions, positions, note)   # raises NeedsRecord where a row needs a dict
        self.lookups: Mapping[str, Lookup] = getattr(functions, "lookups", {})

    def compile(self, node: dict) -> ColumnFunction:
        kind = node["type"]
        if kind == "field":
            position = self.positions[node["value"]]
            return lambda cols, n: cols[position]
        if kind == "literal":
            constant = node["value"]
            return lambda cols, n: [constant] * n
        if kind == "function_expression":
            return self._function(node)
        row = self.rows.compile(node)

        def by_row(cols, n):
            return list(map(row, zip(*cols))) if cols else [row(()) for _ in range(n)]
        return by_row

    def _function(self, node: dict) -> ColumnFunction:
        name, children = node["value"], node["children"]
        args = [self.compile(child) for child in children]
        if name == "map_values":
            table = children[1]["value"]
            lookup = self.lookups[table] if isinstance(table, str) else Lookup.of(table)
            value_of = args[0]

            def translate(value):
                return map_values(value, lookup)
            if isinstance(table, str) and self.note is not None:     # with map_memo: told once per distinct code
                translate = partial(_translate_noting, lookup=lookup, tell=partial(self.note, table))  # noqa: F811

            def map_column(cols, n):
                values = value_of(cols, n)
                memo = map_memo(translate, values)
                return memo if memo is not None else list(map(translate, values))
            return map_column
        column_version = COLUMN_VERSIONS.get(name)
        if column_version is not None:
            if len(args) == 1:
                (only,) = args
                return lambda cols, n: column_version(only(cols, n))
            return lambda cols, n: column_version(*[arg(cols, n) for arg in args])
        impl = FUNCTIONS[name].impl if name in FUNCTIONS else self.rows._builtin(name)
        if len(args) == 1:
            (only,) = args
            return lambda cols, n: list(map(impl, only(cols, n)))
        return lambda cols, n: list(map(impl, *[arg(cols, n) for arg in args]))
