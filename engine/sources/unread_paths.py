"""The names an entity's mapping reads (its key, fields, contract and filters) that no record an
API answered has: in JSON a misspelt or wrongly cased name is not an error, it reads as null in
every record. The API source warns about them after a run's extract, doctor after the first
page, discover in its listing.
"""
from __future__ import annotations

from typing import Any

from engine.config.model import EntityMapping


def read_paths(entity: EntityMapping) -> set[tuple[str, ...]]:
    """The plain paths into a record (('name',), ('address', 'city')) that the mapping of
    `entity` reads: its key, fields, contract and filters (Expr.paths)."""
    from engine.expr import compile_expression
    names = [compile_expression(name) for name in (*entity.key, *(f.field for f in entity.filters if f.field))]
    paths: set[tuple[str, ...]] = set()
    for expr in [*names, *entity.fields.values(), entity.contract, *(f.expr for f in entity.filters)]:
        if expr is not None:
            paths |= expr.paths
    return paths


class UnreadPaths:
    """The paths the mapping of an entity reads that none of the API's records seen so far
    has (`see` each page's records; `missing()` says which, with what each may be meant as)."""

    def __init__(self, entity: EntityMapping):
        self._missing = read_paths(entity)
        self._keys: dict[tuple[str, ...], set[str]] = {}     # a missing path's parent -> the keys seen there

    def see(self, records: list) -> None:
        for record in records:
            if not self._missing:
                return
            for path in list(self._missing):
                node: Any = record
                for depth, name in enumerate(path):
                    if not isinstance(node, dict):
                        break
                    if name not in node:
                        self._keys.setdefault(path[:depth], set()).update(node)
                        break
                    node = node[name]
                else:
                    self._missing.discard(path)

    def missing(self) -> list[str]:
        """"'address.City' (did you mean 'city'?)" for each path no record had, sorted."""
        import difflib
        out = []
        for path in sorted(self._missing):
            depth = next((d for d in range(len(path) - 1, -1, -1) if path[:d] in self._keys), 0)
            keys = sorted(self._keys.get(path[:depth], ()))
            name = path[depth]
            close = [k for k in keys if k.casefold() == name.casefold()] or \
                difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
            out.append(f"'{'.'.join(path)}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return out
