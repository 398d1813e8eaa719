"""Which records of a sample break an expression of the mapping, for `idwell-sync discover`.

A run stops with exit 3 at the first record for which an expression of the mapping cannot be
computed (engine.mapping.Mapper raises engine.errors.ExpressionError): a jmespath built-in given
a null or a number (`join` over a null, `starts_with` of a number, `length` of a null), '<'
between text and a number. discover reads a sample (an API's first page, the first rows of a
query) and `check_records` computes each expression of each of its records one by one, in the
order a run computes them, going on past an error, so that every record and every expression
that would stop a run is counted and named, not only the first:

- the external_id, for every record;
- the filters, in order, until one excludes the record (a record a filter excludes is not
  mapped further, so what its fields break does not stop a run);
- a record whose external_id is empty is not mapped further either (a run reports it);
- the gate's fields, then (the gate passing, or not known) the other fields and the contract.

The gate is the one a run maps the entity behind where it can be known from the record itself
(the occupancies' contract window). The users' gate is made of every occupancy, which a sample
does not hold: the persons read are all checked, including those a run skips for having no
contract in the window (`ungated`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine import contract
from engine.config.model import EntityMapping
from engine.errors import ExpressionError
from engine.erp_keys import EMPTY_KEY, _key_getter
from engine.filters import compile_filter
from engine.plural import counted

SHOWN = 3
"""Records that break an expression shown per entity in discover's listing (`--rows` with TABLE)."""


@dataclass
class BrokenRecord:
    index: int                      # the record's place in the sample
    errors: list[ExpressionError]   # each expression it breaks, in the order a run computes them


@dataclass
class FieldCheck:
    """What the records of a sample break: every record that breaks an expression, and per field
    (`external_id`, `move_in`, `filter 'phantom'`, `contract`) how many records break it."""
    checked: int = 0
    broken: list[BrokenRecord] = field(default_factory=list)
    by_field: Counter = field(default_factory=Counter)
    ungated: bool = False           # the users' gate is not known: persons without a contract are checked too

    def first_errors(self) -> dict[str, ExpressionError]:
        """Per field, in the order met, the first record's error."""
        out: dict[str, ExpressionError] = {}
        for record in self.broken:
            for error in record.errors:
                out.setdefault(error.what, error)
        return out


def check_records(entity: EntityMapping, records: Sequence[Any], columns: Sequence[str] | None = None,
                  gate: tuple[tuple[str, ...], Callable[[dict], str | None]] | None = None,
                  ungated: bool = False) -> FieldCheck:
    """Computes each expression of the mapping for each record (a dict, or a tuple in `columns`
    order) as a run does (see the module's doc); `gate` as for engine.mapping.Mapper."""
    fields = entity.fields
    names = [n for n in contract.fields(entity.name) if n in fields and n != "external_id"]
    gate_fields, decide = gate if gate else ((), None)
    early = [(n, fields[n].source, fields[n].bind(columns)) for n in names if n in gate_fields]
    rest = [(n, fields[n].source, fields[n].bind(columns)) for n in names if n not in gate_fields]
    if entity.contract is not None:
        rest.append(("contract", entity.contract.source, entity.contract.bind(columns)))
    filters = [(f"filter '{rule.name}'", rule.expr.source if rule.kind == "expr" else rule.field,
                compile_filter(rule, columns)) for rule in entity.filters]
    id_expr = fields["external_id"]
    id_of, key_of = id_expr.bind(columns), _key_getter(entity.key, columns)
    out = FieldCheck(checked=len(records), ungated=ungated)
    for index, record in enumerate(records):
        errors: list[tuple[str, str, Exception]] = []

        def value(what: str, source: str, get: Callable) -> Any:
            try:
                return get(record)
            except Exception as exc:            # what a run stops on (engine.mapping.Mapper)
                errors.append((what, source, exc))
                return _BROKEN

        external_id = value("external_id", id_expr.source, id_of)
        excluded = any((hit := value(what, source, predicate)) is not _BROKEN and hit
                       for what, source, predicate in filters)
        if not excluded and external_id not in (None, ""):
            data = {"external_id": external_id}
            for what, source, get in early:
                data[what] = value(what, source, get)
            if not _gated(decide, data):
                for what, source, get in rest:
                    value(what, source, get)
        if errors:
            key = _key(key_of, record)
            out.broken.append(BrokenRecord(index, [ExpressionError(entity.name, key, what, source, exc)
                                                   for what, source, exc in errors]))
            out.by_field.update({what for what, _, _ in errors})
    return out


_BROKEN = object()
"""The value of an expression a record breaks."""


def _gated(decide: Callable[[dict], str | None] | None, data: dict) -> bool:
    """Whether the gate stops the record; not when a gate field is broken or not mapped (it
    cannot tell)."""
    if decide is None or _BROKEN in data.values():
        return False
    try:
        return decide(data) is not None
    except Exception:           # the engine's own code, not an expression: a run says what it is
        return False


def _key(key_of: Callable, record: Any) -> str:
    try:
        return key_of(record)
    except Exception:
        return EMPTY_KEY


def sample_gate(tenant, entity: EntityMapping, run_date) -> tuple[Any, bool]:
    """(the gate a run maps the entity's records behind, or None; whether that is the users' gate,
    which a sample cannot know: check_records' `ungated`)."""
    from engine.extract import entity_gate
    try:
        return entity_gate(tenant, entity.name, run_date, None), False
    except LookupError:
        return None, True


def label(what: str) -> str:
    """A field as the lines name it: `external_id`, `field 'move_in'`, `filter 'phantom'`."""
    return what if what == "external_id" or what.startswith("filter ") else f"field '{what}'"


def summary(breaking: int, checked: int, records: str = "records") -> str:
    """The line that ends discover's output when records (rows) break an expression."""
    verb = "breaks" if breaking == 1 else "break"
    return (f"{breaking} of {counted(checked, records[:-1], records)} read {verb} an expression "
            f"of the mapping; a run would stop on {'it' if breaking == 1 else 'them'} (exit 3): correct the "
            "expression in the tenant's overrides or the mapping, or the data in the ERP")


def field_lines(check: FieldCheck, n: int, records: str = "records") -> list[str]:
    """Per field a record breaks: how many of the `n` read break it, and the first one's error."""
    lines = []
    for what, error in check.first_errors().items():
        count = check.by_field[what]
        which = f"this {records[:-1]}" if n == 1 else f"{count} of these {n} {records}"
        lines.append(f"  the mapping's {label(what)} cannot be computed for {which} (a run stops on "
                     f"{'it' if count == 1 else 'them'}, exit 3); the first: {error.message}")
    if check.broken and check.ungated:
        lines.append("  (persons are checked whether or not a contract in the window names them; a run maps "
                     "only those it names)")
    return lines


def errors_jsonable(check: FieldCheck, record_of: Callable[[int], Any], shown: int) -> dict[str, Any]:
    """`expression_errors` of discover's JSON (docs/config.md)."""
    return {"checked": check.checked, "records": len(check.broken), "fields": dict(check.by_field),
            "first": [{"key": e.key, "field": e.what, "expression": e.expression, "error": e.message,
                       "record": record_of(b.index)} for b in check.broken[:shown] for e in b.errors]}
