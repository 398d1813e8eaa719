"""The JSON Schemas (shipped in the package as `engine.schema`) and their errors as problems.

jsonschema's own messages print the offending value (which may be a secret) and speak of
"additionalProperties"; here every error becomes one plain sentence with a did-you-mean where
one applies, at the position of the key or value it is about.
"""
from __future__ import annotations

import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource

from engine.config._text import did_you_mean, key_text, quoted_list

BASE = "https://idwell-sync.invalid/schema/"
SCHEMA_FILES = {"tenant": "tenant.schema.json", "mapping": "mapping.schema.json"}



class Raw(NamedTuple):
    """One schema problem: the path (keys and indexes) and the message."""
    path: tuple[Any, ...]
    message: str
    missing: str | None = None    # "missing field X" problems: X
    suggests: str | None = None   # "unknown field ... Did you mean X?" problems: X
    in_flow: str | None = None    # the message for a value inside { } or [ ], where YAML needs quotes


_PATTERN_HINTS = {
    "^[a-z0-9][a-z0-9_-]*$": "lower-case letters, digits, '-' and '_', starting with a letter or digit",
    "^[a-z][a-z0-9_]*$": "lower-case letters, digits and '_', starting with a letter",
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}$": "a date written YYYY-MM-DD",
    "^([01][0-9]|2[0-3]):[0-5][0-9]$": "a time written HH:MM",
    "^https?://": "a URL starting with https:// or http://",
    "^-?[a-z][a-z0-9_]*$": "a field name, optionally with a '-' prefix for descending order",
    "^[0-9]+\\.[0-9]+$": "a version such as 7.4",
}
SECRET_PATTERN = "^\\$\\{(env|file):[^}]+\\}$"
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "object": "a mapping (key: value lines)", "array": "a list", "null": "null"}


@cache
def schema(kind: str) -> dict[str, Any]:
    """The schema of 'tenant' or 'mapping' files, read from the installed package (or, when
    the engine runs from a source checkout, e.g. `python -m benchmarks.run`, from its schema/)."""
    try:
        folder = resources.files("engine.schema")
    except ModuleNotFoundError:           # engine.schema is schema/ only once installed (pyproject)
        folder = Path(__file__).resolve().parents[2] / "schema"
    text = folder.joinpath(SCHEMA_FILES[kind]).read_text(encoding="utf-8")
    return json.loads(text)


_Validator = validators.extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))
"""JSON Schema counts 50.0 and 5e1 as integers; the engine would use them as floats (a batch size of
1000.0 fails the run's first query), so an integer field takes only a number written as one."""


@cache
def _validator(kind: str) -> Draft202012Validator:
    registry = Registry().with_resources(
        (BASE + name, Resource.from_contents({**schema(k), "$id": BASE + name}))
        for k, name in SCHEMA_FILES.items())
    return _Validator({**schema(kind), "$id": BASE + SCHEMA_FILES[kind]}, registry=registry)


def validate(kind: str, data: Any) -> list[Raw]:
    """Every schema error of `data`, in no particular order. A missing field that an unknown
    field's did-you-mean already names is left out: `pasword` says "Did you mean 'password'?",
    so "missing field 'password'" would only repeat it."""
    out: list[Raw] = []
    for error in _validator(kind).iter_errors(data):
        out.extend(Raw(*raw) if not isinstance(raw, Raw) else raw for raw in _explain(error))
    out.extend(_not_a_number(data, ()))
    suggested = {(raw.path[:-1], raw.suggests) for raw in out if raw.suggests}
    return [raw for raw in out if not (raw.missing and (raw.path, raw.missing) in suggested)]


def _not_a_number(value: Any, path: tuple) -> Iterator[Raw]:
    """YAML's `.nan`: JSON Schema lets it through every bound (no comparison with it is true), and
    `max_share: .nan` would switch the deletion guard off without a word."""
    if isinstance(value, float) and math.isnan(value):
        yield Raw(path, "'.nan' is not a number: write a number")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _not_a_number(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _not_a_number(item, path + (index,))


def _explain(error: ValidationError) -> Iterator[Raw]:
    path = tuple(error.absolute_path)
    handler = _HANDLERS.get(error.validator)
    if handler is None:
        yield path, "is not valid here; see the schema's description of this field"
        return
    yield from handler(error, path)


def _additional(error: ValidationError, path: tuple) -> Iterator[Raw]:
    known = list(error.schema.get("properties", {}))
    others = _other_types(error.schema)
    for key in error.instance:
        if key in known:
            continue
        types = [kind for kind, properties in others.items() if key in properties]
        if types and path and isinstance(error.instance.get("type"), str):
            where = ".".join(map(str, path))
            text = (f"'{key_text(key)}' is only for a {where} of type {' or '.join(types)}; "
                    f"this {where} has type {error.instance['type']}")
            hint = did_you_mean(key_text(key), known)       # page_size on an SQL source: batch_size
            yield Raw(path + (key,), f"{text}. {hint}", suggests=hint.split("'")[1]) if hint else (path + (key,), text)
            continue
        hint = did_you_mean(key_text(key), known)
        if hint:
            yield Raw(path + (key,), f"unknown field '{key_text(key)}'. {hint}", suggests=hint.split("'")[1])
        else:
            yield path + (key,), f"unknown field '{key_text(key)}'. Valid fields are: {quoted_list(known)}"


def _other_types(branch: dict) -> dict[str, dict]:
    """For one branch of a `type` (a source of type sql: $defs/sql_source), the properties of the
    other branches of the same `allOf` (type api: $defs/api_source's), by their type: a key of
    another type is named as such, not as unknown (`max_retries` on an SQL source)."""
    for kind in SCHEMA_FILES:
        for group in _type_branches(kind):
            if any(b is branch or b == branch for b in group.values()):
                return {t: b.get("properties", {}) for t, b in group.items() if not (b is branch or b == branch)}
    return {}


@cache
def _type_branches(kind: str) -> list[dict[str, dict]]:
    """Every `allOf` of `if type is X then $defs/...` in the schema of `kind`: type -> branch."""
    root, groups = schema(kind), []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            group = {}
            for rule in node.get("allOf", []) if isinstance(node.get("allOf"), list) else []:
                const = rule.get("if", {}).get("properties", {}).get("type", {}).get("const")
                ref = rule.get("then", {}).get("$ref", "")
                if isinstance(const, str) and ref.startswith("#/$defs/"):
                    group[const] = root["$defs"][ref[len("#/$defs/"):]]
            if len(group) > 1:
                groups.append(group)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(root)
    return groups


def _required(error: ValidationError, path: tuple) -> Iterator[Raw]:
    for name in error.validator_value:
        if isinstance(error.instance, dict) and name not in error.instance:
            yield Raw(path, f"missing required field '{name}'", missing=name)


def _dependent(error: ValidationError, path: tuple) -> Iterator[Raw]:
    for key, needed in error.validator_value.items():
        if key in error.instance:
            for name in needed:
                if name not in error.instance:
                    yield Raw(path, f"missing field '{name}' (required with '{key}')", missing=name)


def _type(error: ValidationError, path: tuple) -> Iterator[Raw]:
    referable = error.schema.get("pattern") == SECRET_PATTERN or (path and path[-1] in ("url", "state_url"))
    if referable and (reference := braced_reference(error.instance)):
        yield Raw(path, _braced_message(reference, quoted=False), in_flow=_braced_message(reference, quoted=True))
        return
    if error.schema.get("pattern") == SECRET_PATTERN:
        yield path, secret_message(error.instance)
        return
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    names = " or ".join(_TYPE_NAMES[t] for t in wanted)
    hint = ""
    if "boolean" in wanted and isinstance(error.instance, str) and error.instance.lower() in _YAML11_BOOLEANS:
        hint = f": write {'true' if error.instance.lower() in _YAML11_TRUE else 'false'} (these files are " \
               f"YAML 1.2, where {error.instance!r} is text)"
    elif wanted == ["integer"] and isinstance(error.instance, float) and error.instance.is_integer():
        hint = f": write {int(error.instance)}, without a decimal point or exponent"
    elif _is_share(error.schema):
        percent = re.fullmatch(r"\s*([0-9]+(?:[.,][0-9]+)?)\s*%\s*", error.instance) \
            if isinstance(error.instance, str) else None
        hint = (_as_share(float(percent.group(1).replace(",", ".")), ": ") if percent else "") or \
            ": a share between 0 and 1 (e.g. 0.1 for 10%)"
    yield path, f"expected {names}, got {_describe(error.instance)}{hint}"


_YAML11_TRUE = frozenset({"yes", "y", "on"})
_YAML11_BOOLEANS = _YAML11_TRUE | {"no", "n", "off"}
"""What YAML 1.1 (and many an editor's habit) reads as a boolean; YAML 1.2 reads it as text."""


def _enum(error: ValidationError, path: tuple) -> Iterator[Raw]:
    options = [v for v in error.validator_value]
    shown = ", ".join(json.dumps(v) if not isinstance(v, str) else f"'{v}'" for v in options)
    value = error.instance
    text = f"'{value}' is not a valid value" if isinstance(value, (str, int, float)) else f"{_describe(value)} is not a valid value"
    hint = did_you_mean(str(value), [str(v) for v in options]) if isinstance(value, str) else ""
    yield path, f"{text}. Valid values are: {shown}" + (f". {hint}" if hint else "")


def _const(error: ValidationError, path: tuple) -> Iterator[Raw]:
    yield path, f"must be '{error.validator_value}'"


def _pattern(error: ValidationError, path: tuple) -> Iterator[Raw]:
    if error.validator_value == SECRET_PATTERN:
        yield path, secret_message(error.instance)
        return
    hint = _PATTERN_HINTS.get(error.validator_value, f"text matching {error.validator_value}")
    if error.validator_value == "^https?://":  # a URL may carry a password: never repeat it
        yield path, f"is not valid: expected {hint}"
    else:
        yield path, f"'{error.instance}' is not valid: expected {hint}"


_SHELL_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CASED_REFERENCE = re.compile(r"\$\{(env|file):([^}]+)\}", re.IGNORECASE)


_BRACED = re.compile(r"(env|file):(.+)", re.IGNORECASE | re.DOTALL)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def braced_reference(value: Any) -> str | None:
    """The reference meant by one written without its '$', `{env:NAME}` or `{env: NAME}`, which
    YAML reads as a mapping ({'env:NAME': None}, {'env': 'NAME'}): `${env:NAME}`. None for any
    other value, and for a mapping whose text is no variable name or file path (`{Sommer2024}`):
    it may be a secret, and is never repeated."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    [(key, item)] = value.items()
    if not isinstance(key, str) or not (item is None or isinstance(item, str)):
        return None
    m = _BRACED.fullmatch(key.strip() if item is None else f"{key.strip()}:{item.strip()}")
    if m is None:
        return None
    kind, target = m.group(1).lower(), m.group(2).strip()
    if (kind == "env" and not _ENV_NAME.fullmatch(target)) or "}" in target or "\n" in target:
        return None
    return f"${{{kind}:{target}}}"


def _braced_message(reference: str, *, quoted: bool) -> str:
    """`{env:NAME}` written without its '$': the reference to write, in quotes where YAML needs
    them (inside braces or brackets, or with ' #' or ': ' in a file's path)."""
    if quoted or " #" in reference or ": " in reference:
        reference = f'"{reference}"' if '"' not in reference and "\\" not in reference \
            else "'" + reference.replace("'", "''") + "'"
    return f"a YAML mapping, not a reference: braces without the '$' before them make a mapping; write {reference}"


def secret_message(value: Any) -> str:
    """Why a secret field's value is refused. Never repeats the value; a reference written as a shell
    or another tool writes it (`${NAME}`, `${ENV:NAME}`) is shown as it must be written, since its
    text is a variable's name, not a secret."""
    if isinstance(value, str) and (m := _SHELL_REFERENCE.fullmatch(value.strip())):
        return (f"${{{m.group(1)}}} is a shell's way to write a variable, which is not read here: write "
                f"${{env:{m.group(1)}}}")
    if isinstance(value, str) and (m := _CASED_REFERENCE.fullmatch(value.strip())) \
            and m.group(1) != m.group(1).lower():
        return f"write the reference in lower case: ${{{m.group(1).lower()}:{m.group(2)}}}"
    if isinstance(value, str) and "${" in value:
        return ("not a valid secret reference: write the whole value as ${env:NAME} or ${file:PATH} "
                "(e.g. ${env:ACME_SQL_PASSWORD})")
    if isinstance(value, str) and re.fullmatch(r"\$[A-Za-z_]\w*", value.strip()):
        return ("a literal secret is not allowed ($NAME, as a shell writes a variable, is not read here): write "
                "${env:NAME} or ${file:PATH} (e.g. ${env:ACME_SQL_PASSWORD})")
    if isinstance(value, dict):
        return ("a YAML mapping (a value in braces), not a reference: write ${env:NAME} or ${file:PATH} here "
                "(e.g. ${env:ACME_SQL_PASSWORD}), never the secret itself")
    return ("a literal secret is not allowed: put it in an environment variable or file and write "
            "${env:NAME} or ${file:PATH} here (e.g. ${env:ACME_SQL_PASSWORD})")


def _bound(word: str) -> Callable[[ValidationError, tuple], Iterator[Raw]]:
    def explain(error: ValidationError, path: tuple) -> Iterator[Raw]:
        if _is_share(error.schema):
            yield path, f"must be a share between 0 and 1 (e.g. 0.1 for 10%), got {error.instance}" + \
                _as_share(error.instance, "; ")
            return
        yield path, f"must be {word} {error.validator_value}, got {error.instance}"
    return explain


def _is_share(schema: Any) -> bool:
    """A number from 0 to 1 (deletion.max_share, min_source_ratio): a share, which is easily
    written as a percentage."""
    return isinstance(schema, dict) and schema.get("type") == "number" and schema.get("minimum") == 0 \
        and schema.get("maximum") == 1


def _as_share(value: Any, lead: str) -> str:
    """`lead` and `for 10% write 0.1`, where a value out of a share's range reads as a
    percentage; else nothing."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 1 < value <= 100:
        return f"{lead}for {value:g}% write {value / 100:g}"
    return ""


def _size(what: str) -> Callable[[ValidationError, tuple], Iterator[Raw]]:
    def explain(error: ValidationError, path: tuple) -> Iterator[Raw]:
        n = error.validator_value
        if n == 1:
            yield path, {"items": "must not be an empty list", "chars": "must not be empty",
                         "fields": "must not be empty"}[what]
        else:
            yield path, f"must have at least {n} {what}"
    return explain


def _unique(error: ValidationError, path: tuple) -> Iterator[Raw]:
    seen, dups = set(), []
    for item in error.instance:
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            dups.append(item)
        seen.add(key)
    yield path, f"lists {quoted_list([str(d) for d in dups])} more than once"


def _property_names(error: ValidationError, path: tuple) -> Iterator[Raw]:
    # error.instance is the whole object; find the offending names ourselves
    pattern_error = error.context[0] if error.context else None
    name = pattern_error.instance if pattern_error is not None else None
    hint = _PATTERN_HINTS.get(getattr(pattern_error, "validator_value", ""), "a valid name")
    yield (path + (name,) if name is not None else path), f"'{name}' is not a valid name: expected {hint}"


def _any_of(error: ValidationError, path: tuple) -> Iterator[Raw]:
    # anyOf is used for "a string or a list of strings" and "an expression or null":
    # report the alternative that got furthest (jsonschema's best match)
    from jsonschema.exceptions import best_match
    best = best_match(error.context)
    if best is None:
        yield path, "is not valid here"
        return
    yield from _explain(best)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null (an empty value)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


_HANDLERS: dict[str, Callable[[ValidationError, tuple], Iterator[Raw]]] = {
    "additionalProperties": _additional,
    "required": _required,
    "dependentRequired": _dependent,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
    "minimum": _bound("at least"),
    "maximum": _bound("at most"),
    "exclusiveMinimum": _bound("greater than"),
    "exclusiveMaximum": _bound("less than"),
    "minItems": _size("items"),
    "minLength": _size("chars"),
    "minProperties": _size("fields"),
    "uniqueItems": _unique,
    "propertyNames": _property_names,
    "anyOf": _any_of,
}
