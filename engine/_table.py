"""A function's results kept for the values a run sees again and again."""
from __future__ import annotations

from typing import Any, Callable, Hashable, Mapping, Sequence


class ValueTable:
    """`table(values)` is [fn(v) for v in values], fn computed once per distinct value for as long
    as the table lives, across calls (a large ERP's dates repeat across slices and chunks: a few
    thousand distinct days). At most `limit` values are kept; past that the table starts again.
    `fixed`: results known without calling fn (None -> None), kept through every restart."""

    def __init__(self, fn: Callable[[Any], Any], *, limit: int = 1 << 16, fixed: Mapping[Hashable, Any] | None = None):
        self._fn, self._limit, self._fixed = fn, limit, dict(fixed or {})
        self._table: dict = dict(self._fixed)

    def __call__(self, values: Sequence[Hashable]) -> list:
        table = self._table
        new = set(values).difference(table)
        if new:
            if len(table) + len(new) > self._limit:
                table.clear()
                table.update(self._fixed)
                new = set(values).difference(table)
            table.update(zip(new, map(self._fn, new)))
        return list(map(table.__getitem__, values))
