"""`idwell-sync discover` for an API source: which fields an endpoint's records have, to write or
check a mapping for an unfamiliar API (engine.discover does the same for an SQL database).

`read_head(extractor, entity, limit)` reads records from the start of the entity's endpoint
through the ApiExtractor (its auth, timeouts, retries, paginator and record_selector), no more
pages than `limit` records need; `field_paths(records)` lists the paths into them (nested
objects as `address.city`, lists as `parties[]`, their objects' fields as `parties[].name`),
with the JSON types seen and how many records have a value there. Read-only: only GETs.

The records are shown as the API sent them, also those for which an expression of the mapping
cannot be computed (which stops a run with exit 3): engine.discover_fields computes each field of
each record read as a run does and names those a record breaks, with the expression and why, so
that discover shows what to correct instead of failing (`broken` keeps those whose external_id it
cannot compute, for the JSON's `external_id_errors`).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.config.model import EntityMapping, Tenant
from engine.discover import format_table
from engine.discover_fields import SHOWN, FieldCheck, check_records, errors_jsonable, field_lines, summary
from engine.doctor_api import PAGE          # records asked for per endpoint, as doctor asks for them
from engine.errors import EXPRESSION_HINT, ExpressionError, SourceError, UsageError
from engine.plural import counted
from engine.sources.api import ApiExtractor
from engine.sources.unread_paths import UnreadPaths, read_paths

STOP = {"login_failed", "dns", "unreachable", "timeout", "tls_certificate"}
"""Causes that every endpoint would fail with alike: the listing stops at the first (as it stops
at an error that the retries did not overcome: 5xx, 429, no answer)."""
TYPES = ["string", "integer", "number", "boolean", "object", "array", "null"]
"""JSON types as JSON Schema names them (integer apart from number), in the order they are shown."""
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class FieldPath:
    path: str                       # as an expression reads it: address.city, parties[], parties[].name
    names: tuple[str, ...]          # the keys up to the first list: ('address', 'city'), ('parties',)
    types: list[str] = field(default_factory=list)        # JSON types seen, in the order of TYPES
    item_types: list[str] = field(default_factory=list)   # a list's items that are not objects
    present: int = 0                # records with a value here (not null, not absent)
    read: bool = False              # the mapping reads this path

    @property
    def type_text(self) -> str:
        return ", ".join(f"array of {'|'.join(self.item_types)}" if t == "array" and self.item_types else t
                         for t in self.types)


@dataclass
class EndpointSample:
    entity: EntityMapping
    records: list[dict]
    fields: list[FieldPath]
    unread: list[str]               # the paths the mapping reads that no record here has (doctor's words)
    pages: int = 1                  # pages read
    error: SourceError | None = None
    broken: list[tuple[int, ExpressionError]] = field(default_factory=list)
    """The records whose external_id the mapping cannot compute: (index in `records`, why)."""
    check: FieldCheck = field(default_factory=FieldCheck)
    """Every record that breaks an expression of the mapping, and which (engine.discover_fields)."""


def find_entity(tenant: Tenant, wanted: str) -> EntityMapping:
    """An entity by its name (`users`) or its endpoint's path (`/persons`, `persons`)."""
    w = wanted.strip()
    for entity in tenant.entities.values():
        if w.casefold() == entity.name.casefold() or w.strip("/") == (entity.endpoint or "").strip("/"):
            return entity
    for entity in tenant.entities.values():                 # paths are case-sensitive, but one wrong case is clear
        if w.strip("/").casefold() == (entity.endpoint or "").strip("/").casefold():
            return entity
    from engine.config._text import did_you_mean
    known = [n for e in tenant.entities.values() for n in (e.name, e.endpoint)]
    listed = ", ".join(f"{e.name} ({e.endpoint})" for e in tenant.entities.values())
    close = did_you_mean(w, known) or did_you_mean("/" + w.strip("/"), known)
    raise UsageError(f"tenant '{tenant.id}': no entity or endpoint named '{wanted}'; the mapping reads {listed}",
                     hint=close or "give an entity's name or its endpoint, or leave it out to list every endpoint")


def extractor_for(tenant: Tenant, page_size: int, transport=None) -> ApiExtractor:
    """The run's extractor for the tenant's source, asking for pages of at most `page_size` records."""
    from engine.references import tenant_today
    small = dataclasses.replace(tenant.source, page_size=max(1, min(tenant.source.page_size, page_size)))
    return ApiExtractor(small, tenant.id, run_date=tenant_today(tenant), transport=transport)


def read_head(extractor: ApiExtractor, entity: EntityMapping, limit: int) -> tuple[list[dict], int]:
    """The first page's records, and the next pages' while fewer than `limit` are read, as the API
    sent them (the paginator's checks apply: a page the API caps below the page size is named as
    in a run; no external_id is made: see engine.discover_fields)."""
    records: list[dict] = []
    read = 0
    pages = extractor.raw_pages(entity)
    try:
        for page in pages:
            records += page
            read += 1
            if len(records) >= limit:
                break
    finally:
        pages.close()           # the next page is not asked for
    return records, max(read, 1)


def sample_endpoint(extractor: ApiExtractor, entity: EntityMapping, limit: int, gate=None,
                    ungated: bool = False) -> EndpointSample:
    """The endpoint's first records, their fields, and the expressions they break (`gate`, `ungated`:
    engine.discover_fields.sample_gate)."""
    records, pages = read_head(extractor, entity, limit)
    unread = UnreadPaths(entity)
    unread.see(records)
    check = check_records(entity, records, None, gate, ungated)
    broken = [(b.index, e) for b in check.broken for e in b.errors if e.what == "external_id"]
    return EndpointSample(entity, records, field_paths(records, read_paths(entity)),
                          unread.missing() if records else [], pages, broken=broken, check=check)


def stops_all(error: SourceError) -> bool:
    """Whether the other endpoints would fail alike (refused credentials, no answer, an API that
    keeps failing), so that reading them is no use."""
    return error.cause in STOP or error.retriable


def failed_endpoint(entity: EntityMapping, error: SourceError) -> EndpointSample:
    return EndpointSample(entity, [], [], [], pages=0, error=error)


def field_paths(records: list[dict], read: set[tuple[str, ...]] | frozenset = frozenset()) -> list[FieldPath]:
    """Every path into the records, in the order first met. An object's own path is listed only
    where it was something else too (`address`: object, null), since its fields are listed."""
    found: dict[str, FieldPath] = {}
    parents: set[str] = set()                   # paths that held an object with fields
    for record in records:
        valued: set[str] = set()
        _walk(record, "", (), True, found, parents, valued)
        for path in valued:
            found[path].present += 1
    out = [f for key, f in found.items() if key and (key not in parents or f.types != ["object"])]
    for f in out:
        f.types.sort(key=TYPES.index)
        f.item_types.sort(key=TYPES.index)
        f.read = "[]" not in f.path.removesuffix("[]") and f.names in read
    return out


def _walk(value: Any, path: str, names: tuple[str, ...], plain: bool, found: dict, parents: set, valued: set) -> None:
    """Notes `value` at `path` (`names`: its keys while `plain`, no list on the way)."""
    kind = json_type(value)
    entry = found.setdefault(path, FieldPath(path, names))
    if kind not in entry.types:
        entry.types.append(kind)
    if value is not None:
        valued.add(path)
    if kind == "object" and value:
        parents.add(path)
        for key, child in value.items():
            name = key if _IDENT.match(key) else json.dumps(key, ensure_ascii=False)
            _walk(child, f"{path}.{name}" if path else name, names + (key,) if plain else names, plain,
                  found, parents, valued)
    elif kind == "array":
        entry.path = path + "[]"
        for item in value:
            if isinstance(item, (dict, list)) and item:
                _walk(item, path + "[]", names, False, found, parents, valued)
            elif json_type(item) not in entry.item_types:
                entry.item_types.append(json_type(item))


def json_type(value: Any) -> str:
    """The JSON type of a parsed value, as JSON Schema names it (integer apart from number)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _title(s: EndpointSample) -> str:
    return f"endpoint {s.entity.endpoint} ({s.entity.name})"


def format_endpoints(samples: list[EndpointSample]) -> str:
    """Per endpoint: its field paths with their types and how many records have a value there."""
    lines: list[str] = []
    for s in samples:
        lines += _endpoint_lines(s)
        lines += _raw_lines(s, SHOWN)
    lines.append(f"{len(samples)} endpoint{'' if len(samples) == 1 else 's'}; * marks a path the mapping reads")
    lines += _summary_lines(samples)
    return "\n".join(lines)


def _raw_lines(s: EndpointSample, shown: int) -> list[str]:
    """The first `shown` records that break an expression, each as the API sent it (its JSON)."""
    if not s.check.broken or not shown:
        return []
    picked = s.check.broken[:shown]
    which = "the record, as the API sent it" if len(s.check.broken) == 1 else \
        f"the {len(picked)} records, as the API sent them" if len(picked) == len(s.check.broken) else \
        f"the first {len(picked)} of them, as the API sent them"
    return [f"  {which}:"] + [f"    {json.dumps(s.records[b.index], ensure_ascii=False)}" for b in picked]


def _summary_lines(samples: list[EndpointSample]) -> list[str]:
    breaking = sum(len(s.check.broken) for s in samples)
    return [summary(breaking, sum(s.check.checked for s in samples))] if breaking else []


def _endpoint_lines(s: EndpointSample) -> list[str]:
    if s.error is not None:
        return [f"{_title(s)}: not read: {s.error.message}"]
    if not s.records:
        return [f"{_title(s)}: no records on the first page"]
    n = len(s.records)
    pages = "the first page" if s.pages == 1 else f"the first {s.pages} pages"
    lines = [f"{_title(s)}: {counted(n, 'record')} on {pages}, {counted(len(s.fields), 'field')}"]
    width = max([30] + [len(f.path) for f in s.fields])
    kinds = max(len(f.type_text) for f in s.fields)
    for f in s.fields:
        lines.append(f"  {f.path:<{width}} {f.type_text:<{kinds}} {f.present:>{len(str(n))}}/{n}"
                     + (" *" if f.read else ""))
    if s.unread:
        lines.append(f"  the mapping reads, but no record here has: {'; '.join(s.unread)}")
    return lines + field_lines(s.check, n)


def format_records(s: EndpointSample, rows: int, width: int = 40) -> str:
    """The endpoint's fields, then its first `rows` records as a table: a column per path outside
    lists, a list as one column (its JSON)."""
    from engine.discover import _cell
    lines = _endpoint_lines(s)
    shown = s.records[:rows]
    lines.append(("first record:" if len(shown) == 1 else f"first {len(shown)} records:"))
    columns = [f for f in s.fields if "[]" not in f.path.removesuffix("[]")]
    cells = [[_cell(_text(_at(record, f.names)), width) for f in columns] for record in shown]
    lines += format_table([f.path for f in columns], cells)
    broken = s.check.broken
    if broken and rows:
        shown = broken[:rows]
        which = f"the {counted(len(shown), 'record')}" if len(shown) == len(broken) else \
            f"the first {len(shown)} of the {counted(len(broken), 'record')}"
        one = len(shown) == 1
        lines.append(f"{which} that break{'s' if one else ''} an expression of the mapping, as the API sent "
                     f"{'it' if one else 'them'}:")
        cells = [[_cell(_text(_at(s.records[b.index], f.names)), width) for f in columns] for b in shown]
        lines += format_table([f.path for f in columns], cells)
        lines += [f"  {error.message}" for b in shown for error in b.errors]
        lines.append(f"  what to do: {EXPRESSION_HINT}")
    lines += _summary_lines([s])
    return "\n".join(lines)


_ABSENT = object()


def _at(record: dict, names: tuple[str, ...]) -> Any:
    node: Any = record
    for name in names:
        if not isinstance(node, dict) or name not in node:
            return _ABSENT
        node = node[name]
    return node


def _text(value: Any) -> str:
    if value is _ABSENT:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def to_jsonable(samples: list[EndpointSample], picked: EndpointSample | None = None, rows: int = 0) -> dict[str, Any]:
    """`discover --format json` of an API source (documented in docs/config.md)."""
    out: dict[str, Any] = {"endpoints": [{
        "entity": s.entity.name, "endpoint": s.entity.endpoint, "records": len(s.records), "pages": s.pages,
        "fields": [{"path": f.path, "types": f.types, "item_types": f.item_types, "present": f.present,
                    "read": f.read} for f in s.fields],
        "unread": s.unread, "error": None if s.error is None else s.error.message,
        "external_id_errors": [{"key": e.key, "error": e.message} for _, e in s.broken],
        "expression_errors": errors_jsonable(s.check, s.records.__getitem__, rows if picked else SHOWN)}
        for s in samples]}
    breaking = sum(len(s.check.broken) for s in samples)
    out["expression_errors"] = {"checked": sum(s.check.checked for s in samples), "records": breaking,
                                "message": _summary_lines(samples)[0] if breaking else None}
    if picked is not None:
        out["sample"] = {"entity": picked.entity.name, "endpoint": picked.entity.endpoint,
                         "records": picked.records[:rows],
                         "broken_records": [picked.records[n] for n, _ in picked.broken[:rows]]}
    return out
