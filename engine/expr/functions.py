"""The engine's registered functions: one registry, two ways to call them.

`FUNCTIONS` lists every function with its arity, documentation and examples; docs/functions.md
is generated from it (`python -m engine.expr.docs`) and a test evaluates every example. The
compiled expressions call the Python implementations directly; `jmespath_options` gives the same
functions to jmespath's own interpreter (the reference semantics, and the fallback).

Conventions: a null argument gives null (map_values: the table's default). Text functions accept
numbers, decimals and dates from the database and read them as text ('4711', '2024-01-31').
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import Decimal
from typing import Any, Callable, Mapping

from jmespath import functions as jp_functions
from jmespath.visitor import Options

from engine.expr.emails import analyze_email
from engine.expr.phones import DEFAULT_REGION, normalize_phone as _normalize_phone


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]
    arity: tuple[int, int | None]          # (min, max); max None: any number
    doc: str
    examples: tuple[tuple[tuple, Any], ...] = field(default=())   # (args, expected result)


def as_text(value: Any) -> str | None:
    """A database value read as text: None stays None, lists and objects give None."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is Decimal:
        return format(value, "f")
    if kind is dt.datetime or kind is dt.date:
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def trim(value: Any) -> str | None:
    text = as_text(value)
    return None if text is None else text.strip()


def lower(value: Any) -> str | None:
    text = as_text(value)
    return None if text is None else text.lower()


def upper(value: Any) -> str | None:
    text = as_text(value)
    return None if text is None else text.upper()


def to_text(value: Any) -> str | None:
    return as_text(value)


def normalize_email(value: Any) -> str | None:
    text = as_text(value)
    return None if text is None else analyze_email(text).login


def split_emails(value: Any) -> list[str] | None:
    text = as_text(value)
    return None if text is None else list(analyze_email(text).addresses)


def normalize_phone(value: Any, region: Any = DEFAULT_REGION) -> str | None:
    text = as_text(value)
    if text is None:
        return None
    return _normalize_phone(text, region if isinstance(region, str) and region else DEFAULT_REGION)


def coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None and not (type(value) is str and not value.strip()):
            return value
    return None


def concat(*values: Any) -> str | None:
    parts = [text for text in map(as_text, values) if text is not None]
    return "".join(parts) if parts else None


_GERMAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T].*)?")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")


def to_date(value: Any) -> str | None:
    if type(value) is str:
        return _date_from_text(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _date_from_text(str(value))          # 20240131 in a number column
    return str(value)                               # not a date: the record check refuses it, naming it


NO_DATE = frozenset({"unbefristet", "unbegrenzt", "offen", "keine", "kein", "k.a.", "-", "--", "n/a", "null",
                     "none", "0", "00.00.0000", "0000-00-00", "00000000"})
"""Texts that mean 'no date' (an open end, a zero date): null, like blank text."""


DISTINCT_DATES = 1 << 17
"""The distinct date texts a run's caches of dates keep. A large ERP's contracts hold tens of
thousands of distinct days (31,000 starts and ends at size L): a cache that keeps fewer, read
slice after slice in the same order, misses on nearly every lookup (16,384 did)."""


@lru_cache(maxsize=DISTINCT_DATES)
def is_iso_date(text) -> bool:
    """Whether `text` is a text holding an ISO date (2024-01-31), which to_date gives back
    unchanged; False for any other value."""
    if type(text) is not str or len(text) != 10:
        return False
    try:
        return dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


@lru_cache(maxsize=DISTINCT_DATES)
def _date_from_text(value: str) -> str | None:
    text = value.strip()
    if not text or text.casefold() in NO_DATE:
        return None
    if match := _GERMAN_DATE.fullmatch(text):
        day, month, year = match.groups()
    elif match := (_ISO_DATE.fullmatch(text) or _COMPACT_DATE.fullmatch(text)):
        year, month, day = match.groups()
    else:
        return text                 # a text that is no date stays: see to_date's doc
    try:
        return dt.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        return text


def truncate(value: Any, length: int) -> str | None:
    text = as_text(value)
    if text is None or len(text) <= length:
        return text
    return text[:length].rstrip()


def table_key(value: Any) -> str | None:
    """How map_values compares keys: as trimmed, lower-cased text (1, 1.0, '1 ' and '1' agree)."""
    kind = type(value)
    if kind is float and value.is_integer():
        value = int(value)
    elif kind is Decimal and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    text = as_text(value)
    return None if text is None else text.strip().lower()


@dataclass(frozen=True)
class Lookup:
    """A code table prepared for map_values: normalised keys, and the default."""
    values: Mapping[str, Any]
    default: Any = None

    @classmethod
    def of(cls, values: Mapping[Any, Any], default: Any = None) -> "Lookup":
        return cls({table_key(k): v for k, v in values.items()}, default)


def map_values(value: Any, table: Lookup | Mapping[str, Any]) -> Any:
    if type(table) is not Lookup:
        table = Lookup.of(table)
    key = table_key(value)
    if key is None:
        return table.default
    return table.values.get(key, table.default)


_MISSING = object()


def map_values_noting(value: Any, table: Lookup, note: Callable[[Any], None]) -> Any:
    """map_values that calls note(value) for a code the table does not hold: the engine then
    reports the code (engine.unknown_codes). Null and blank text are no unknown codes: that
    the table's default stands for them is intended."""
    key = table_key(value)
    if key is None:
        return table.default
    found = table.values.get(key, _MISSING)
    if found is _MISSING:
        if key:
            note(value)
        return table.default
    return found


_TYPE_CODES = {"1": "apartment", "3": "parking"}

FUNCTIONS: dict[str, Function] = {f.name: f for f in [
    Function("trim", trim, (1, 1), "Removes leading and trailing whitespace (also non-breaking spaces).",
             ((("  Müller  ",), "Müller"), ((None,), None), ((4711,), "4711"))),
    Function("lower", lower, (1, 1), "Lower-cases text.",
             ((("Max@Web.DE",), "max@web.de"), ((None,), None))),
    Function("upper", upper, (1, 1), "Upper-cases text.", ((("de",), "DE"), ((None,), None))),
    Function("to_text", to_text, (1, 1),
             "A database value as plain text: numbers and decimals as digits, dates as ISO; null "
             "stays null. Use it instead of jmespath's to_string, which gives \"null\" for null "
             "and a quoted '\"4711\"' for a decimal or a date.",
             (((4711,), "4711"), ((Decimal("4711"),), "4711"), ((dt.date(2024, 1, 31),), "2024-01-31"),
              ((None,), None))),
    Function("normalize_email", normalize_email, (1, 1),
             "The login of an e-mail field: its first valid address, trimmed, lower-cased, "
             "annotations removed; null when the field holds no valid address.",
             (((" Max@Web.de ",), "max@web.de"), (("max@web.de (Büro)",), "max@web.de"),
              (("Büro: max@web.de; erika@web.de",), "max@web.de"), (("max@@web",), None),
              (("keine",), None), ((None,), None))),
    Function("split_emails", split_emails, (1, 1),
             "Every valid address of an e-mail field, normalised, in order, without repeats "
             "(separators: ';', ',' and whitespace); null for null.",
             ((("max@web.de; Erika@Web.de, max@web.de",), ["max@web.de", "erika@web.de"]),
              (("max@@web",), []), ((None,), None))),
    Function("normalize_phone", normalize_phone, (1, 2),
             "A phone number in E.164 form (+49...), read in the region of the optional second "
             "argument (default 'DE'); null when empty, a placeholder ('keine', '-') or unparseable.",
             ((("0049(0)171 1234567",), "+491711234567"), (("(030) 123 45-6",), "+4930123456"),
              (("0176/1234567 (mobil)",), "+491761234567"), (("0664 1234567", "AT"), "+436641234567"),
              (("keine",), None), ((None,), None))),
    Function("coalesce", coalesce, (1, None),
             "The first argument that is neither null nor blank text; null when there is none. "
             "(jmespath's not_null skips only null.)",
             (((None, "  ", "DE"), "DE"), (("AT", "DE"), "AT"), ((None, None), None))),
    Function("concat", concat, (1, None),
             "Joins its arguments as text; null arguments are skipped, so the result is null only "
             "when every argument is null. Numbers and dates are read as text.",
             ((("4711", "-", 12), "4711-12"), (("Hans", None, "Müller"), "HansMüller"),
              ((None, None), None))),
    Function("to_date", to_date, (1, 1),
             "An ISO date (yyyy-mm-dd) from a date, a datetime, a whole number yyyymmdd, or text in "
             "the form dd.mm.yyyy, yyyy-mm-dd (a time after it is ignored) or yyyymmdd; null for null, "
             "blank text and the texts that mean no date (unbefristet, offen, keine, -, 00.00.0000, "
             "0000-00-00, ...). Anything else (31/03/2019, two-digit years, impossible dates, 'unbekannt') "
             "stays as it is, trimmed, so that the import API's record check refuses the record and "
             "names the value: a date the ERP holds but nobody can read must never become an open end "
             "(a record the portal has from an earlier run is then kept as last sent).",
             ((("31.01.2024",), "2024-01-31"), (("1.2.2024",), "2024-02-01"),
              (("2024-01-31 00:00:00",), "2024-01-31"), ((dt.datetime(2024, 1, 31, 12, 0),), "2024-01-31"),
              ((20240131,), "2024-01-31"), (("31.02.2024",), "31.02.2024"), ((" 31/03/2019 ",), "31/03/2019"),
              (("unbefristet",), None), (("  ",), None), ((None,), None))),
    Function("map_values", map_values, (2, 2),
             "Translates a code through a table: the name of one of the mapping's code tables in "
             "quotes, or an object literal. Keys are compared as trimmed, lower-cased text; a code "
             "that is not in the table, and null, give the table's default (an object literal's "
             "default is null). A run reports each code that a named code table does not hold "
             "(finding code_not_in_table: the field, the code, the value it became, how many "
             "records carry it); null and blank text are not reported, the default is meant for them.",
             (((1, _TYPE_CODES), "apartment"), ((" 3 ", _TYPE_CODES), "parking"),
              ((9, _TYPE_CODES), None), (("E", {"E": "owner", "M": "tenant"}), "owner"))),
    Function("truncate", truncate, (2, 2),
             "Cuts text to at most n characters (n a whole number literal such as `70`); "
             "whitespace left at the cut is removed; null stays null.",
             ((("Hans-Joachim Müller-Lüdenscheidt", 12), "Hans-Joachim"), (("Max", 70), "Max"),
              ((None, 5), None))),
]}


def _jmespath_method(function: Function) -> Callable[..., Any]:
    impl = function.impl

    def call(self, *args):
        return impl(*args)

    low, high = function.arity
    call.signature = tuple({"types": []} for _ in range(max(low, 1)))
    if high != low:
        call.signature[-1]["variadic"] = True
    return call


def _map_values_method(self, value, table):
    if isinstance(table, str):
        table = self.lookups[table]
    return map_values(value, table)


_map_values_method.signature = ({"types": []}, {"types": []})

ExprFunctions = type("ExprFunctions", (jp_functions.Functions,), {
    **{f"_func_{name}": _jmespath_method(f) for name, f in FUNCTIONS.items()},
    "_func_map_values": _map_values_method,
    "__doc__": "jmespath's built-in functions plus the engine's FUNCTIONS (for its interpreter).",
})


def lookups_of(code_tables: Mapping[str, Any]) -> dict[str, Lookup]:
    """Code tables (engine.config.model.CodeTable) prepared for map_values, by name."""
    return {name: Lookup.of(t.values, t.default) for name, t in code_tables.items()}


def make_functions(code_tables: Mapping[str, Any] = {}) -> jp_functions.Functions:
    functions = ExprFunctions()
    functions.lookups = lookups_of(code_tables)
    return functions


def jmespath_options(code_tables: Mapping[str, Any] = {}) -> Options:
    """Options for jmespath.search with the engine's functions: the reference semantics."""
    return Options(custom_functions=make_functions(code_tables))


BUILTIN_NAMES = frozenset(jp_functions.Functions.FUNCTION_TABLE)
