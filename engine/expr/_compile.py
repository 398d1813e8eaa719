"""jmespath ASTs compiled into Python closures, with jmespath's semantics.

`Compiler.compile(node)` turns a parsed expression into a function of one value. For a database
row the compiler is given the row's column positions, and a top-level field becomes
`operator.itemgetter(index)` on the tuple: no dict, no interpreter. Everything else mirrors
jmespath.visitor.TreeInterpreter node by node (truthiness, the 0/1 versus true/false equality
quirk, null propagation, projections that drop nulls); the equivalence tests hold the two side
by side. A node the compiler does not know is handed to jmespath's interpreter. A node that
needs the whole record at the top level of a row ('@', '*') raises `NeedsRecord`: the caller
then builds one dict per row and compiles for dicts instead.
"""
from __future__ import annotations

import operator
from numbers import Number
from functools import partial
from typing import Any, Callable, Mapping

from jmespath.functions import Functions
from jmespath.visitor import Options, TreeInterpreter, _Expression

from engine.expr.functions import FUNCTIONS, Lookup, map_values, map_values_noting

Compiled = Callable[[Any], Any]
Note = Callable[[str, Any], None]
"""note(table, code): map_values met a code that the named code table does not hold."""


class NeedsRecord(Exception):
    """The expression reads the whole record at the top level; rows must become dicts."""


def _get(value: Any, name: str) -> Any:
    try:
        return value.get(name)
    except AttributeError:
        return None


def is_false(value: Any) -> bool:
    """jmespath's falsiness: '', [], {}, null and false (but not 0)."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _equals(x: Any, y: Any) -> bool:
    if _is_number(x) and x in (0, 1):
        if isinstance(y, bool):
            return False
    elif _is_number(y) and y in (0, 1):
        if isinstance(x, bool):
            return False
    return x == y


def _comparable(value: Any) -> bool:
    return _is_number(value) or isinstance(value, str)


_ORDER = {"lt": operator.lt, "gt": operator.gt, "lte": operator.le, "gte": operator.ge}


class Compiler:
    def __init__(self, functions: Functions, positions: Mapping[str, int] | None = None, note: Note | None = None):
        """positions: column name (as the expression spells it) -> index in the row tuple;
        None: the compiled function reads dict records. `note`: told each code that a named
        code table does not hold (map_values_noting)."""
        self.functions = functions
        self.note = note
        self.lookups: Mapping[str, Lookup] = getattr(functions, "lookups", {})
        self.interpreter = TreeInterpreter(Options(custom_functions=functions))
        self.positions = positions

    def compile(self, node: dict, top: bool = True) -> Compiled:
        method = getattr(self, "_" + node["type"], None)
        if method is None:
            if top and self.positions is not None:
                raise NeedsRecord(node["type"])
            visit = self.interpreter.visit
            return lambda value: visit(node, value)
        return method(node, top and self.positions is not None)

    # --- values -----------------------------------------------------------------------------
    def _field(self, node, top):
        name = node["value"]
        if top:
            return operator.itemgetter(self.positions[name])
        return lambda value: _get(value, name)

    def _literal(self, node, top):
        constant = node["value"]
        return lambda value: constant

    def _current(self, node, top):
        if top:
            raise NeedsRecord("@")
        return lambda value: value

    _identity = _current

    def _expref(self, node, top):
        expression = _Expression(node["children"][0], self.interpreter)
        return lambda value: expression

    def _subexpression(self, node, top):
        first, *rest = node["children"]
        steps = [self.compile(first, top)] + [self.compile(child, False) for child in rest]
        if all(child["type"] == "field" for child in rest):
            start, names = steps[0], [child["value"] for child in rest]

            def path(value):
                value = start(value)
                for name in names:
                    if type(value) is dict:
                        value = value.get(name)
                    else:
                        value = _get(value, name)
                return value
            return path
        return _chain(steps)

    def _index_expression(self, node, top):
        left, right = node["children"]
        return _chain([self.compile(left, top), self.compile(right, False)])

    def _pipe(self, node, top):
        left, right = node["children"]
        return _chain([self.compile(left, top), self.compile(right, False)])

    def _index(self, node, top):
        index = node["value"]

        def get_index(value):
            if not isinstance(value, list):
                return None
            try:
                return value[index]
            except IndexError:
                return None
        return get_index

    def _slice(self, node, top):
        window = slice(*node["children"])
        return lambda value: value[window] if isinstance(value, list) else None

    # --- functions --------------------------------------------------------------------------
    def _function_expression(self, node, top):
        name, children = node["value"], node["children"]
        args = [self.compile(child, top) for child in children]
        if name == "map_values":
            table = children[1]["value"]
            lookup = self.lookups[table] if isinstance(table, str) else Lookup.of(table)
            value_of = args[0]
            if isinstance(table, str) and self.note is not None:
                tell = partial(self.note, table)
                return lambda value: map_values_noting(value_of(value), lookup, tell)
            return lambda value: map_values(value_of(value), lookup)
        if name in FUNCTIONS:
            impl = FUNCTIONS[name].impl
        else:
            impl = self._builtin(name)
        if len(args) == 1:
            (a,) = args
            return lambda value: impl(a(value))
        if len(args) == 2:
            a, b = args
            if children[1]["type"] == "literal":
                constant = children[1]["value"]
                return lambda value: impl(a(value), constant)
            return lambda value: impl(a(value), b(value))
        return lambda value: impl(*[arg(value) for arg in args])

    def _builtin(self, name: str) -> Callable[..., Any]:
        if name == "to_string":
            return _to_string(self.functions._func_to_string)
        spec = self.functions.FUNCTION_TABLE[name]
        signature = spec["signature"]
        if not any(s.get("types") or s.get("variadic") for s in signature):
            return getattr(self.functions, "_func_" + name)    # no type checks to make
        call = self.functions.call_function
        return lambda *args: call(name, list(args))

    # --- logic ------------------------------------------------------------------------------
    def _or_expression(self, node, top):
        left, right = (self.compile(child, top) for child in node["children"])

        def either(value):
            matched = left(value)
            return right(value) if is_false(matched) else matched
        return either

    def _and_expression(self, node, top):
        left, right = (self.compile(child, top) for child in node["children"])

        def both(value):
            matched = left(value)
            return matched if is_false(matched) else right(value)
        return both

    def _not_expression(self, node, top):
        inner = self.compile(node["children"][0], top)

        def negate(value):
            result = inner(value)
            if _is_number(result) and result == 0:
                return False
            return not result
        return negate

    def _comparator(self, node, top):
        left, right = (self.compile(child, top) for child in node["children"])
        op = node["value"]
        if op == "eq":
            return lambda value: _equals(left(value), right(value))
        if op == "ne":
            return lambda value: not _equals(left(value), right(value))
        compare = _ORDER[op]

        def ordered(value):
            x, y = left(value), right(value)
            if not (_comparable(x) and _comparable(y)):
                return None
            return compare(x, y)
        return ordered

    # --- collections ------------------------------------------------------------------------
    def _multi_select_list(self, node, top):
        items = [self.compile(child, top) for child in node["children"]]
        return lambda value: None if value is None else [item(value) for item in items]

    def _multi_select_dict(self, node, top):
        items = [(child["value"], self.compile(child["children"][0], top)) for child in node["children"]]
        return lambda value: None if value is None else {key: item(value) for key, item in items}

    def _projection(self, node, top):
        base, each = self.compile(node["children"][0], top), self.compile(node["children"][1], False)

        def project(value):
            items = base(value)
            if not isinstance(items, list):
                return None
            return [r for r in map(each, items) if r is not None]
        return project

    def _value_projection(self, node, top):
        base, each = self.compile(node["children"][0], top), self.compile(node["children"][1], False)

        def project_values(value):
            try:
                items = base(value).values()
            except AttributeError:
                return None
            return [r for r in map(each, items) if r is not None]
        return project_values

    def _filter_projection(self, node, top):
        left, right, condition = node["children"]
        base, each = self.compile(left, top), self.compile(right, False)
        keep = self.compile(condition, False)

        def project_filtered(value):
            items = base(value)
            if not isinstance(items, list):
                return None
            return [r for r in (each(i) for i in items if not is_false(keep(i))) if r is not None]
        return project_filtered

    def _flatten(self, node, top):
        base = self.compile(node["children"][0], top)

        def flatten(value):
            items = base(value)
            if not isinstance(items, list):
                return None
            merged = []
            for item in items:
                if isinstance(item, list):
                    merged.extend(item)
                else:
                    merged.append(item)
            return merged
        return flatten


def _to_string(builtin: Callable[[Any], str]) -> Callable[[Any], str]:
    """jmespath's to_string, without json.dumps for the common text and integer keys."""
    def to_string(value):
        kind = type(value)
        if kind is str:
            return value
        if kind is int:
            return str(value)        # what json.dumps writes for an int
        return builtin(value)
    return to_string


def _chain(steps: list[Compiled]) -> Compiled:
    if len(steps) == 2:
        first, second = steps
        return lambda value: second(first(value))

    def chained(value):
        for step in steps:
            value = step(value)
        return value
    return chained
