"""The import API's per-record rules, compiled from the spec into small, fast checks.

`check_record(entity, record)` answers what the portal would answer with 400 `invalid`: one
`Violation` per offending field. The checks are derived from `engine.contract.record_schema` when
this module is imported (required, additionalProperties, type, enum, minLength, maxLength,
pattern, minimum/maximum, format date and email); a keyword the compiler does not know stops the
import, so the spec cannot grow a rule that is silently ignored.

Speed: this runs on every record of a night run (over a million on a large tenant). Each field is
compiled into a set of "free" types (a value of such a type needs no further check, e.g. None for
a nullable field) and one closure for the rest, so the common record costs a dict lookup and a
type test per field, not a run of a general JSON Schema validator.

Where python-jsonschema is laxer than the standard, the rules follow the standard:
  * `pattern` is an ECMA 262 regex, whose `$` matches only at the very end (Python's `$` also
    matches before a trailing newline), so a trailing `$` is compiled as `\\Z`;
  * `format: email` wants `local@domain.tld` without whitespace inside (python-jsonschema only
    looks for an '@'); surrounding whitespace is tolerated, as the spec compares logins trimmed;
  * a number is finite: JSON has no NaN or Infinity (python-jsonschema takes float('nan') for a
    number), so such a value cannot reach the portal at all.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_, itemgetter, not_
from typing import Any, Callable, Collection, Mapping, Sequence

from engine._table import ValueTable
from engine.contract import RESOURCES, record_schema


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    code: str       # required | unknown_field | type | enum | min_length | max_length | pattern | minimum | maximum | format
    message: str


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,),
    "null": (type(None),), "object": (dict,), "array": (list,),
}
_ANNOTATIONS = {"description", "default", "title", "examples"}
_KNOWN = _ANNOTATIONS | {"type", "enum", "minLength", "maxLength", "pattern", "minimum", "maximum", "format"}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def _is_type(value: Any, name: str) -> bool:
    if name in ("number", "integer", "boolean") and isinstance(value, bool):
        return name == "boolean"
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES[name])


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema's `enum` means it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return type(a) is type(b) and a == b or (_is_type(a, "number") and _is_type(b, "number") and a == b)


def _valid_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


_valid_dates = ValueTable(_valid_date)
"""_valid_date over a list of texts: dates repeat across chunks, each is checked once."""


def _valid_emails(values: list[str]) -> list[Any]:
    return list(map(_EMAIL.fullmatch, map(str.strip, values)))


# format -> (check of one text, the same over a list of texts (truthy: valid), what it wants)
_FORMATS: dict[str, tuple[Callable[[str], bool], Callable[[list[str]], list], str]] = {
    "date": (_valid_date, _valid_dates, "a date as YYYY-MM-DD"),
    # the spec compares logins "after trimming", so surrounding whitespace is tolerated
    "email": (lambda v: _EMAIL.fullmatch(v.strip()) is not None, _valid_emails, "an e-mail address (local@domain)"),
}


def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class _Field:
    free: frozenset[type]                         # exact types that pass without further checks
    check: Callable[[Any], Violation | None]
    suspects: Callable[..., list[int]]            # (values, their types or None) -> positions check() may reject


def _compile_field(entity: str, name: str, schema: dict[str, Any]) -> _Field:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise NotImplementedError(
            f"import API spec, {entity}.{name}: keyword(s) {sorted(unknown)} have no compiled rule; "
            "add them to engine/contract/rules.py")
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or ())
    enum = schema.get("enum")
    enum_hashable = frozenset(e for e in enum if isinstance(e, str)) if enum is not None else None
    min_len, max_len = schema.get("minLength"), schema.get("maxLength")
    pattern = _ecma_pattern(schema["pattern"]) if "pattern" in schema else None
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    fmt = schema.get("format")
    if fmt is not None and fmt not in _FORMATS:
        raise NotImplementedError(f"import API spec, {entity}.{name}: format {fmt!r} has no compiled rule")
    fmt_check, fmt_column, fmt_text = _FORMATS[fmt] if fmt else (None, None, "")
    string_rules = any(x is not None for x in (min_len, max_len, pattern, fmt_check))
    number_rules = minimum is not None or maximum is not None

    free: set[type] = set()                       # exact types: bool is never taken for int
    if enum is None:
        for t in types:
            if not ((t == "string" and string_rules) or (t in ("number", "integer") and number_rules)):
                free.update(_JSON_TYPES[t])
    elif None in enum and (not types or "null" in types):
        free.add(type(None))
    free.discard(float)                           # a float may be NaN or infinite: never free

    def bad(code: str, message: str) -> Violation:
        return Violation(name, code, f"{name!r} {message}")

    exact = frozenset(t for name_ in types for t in _JSON_TYPES[name_])
    allowed = " or ".join(types)

    def check(value: Any) -> Violation | None:
        tv = type(value)
        if types and tv not in exact and not any(_is_type(value, t) for t in types):
            return bad("type", f"must be {allowed}, got {_describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            return bad("type", f"must be a finite number (JSON has no NaN or Infinity), got {value!r}")
        if enum is not None:
            if not ((tv is str and value in enum_hashable)
                    or (tv is not str and any(_json_equal(value, e) for e in enum))):
                shown = ", ".join("null" if e is None else str(e) for e in enum)
                return bad("enum", f"must be one of: {shown}; got {value!r}")
        if tv is str or isinstance(value, str):
            if string_rules:
                if min_len is not None and len(value) < min_len:
                    return bad("min_length", f"must have at least {min_len} character(s), got {len(value)}")
                if max_len is not None and len(value) > max_len:
                    return bad("max_length", f"must have at most {max_len} characters, got {len(value)}")
                if pattern is not None and pattern.search(value) is None:
                    return bad("pattern", f"must match {schema['pattern']}, got {value!r}")
                if fmt_check is not None and not fmt_check(value):
                    return bad("format", f"must be {fmt_text}, got {value!r}")
        elif number_rules and _is_type(value, "number"):
            if minimum is not None and value < minimum:
                return bad("minimum", f"must be at least {minimum}, got {value!r}")
            if maximum is not None and value > maximum:
                return bad("maximum", f"must be at most {maximum}, got {value!r}")
        return None

    free_types = frozenset(free)
    numeric = frozenset(t for t, ok in ((int, not types or "number" in types or "integer" in types),
                                        (float, not types or "number" in types)) if ok)

    def suspects(values: Sequence[Any], seen: set[type] | None = None, settled: Collection[str] = ()) -> list[int]:
        """Positions of values check() may reject; `settled`: codes that cannot occur (the caller
        has enforced those rules), e.g. max_length after truncating."""
        seen = set(map(type, values)) if seen is None else seen
        if seen <= free_types:
            return []
        other = seen - free_types
        if other == {str} and (not types or str in exact):
            rules = {"enum": enum is not None, "min_length": min_len is not None, "max_length": max_len is not None,
                     "pattern": pattern is not None, "format": fmt_column is not None}
            left = {code for code, present in rules.items() if present and code not in settled}
            if not left:
                return []
            at, texts = _of_types(values, other, seen)
            return [at[k] for k in _text_suspects(texts, left)]
        if other <= numeric and enum is None:
            at, numbers = _of_types(values, other, seen)
            return [at[k] for k in _number_suspects(numbers)]
        return [i for i, v in enumerate(values) if type(v) not in free_types]

    def _text_suspects(texts: list[str], left: set[str]) -> list[int]:
        bad: set[int] = set()
        if "enum" in left and not set(texts) <= enum_hashable:
            bad.update(k for k, v in enumerate(texts) if v not in enum_hashable)
        low = min_len if "min_length" in left else None
        high = max_len if "max_length" in left else None
        if low is not None or high is not None:
            lengths = list(map(len, texts))
            if (low is not None and min(lengths) < low) or (high is not None and max(lengths) > high):
                bad.update(k for k, n in enumerate(lengths) if (low is not None and n < low)
                           or (high is not None and n > high))
        for valid in ((list(map(pattern.search, texts)) if "pattern" in left else None),
                      (fmt_column(texts) if "format" in left else None)):
            if valid is not None and not all(valid):
                bad.update(compress(range(len(texts)), map(not_, valid)))
        return sorted(bad)

    def _number_suspects(numbers: list[Any]) -> list[int]:
        floats = [v for v in numbers if type(v) is float]
        if floats and not math.isfinite(sum(floats)):          # a NaN or an infinity among them (or a large sum)
            odd = {k for k, v in enumerate(numbers) if type(v) is float and not math.isfinite(v)}
            if odd:
                rest = [0 if k in odd else v for k, v in enumerate(numbers)]
                return sorted(odd | set(_number_suspects(rest)))
        low = minimum is not None and not min(numbers) >= minimum
        high = maximum is not None and not max(numbers) <= maximum
        if not (low or high):
            return []
        return [k for k, v in enumerate(numbers) if (minimum is not None and not v >= minimum)
                or (maximum is not None and not v <= maximum)]

    return _Field(free_types, check, suspects)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return f"{type(value).__name__} {value!r}"[:80]


@dataclass(frozen=True, slots=True)
class _Entity:
    fields: dict[str, _Field]
    required: tuple[str, ...]
    required_set: frozenset[str]
    closed: bool                                  # additionalProperties: false


def _compile(entity: str) -> _Entity:
    schema = record_schema(entity)
    extra = set(schema) - _ANNOTATIONS - {"type", "properties", "required", "additionalProperties"}
    if extra or schema.get("type") != "object":
        raise NotImplementedError(f"import API spec, {entity}: record keywords {sorted(extra)} have no compiled rule")
    fields = {name: _compile_field(entity, name, sub) for name, sub in schema["properties"].items()}
    required = tuple(schema.get("required", ()))
    return _Entity(fields, required, frozenset(required), schema.get("additionalProperties", True) is False)


_COMPILED: dict[str, _Entity] = {entity: _compile(entity) for entity in RESOURCES}


def check_record(entity: str, record: Any) -> list[Violation]:
    """The import API's verdict on one record: [] if it would be accepted, else one Violation per field."""
    compiled = _COMPILED.get(entity)
    if compiled is None:
        raise ValueError(f"unknown resource {entity!r}. Valid values are: {', '.join(RESOURCES)}")
    if not isinstance(record, dict):
        return [Violation("", "type", f"a {entity} record must be an object, got {_describe(record)}")]
    out: list[Violation] = []
    fields = compiled.fields
    for name, value in record.items():
        f = fields.get(name)
        if f is None:
            if compiled.closed:
                out.append(Violation(str(name), "unknown_field", f"{name!r} is not a field of {entity}"))
        elif type(value) not in f.free:
            v = f.check(value)
            if v is not None:
                out.append(v)
    if not record.keys() >= compiled.required_set:
        out.extend(Violation(r, "required", f"{r!r} is required for {entity}")
                   for r in compiled.required if r not in record)
    return out


def suspects(entity: str, records: Sequence[dict[str, Any]], columns: Mapping[str, Sequence[Any]] = {},
             types: Mapping[str, set[type]] = {}, settled: Mapping[str, Collection[str]] = {}) -> list[int]:
    """Positions of the records for which check_record may find something: a superset, found
    field by field over the whole list (type sets, lengths, patterns and formats in C-level
    passes), so that check_record runs only on the few records that need it. `columns`: the
    records' values of some fields, already at hand (each record has those fields); `types`:
    the set of their values' types, where known; `settled`: per field, the violation codes
    that cannot occur because the caller has enforced those rules (e.g. max_length)."""
    compiled = _COMPILED[entity]
    names = tuple(compiled.fields)
    if not records:
        return []
    if set(map(len, records)) != {len(names)} or not compiled.required_set <= set(names):
        return list(range(len(records)))        # not exactly the spec's fields: check each record
    found: set[int] = set()
    for name, f in compiled.fields.items():
        values = columns.get(name)
        if values is None:
            try:
                values = list(map(itemgetter(name), records))
            except (KeyError, TypeError):
                return list(range(len(records)))
        found.update(f.suspects(values, types.get(name), settled.get(name, ())))
    return sorted(found)


def _of_types(values: Sequence[Any], wanted: set[type], seen: set[type]) -> tuple[Sequence[int], list[Any]]:
    """(positions, values) of the values of the wanted types."""
    if seen == wanted:
        return range(len(values)), list(values)
    if len(wanted) == 1:
        (kind,) = wanted
        at = list(compress(range(len(values)), map(is_, map(type, values), repeat(kind))))
    else:
        at = [i for i, v in enumerate(values) if type(v) in wanted]
    return at, [values[i] for i in at]
