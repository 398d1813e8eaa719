"""Codes that a field's code table does not hold: map_values sends the table's default for them,
a value the ERP did not say, so the run reports each such code (finding `code_not_in_table`).

One finding per entity, field and code (as map_values compares codes: trimmed, lower-cased
text), with how many records carry it and a few of their ERP keys, not one per record: an
unknown code is one fix (the code added to the tenant's code table, or corrected in the ERP),
and a tenant whose 200,000 units all carry type code 6 would otherwise get 200,000 rows that
bury every other finding of the report.

engine.mapping notes each record whose field met a missing code (`UnknownCodes.note`) as it
maps; `findings(records)` counts the records that the entity kept once extraction is done, so
that records mapped and then dropped (a person the users' gate stops after it was mapped, in
engine.parallel's second process) count no more than in the serial path, which never maps them.

Where every code is known this costs nothing measurable: map_values tells a missing code only
when it meets one (map_values_noting), over a batch once per distinct value where map_memo
computes the column; the rows that carry it are looked for only in a batch where a code was
missing (`carriers`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, Callable, Iterator, Mapping, Sequence

from engine import contract
from engine.expr import compile_expression
from engine.expr._columns import MEMO_TYPES
from engine.expr.functions import as_text, table_key
from engine.findings import Finding
from engine.plural import counted

EXAMPLES = 3
"""ERP keys a finding names (the lowest, so that every way of mapping names the same ones)."""


@dataclass
class _Code:
    """The records of one entity whose field met one code that its code table does not hold."""
    label: str                                          # what the field reads, e.g. 'TypCode'
    noted: list = field(default_factory=list)           # per record noted: (external_id, ERP key,
                                                        # the code as the ERP holds it, the value sent)


@dataclass
class UnknownCodes:
    """(field, code table, code as compared) -> the records that carry it, for one entity."""
    entity: str
    codes: dict[tuple[str, str, str], _Code] = field(default_factory=dict)

    def note(self, name: str, label: str, table: str, code: Any, raw: Any, sent: Any, external_id: str,
             key: str) -> None:
        """Record `external_id` (ERP key `key`): its field `name` read `raw` from the ERP (`code`
        as map_values got it), which code table `table` does not hold, and the field became `sent`."""
        entry = self.codes.get((name, table, table_key(code)))
        if entry is None:
            entry = self.codes[(name, table, table_key(code))] = _Code(label)
        entry.noted.append((external_id, key, raw, sent))

    def findings(self, records: Mapping[str, Any]) -> list[Finding]:
        """One finding per field and code, counting the records among `records` (external_id ->
        Rec) that were noted with it; by the field's place in the portal's record, then code."""
        order = {name: k for k, name in enumerate(contract.fields(self.entity))}
        out = []
        for (name, table, code), entry in sorted(self.codes.items(),
                                                 key=lambda kv: (order.get(kv[0][0], len(order)), kv[0])):
            carried: dict[str, tuple[str, str, Any, Any]] = {}   # external_id -> (key, id, raw, sent): once
            for external_id, key, raw, sent in entry.noted:
                rec = records.get(external_id)
                if rec is not None and rec.key == key and external_id not in carried:
                    carried[external_id] = (key, external_id, raw, sent)
            if not carried:
                continue
            examples = sorted(carried.values(), key=_natural)[:EXAMPLES]
            key, _, raw, sent = examples[0]
            out.append(Finding("code_not_in_table", self.entity, key,
                               _message(entry.label, raw, table, name, sent, len(carried), [e[0] for e in examples]),
                               field=name))
        return out


def code_column(expr: Any, columns: Sequence[str] | None) -> tuple[str, Callable | None]:
    """How a finding names the code of a field translated through a code table (an Expr): (the
    column and a function of a row giving its value as the ERP holds it) where the field reads
    one column, else ('code', None): the code as map_values got it."""
    if expr.columns is not None and len(expr.columns) == 1:
        (name,) = expr.columns
        if expr.paths == frozenset({(name,)}):
            return name, compile_expression(json.dumps(name)).bind(columns)
    return "code", None


def carriers(name: str, by_row: Callable, column: tuple[str, Callable | None], notes: list, rows: Sequence[tuple],
             sent: Sequence[Any], ids: Sequence[str], keys: Sequence[str]) -> Iterator[tuple]:
    """UnknownCodes.note's arguments for each of `rows` (tuples, with their external_ids `ids`,
    ERP keys `keys` and values `sent` of field `name`) that carries a code missing from the
    field's code table: `by_row` (the field bound row by row, its note appending to `notes`)
    evaluated again, once per distinct value where the field reads one column (code_column)."""
    label, raw_of = column
    values = None if raw_of is None else list(map(raw_of, rows))
    if values is not None and set(map(type, values)) <= MEMO_TYPES:
        first = dict(zip(reversed(values), range(len(values) - 1, -1, -1)))       # value -> its first row
        told: dict[Any, list] = {}
        for value, i in first.items():
            by_row(rows[i])
            if notes:
                told[value] = [(table, code) for _, table, code in notes]
                notes.clear()
        for i in compress(range(len(values)), map(told.__contains__, values)):
            for table, code in told[values[i]]:
                yield name, label, table, code, values[i], sent[i], ids[i], keys[i]
        return
    for i, row in enumerate(rows):
        by_row(row)
        if notes:
            found = [(table, code) for _, table, code in notes]
            notes.clear()
            for table, code in found:
                yield name, label, table, code, code if raw_of is None else raw_of(row), sent[i], ids[i], keys[i]


def _natural(example: tuple) -> tuple:
    """ERP keys in their natural order where they are numbers of one length: 9 before 10."""
    key, external_id = example[0], example[1]
    return (len(key), key, external_id)


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else "null" if value is None else as_text(value) or repr(value)


def _message(label: str, raw: Any, table: str, name: str, sent: Any, count: int, keys: list[str]) -> str:
    records = counted(count, "record")
    which = ", ".join(keys) + (", ..." if count > len(keys) else "")
    return f"{label} {_shown(raw)} is not in the code table '{table}': {name} became {_shown(sent)} ({records}: {which})"
