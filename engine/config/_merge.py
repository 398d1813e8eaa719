"""Merge a tenant's `overrides` into its mapping profile.

The rules (docs/config.md, "Overrides"):
  * objects (entities, code tables, `values`, `params`, `fields`) merge key by key; a code of a
    table's `values` replaces the one map_values takes for the same code (`e` replaces `E`);
  * scalars and plain lists (`query`, `key`, `in`, ...) are replaced;
  * a key set to null is removed (e.g. `fields: {mobile: null}` unmaps the mobile field);
  * `filters` merge by `name`: the same name replaces the mapping's filter as a whole,
    `enabled: false` removes it, a new name is appended.
Switching off or changing a filter the mapping does not have is an error (usually a typo).
The result remembers where each value came from (a `Locator`), so problems in the merged
mapping are reported in the file and at the line the value was written.
"""
from __future__ import annotations

import copy
from typing import Any

from engine.config._problem import Locator, Problem
from engine.config._text import clash_message, did_you_mean
from engine.config._yaml import Document
from engine.expr.functions import table_key

FILTER_KINDS = ("in", "not_in", "flag", "regex", "range", "expr")


def merge_overrides(mapping: Document, tenant: Document) -> tuple[Any, Locator, list[Problem]]:
    """The mapping with the tenant's overrides applied, where each value came from, problems."""
    merged = copy.deepcopy(mapping.data)
    loc = Locator.of(mapping)
    problems: list[Problem] = []
    overrides = tenant.data.get("overrides") if isinstance(tenant.data, dict) else None
    if not isinstance(merged, dict) or not isinstance(overrides, dict):
        return merged, loc, problems
    merger = _Merger(mapping, tenant, loc, problems)
    for section in ("code_tables", "entities"):
        if isinstance(overrides.get(section), dict):
            if not isinstance(merged.get(section), dict):
                merged[section] = {}
            merger.merge_dict(merged[section], overrides[section], (section,), ("overrides", section))
    return merged, loc, problems


class _Merger:
    def __init__(self, mapping: Document, tenant: Document, loc: Locator, problems: list[Problem]):
        self.mapping, self.tenant, self.loc, self.problems = mapping, tenant, loc, problems
        self.tenant_loc = Locator.of(tenant)

    def merge_dict(self, base: dict, over: dict, mpath: tuple, tpath: tuple) -> None:
        codes = len(mpath) == 3 and mpath[0] == "code_tables" and mpath[2] == "values"
        for key, value in over.items():
            m, t = mpath + (key,), tpath + (key,)
            if codes:                               # `e:` overrides the mapping's `E:`: the same code for map_values
                for same in [k for k in base if k != key and table_key(k) == table_key(key)]:
                    if same in over and over[same] != value:    # two codes of this override: the last would win
                        seen = self.tenant_loc.problem(tpath + (same,), "")
                        self.problems.append(self.tenant_loc.problem(
                            t, clash_message(key, same, value, over[same], f"line {seen.line}")))
                    base.pop(same)
                    self.loc.prune(mpath + (same,))
            if value is None:
                base.pop(key, None)
                self.loc.prune(m)
                self.loc.set(m, self.tenant, t)   # remembers where it was removed
            elif key == "filters" and isinstance(value, list) and isinstance(base.get(key), list):
                self.merge_filters(base, value, m, t)
            elif isinstance(value, dict) and isinstance(base.get(key), dict):
                self.merge_dict(base[key], value, m, t)
            else:
                base[key] = copy.deepcopy(value)
                self.loc.graft(m, self.tenant, t)

    def merge_filters(self, entity: dict, over: list, mpath: tuple, tpath: tuple) -> None:
        # each item: (filter, origin document, path in that document)
        items: list[tuple[Any, Document, tuple]] = []
        for i, item in enumerate(entity["filters"]):
            doc, src = self.loc.origin(mpath + (i,)) or (self.mapping, mpath + (i,))
            items.append((item, doc, src))
        off: list[str] = []                         # switched off by an earlier entry of this override
        for j, item in enumerate(over):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                items.append((copy.deepcopy(item), self.tenant, tpath + (j,)))
                continue
            name = item["name"]
            names = [f.get("name") for f, _, _ in items if isinstance(f, dict)]
            index = next((k for k, (f, _, _) in enumerate(items)
                          if isinstance(f, dict) and f.get("name") == name), None)
            if item.get("enabled") is False:
                if index is None:
                    self._missing(tpath + (j, "name"), name, names, "switch off", off=off)
                else:
                    del items[index]
                    off.append(name)
            elif index is not None:
                items[index] = (copy.deepcopy(item), self.tenant, tpath + (j,))
            elif "reason" not in item and (not any(k in item for k in FILTER_KINDS) or did_you_mean(name, names)):
                # no reason: meant to change a filter of the mapping, maybe one whose name is mistyped
                self._missing(tpath + (j, "name"), name, names, "change",
                              " A new filter needs 'reason' and one of: " + ", ".join(FILTER_KINDS) + ".", off=off)
            else:
                items.append((copy.deepcopy(item), self.tenant, tpath + (j,)))
        entity["filters"] = [f for f, _, _ in items]
        self.loc.prune(mpath)
        self.loc.set(mpath, self.tenant, tpath)   # the list itself: where the override wrote it
        for i, (_, doc, src) in enumerate(items):
            self.loc.graft(mpath + (i,), doc, src)

    def _missing(self, tpath: tuple, name: str, names: list, verb: str, extra: str = "", *,
                 off: list[str] = ()) -> None:
        entity = tpath[2] if len(tpath) > 2 else "?"
        if name in off:
            message = f"cannot {verb} filter '{name}': an earlier entry of this list switches it off."
            self.problems.append(self.tenant_loc.problem(tpath, message + extra))
            return
        hint = did_you_mean(name, [n for n in (*names, *off) if isinstance(n, str)])
        known = ", ".join(f"'{n}'" for n in names if isinstance(n, str)) or "none"
        if off:
            known += " (switched off above: " + ", ".join(f"'{n}'" for n in off) + ")"
        message = (f"cannot {verb} filter '{name}': the mapping has no such filter in {entity}. "
                   + (hint if hint else f"Its filters are: {known}.") + extra)
        self.problems.append(self.tenant_loc.problem(tpath, message))
