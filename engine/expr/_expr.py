"""compile_expression: a jmespath text checked at load time and compiled once.

Checks (all raise ExprError with the column in the text): syntax, function names (with a
did-you-mean), the number of arguments, map_values' table (a code table's name in quotes, or an
object literal) and truncate's length (a whole-number literal). The resulting `Expr` knows which
source columns it reads and binds to a row layout: `expr.bind(["ObjektNr", ...])` gives a fast
function over tuple rows, `expr.bind(None)` one over dict records (nested JSON from an API).
"""
from __future__ import annotations

import difflib
import operator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator, Mapping, Sequence

from jmespath import exceptions as jp_exceptions
from jmespath.lexer import Lexer
from jmespath.parser import Parser

from engine.expr._columns import SELF_MEMO, ColumnCompiler, map_memo
from engine.expr._compile import Compiler, NeedsRecord, Note
from engine.expr.functions import BUILTIN_NAMES, FUNCTIONS, make_functions

Row = Sequence[Any]


class ExprError(Exception):
    """An expression that cannot be compiled or bound. `column`: 0-based position in the text."""

    def __init__(self, message: str, column: int | None = None, expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.column = column
        self.expression = expression

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Expr:
    source: str
    columns: frozenset[str] | None          # top-level source names read; None: not knowable
    functions: frozenset[str]               # names of the functions called
    _ast: dict = field(repr=False, compare=False, hash=False)
    _functions: Any = field(repr=False, compare=False, hash=False)

    def bind(self, columns: Sequence[str] | None, note: Note | None = None) -> Callable[[Any], Any]:
        """A function of one row: a tuple in `columns` order, or (columns None) a dict record.

        Column names match the expression's names exactly or, failing that, case-insensitively
        (PostgreSQL returns unquoted identifiers in lower case). A name the row does not have
        raises ExprError: it is almost always a typo in the mapping or a column missing from
        the query.

        Calling the function raises what jmespath raises for the same record: a
        jmespath.exceptions.JMESPathTypeError from a built-in given the wrong type (join over
        an array with a null), a TypeError for '<' between text and a number. The engine's own
        functions never raise on unexpected values; they give null.

        `note(table, code)` is told each code that map_values meets and that the named code
        table does not hold (not null or blank text), as the row is read (engine.mapping).
        """
        note = note if self.notes_codes else None
        if columns is None:
            return self._for_records if note is None else Compiler(self._functions, note=note).compile(self._ast)
        positions = self._positions(list(columns))
        if self.columns is not None:
            try:
                return Compiler(self._functions, positions, note).compile(self._ast)
            except NeedsRecord:
                pass
        return self._via_record(list(columns), positions, note)

    @property
    def notes_codes(self) -> bool:
        """Whether the expression translates through a named code table (`note` of bind)."""
        return "map_values" in self.functions and any(
            n["type"] == "function_expression" and n["value"] == "map_values"
            and n["children"][1]["type"] == "literal" and isinstance(n["children"][1]["value"], str)
            for n in _nodes(self._ast))

    def bind_columns(self, columns: Sequence[str], note: Note | None = None
                     ) -> Callable[[Sequence[Sequence[Any]], int], Sequence[Any]]:
        """A function of a whole batch: `evaluate(cols, n)` with one sequence per column (in
        `columns` order, e.g. `list(zip(*rows))`), each of length n; it returns a sequence of n
        values, each the value `bind(columns)` gives for that row (see engine.expr._columns).

        An expression of one column that calls functions is computed once per distinct value
        when the column's values repeat. If the column-wise evaluation raises, the batch is
        evaluated row by row, so that what is raised is what the row binding raises.

        `note` as for bind, told at least once for each code missing from a code table in the
        batch, and, where the values repeat, about once per distinct code: which rows carry it
        is for the caller to find, only where a code is missing (engine.mapping_columns).
        """
        columns = list(columns)
        note = note if self.notes_codes else None
        row = self.bind(columns, note)           # checks the names; the fallback

        def by_row(cols: Sequence[Sequence[Any]], n: int) -> list:
            return list(map(row, zip(*cols)))
        if self.columns is None:
            return by_row
        positions = self._positions(columns)
        try:
            direct = ColumnCompiler(self._functions, positions, note).compile(self._ast)
        except NeedsRecord:
            return by_row
        one = None
        if len(self.columns) == 1 and self.functions and not _memoised_by_column(self._ast):
            (name,) = self.columns
            position = positions[name]
            single = Compiler(self._functions, {name: 0}, note).compile(self._ast)
            one = lambda value: single((value,))  # noqa: E731

        def evaluate(cols: Sequence[Sequence[Any]], n: int) -> Sequence[Any]:
            try:
                if one is not None:
                    memo = map_memo(one, cols[position])
                    if memo is not None:
                        return memo
                return direct(cols, n)
            except Exception:
                return by_row(cols, n)
        return evaluate

    def __getstate__(self) -> dict:
        # picklable (for worker processes): the compiled closures are rebuilt on first use
        return {k: v for k, v in self.__dict__.items() if k != "_for_records"}

    @property
    def paths(self) -> frozenset[tuple[str, ...]]:
        """The plain paths the expression reads from a record: ('name',) for a name, ('address',
        'city') for address.city (of `a.b[0].c`, the leading ('a', 'b')). What '@' or '*' reads
        is not among them."""
        return frozenset(_plain_paths(self._ast))

    def evaluate(self, record: Mapping[str, Any]) -> Any:
        """The expression's value for one dict record."""
        return self._for_records(record)

    @cached_property
    def _for_records(self) -> Callable[[Any], Any]:
        return Compiler(self._functions).compile(self._ast)

    def _positions(self, columns: list[str]) -> dict[str, int]:
        exact = {name: i for i, name in enumerate(columns)}
        folded: dict[str, list[int]] = {}
        for i, name in enumerate(columns):
            folded.setdefault(name.casefold(), []).append(i)
        positions = {}
        for name in sorted(_top_level_names(self._ast, whole=frozenset())):
            if name in exact:
                positions[name] = exact[name]
                continue
            candidates = folded.get(name.casefold(), [])
            if len(candidates) == 1:
                positions[name] = candidates[0]
            elif candidates:
                found = ", ".join(repr(columns[i]) for i in candidates)
                raise ExprError(f"column '{name}' is ambiguous: the query returns {found}",
                                _name_column(self.source, name), self.source)
            else:
                hint = _did_you_mean(name, columns)
                raise ExprError(f"unknown column '{name}': the query does not return it.{hint}",
                                _name_column(self.source, name), self.source)
        return positions

    def _via_record(self, columns: list[str], positions: dict[str, int], note: Note | None = None
                    ) -> Callable[[Row], Any]:
        # '@' or '*' at the top: one dict per row, keyed by the query's names plus the names the
        # expression spells differently; then the dict-record function.
        keys = columns + [name for name in positions if name not in columns]
        indexes = list(range(len(columns))) + [positions[n] for n in keys[len(columns):]]
        pick = operator.itemgetter(*indexes) if len(indexes) > 1 else (lambda row: (row[indexes[0]],))
        evaluate = self._for_records if note is None else Compiler(self._functions, note=note).compile(self._ast)
        return lambda row: evaluate(dict(zip(keys, pick(row))))


def compile_expression(text: str, *, code_tables: Mapping[str, Any] = {}) -> Expr:
    """Parse, check and compile one expression (see the module doc for the checks)."""
    if not isinstance(text, str):
        raise ExprError(f"an expression must be text, not {type(text).__name__}", None, str(text))
    try:
        ast = Parser().parse(text).parsed
    except jp_exceptions.EmptyExpressionError:
        raise ExprError("the expression is empty", 0, text) from None
    except jp_exceptions.IncompleteExpressionError:
        raise ExprError("syntax error: the expression ends too early", len(text), text) from None
    except jp_exceptions.LexerError as error:
        raise ExprError(_lexer_message(error), error.lexer_position, text) from None
    except jp_exceptions.ParseError as error:
        raise ExprError(_parse_message(error), error.lex_position, text) from None
    _check_literals_as_names(text, ast)
    _check_functions(text, ast, code_tables)
    return Expr(text, _top_level_names(ast), frozenset(_called(ast)), ast, make_functions(code_tables))


_TOKEN_TEXT = {"rparen": "')'", "lparen": "'('", "rbracket": "']'", "lbracket": "'['",
               "rbrace": "'}'", "lbrace": "'{'", "comma": "','", "colon": "':'", "dot": "'.'",
               "eof": "the end", "quoted_identifier": "a quoted name",
               "unquoted_identifier": "a name", "lbracket_or_lbrace": "'[' or '{'"}


def _lexer_message(error: jp_exceptions.LexerError) -> str:
    message = error.message
    if message.startswith("Unknown token"):
        char = message[len("Unknown token"):].strip(" '")
        hint = (" (a comparison is written '==')" if char == "=" else
                " (a name with characters other than letters, digits and '_' is written in"
                " double quotes, such as \"Objekt-Nr\")")
        return f"syntax error: unknown character '{char}'{hint}"
    return f"syntax error: {message[:1].lower()}{message[1:]}"


def _parse_message(error: jp_exceptions.ParseError) -> str:
    found = "the end" if error.token_type == "EOF" else repr(str(error.token_value))
    msg = error.msg
    if msg.startswith("Expecting: "):
        expected = msg[len("Expecting: "):].split(", got:")[0].strip("[]")
        wanted = " or ".join(_TOKEN_TEXT.get(t.strip(" '"), t.strip(" '")) for t in expected.split(","))
        return f"syntax error: expected {wanted}, found {found}"
    if msg in ("invalid token", "Invalid jmespath expression") or msg.startswith("Unexpected token"):
        if error.token_type == "NUMBER":      # jmespath reads numbers only in backticks
            return f"syntax error: unexpected {found} (a number is written in backticks: `{error.token_value}`)"
        return f"syntax error: unexpected {found}"
    return f"syntax error: {msg[:1].lower()}{msg[1:]}"


def _nodes(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for child in node.get("children", ()):
            yield from _nodes(child)


def _called(ast: dict) -> Iterator[str]:
    return (n["value"] for n in _nodes(ast) if n["type"] == "function_expression")


def _top_level_names(node: dict, whole: frozenset[str] | None = None) -> frozenset[str] | None:
    """The names read from the record itself; `whole` (None) when the whole record is read."""
    kind = node["type"]
    if kind == "field":
        return frozenset([node["value"]])
    if kind in ("current", "identity"):
        return whole
    if kind in ("literal", "expref", "index", "slice"):
        return frozenset()
    children = node["children"]
    if kind in ("subexpression", "index_expression", "projection", "filter_projection",
                "value_projection", "pipe", "flatten"):
        children = children[:1]              # the rest reads what the first part produced
    names: set[str] = set()
    for child in children:
        found = _top_level_names(child, whole)
        if found is None:
            return None
        names |= found
    return frozenset(names)


def _plain_paths(node: dict) -> set[tuple[str, ...]]:
    """Expr.paths of an AST node."""
    kind, children = node["type"], node.get("children") or ()
    if kind == "field":
        return {(node["value"],)}
    if kind == "subexpression":
        path: list[str] = []
        for child in children:
            if child["type"] == "field":
                path.append(child["value"])
                continue
            if child["type"] == "index_expression" and child["children"][0]["type"] == "field":
                path.append(child["children"][0]["value"])
            break
        return {tuple(path)} if path else _plain_paths(children[0])
    if kind in ("index_expression", "projection", "filter_projection", "value_projection", "pipe", "flatten"):
        children = children[:1]              # the rest reads what the first part produced
    elif kind in ("literal", "expref", "index", "slice", "current", "identity"):
        return set()
    return set().union(*map(_plain_paths, children)) if children else set()


def _check_literals_as_names(text: str, ast: dict) -> None:
    for node in _nodes(ast):
        if node["type"] == "field" and node["value"] in ("null", "true", "false"):
            word = node["value"]
            raise ExprError(f"'{word}' would read a column named {word}; the value {word} is "
                            f"written in backticks: `{word}`", _name_column(text, word), text)


def _check_functions(text: str, ast: dict, code_tables: Mapping[str, Any]) -> None:
    for node in _nodes(ast):
        if node["type"] != "function_expression":
            continue
        name, args = node["value"], node["children"]
        where = _call_column(text, name)
        if name in FUNCTIONS:
            low, high = FUNCTIONS[name].arity
        elif name in BUILTIN_NAMES:
            low, high = _builtin_arity(name)
        else:
            hint = _did_you_mean(name, sorted(FUNCTIONS) + sorted(BUILTIN_NAMES), call=True)
            raise ExprError(f"unknown function '{name}()'.{hint or ' See docs/functions.md.'}", where, text)
        if len(args) < low or (high is not None and len(args) > high):
            raise ExprError(f"{name}() takes {_arity_text(low, high)}, got {len(args)}", where, text)
        if name == "map_values":
            _check_table(text, args[1], code_tables, where)
        if name == "truncate":
            length = args[1]
            if not (length["type"] == "literal" and type(length["value"]) is int and length["value"] >= 0):
                raise ExprError("truncate(): the length must be a whole number literal such as `70`",
                                where, text)


def _check_table(text: str, arg: dict, code_tables: Mapping[str, Any], where: int | None) -> None:
    value = arg.get("value")
    if arg["type"] == "literal" and isinstance(value, dict):
        return
    if arg["type"] != "literal" or not isinstance(value, str):
        raise ExprError("map_values(): the table must be a code table's name in quotes, such as "
                        "'unit_types', or an object literal", where, text)
    if value not in code_tables:
        known = ", ".join(sorted(code_tables)) or "none"
        hint = _did_you_mean(value, sorted(code_tables))
        column = text.find(value, where or 0)
        raise ExprError(f"map_values(): unknown code table '{value}'.{hint} Valid values are: {known}",
                        column if column >= 0 else where, text)


def _builtin_arity(name: str) -> tuple[int, int | None]:
    signature = make_functions().FUNCTION_TABLE[name]["signature"]
    if signature and signature[-1].get("variadic"):
        return len(signature), None
    return len(signature), len(signature)


def _arity_text(low: int, high: int | None) -> str:
    plural = lambda n: f"{n} argument" + ("" if n == 1 else "s")  # noqa: E731
    if high is None:
        return f"at least {plural(low)}"
    if low == high:
        return plural(low)
    return f"{low} to {plural(high)}"


def _did_you_mean(name: str, candidates: Sequence[str], call: bool = False) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not matches:
        folded = [c for c in candidates if c.casefold() == name.casefold()]
        matches = folded[:1]
    if not matches:
        return ""
    return f" Did you mean '{matches[0]}{'()' if call else ''}'?"


def _call_column(text: str, name: str) -> int | None:
    try:
        tokens = list(Lexer().tokenize(text))
    except jp_exceptions.LexerError:
        return None
    for token, following in zip(tokens, tokens[1:]):
        if token["value"] == name and following["type"] == "lparen":
            return token["start"]
    return None


def _name_column(text: str, name: str) -> int | None:
    try:
        for token in Lexer().tokenize(text):
            if token["type"] in ("unquoted_identifier", "quoted_identifier") and token["value"] == name:
                return token["start"]
    except jp_exceptions.LexerError:
        pass
    return None


def _memoised_by_column(ast: dict) -> bool:
    """Whether the expression is one call of a function whose column version reads each
    distinct value once itself (engine.expr._columns.SELF_MEMO) on a column: map_memo would
    only add its own pass."""
    children = ast.get("children") or ()
    return ast["type"] == "function_expression" and ast["value"] in SELF_MEMO and len(children) == 1 \
        and children[0]["type"] == "field"
