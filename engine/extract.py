"""extract -> map -> filter: each entity read from the source in batches and mapped into records,
in EXTRACT_ORDER. Contracts outside the window, and persons without a contract in it, are
recognised early (the gates) and become findings instead of records."""
from __future__ import annotations

import datetime as dt
from itertools import repeat
from typing import Callable, Iterable, Iterator

from engine.config.model import ENTITIES, Tenant
from engine.config._text import did_you_mean
from engine.config.sql import RUN_PARAMS
from engine.entity_data import EntityData
from engine.errors import ConfigError, ExpressionError
from engine.expr import ExprError
from engine.findings import Finding
from engine.mapping import Mapper, kept_values, unknown_code_findings, unreturned_columns
from engine.progress import Progress
from engine.references import WindowGate, occupancy_gate, window_bounds, window_findings, window_gate
from engine.targets.base import retries_of


EXTRACT_ORDER = ("buildings", "units", "occupancies", "users")
"""Occupancies before users: a person is mapped completely only if a contract in the window names it."""


def window_params(tenant: Tenant, run_date: dt.date) -> dict[str, dt.date]:
    """The bound parameters every query may use (:ref_date, :window_end_from, :window_start_until)."""
    return dict(zip(RUN_PARAMS, window_bounds(tenant.window, run_date)))


def extract_entity(tenant: Tenant, entity: str, source, params: dict, run_date: dt.date, gate,
                   findings: list[Finding], progress: Progress, *, keep_gated: bool = False,
                   early: tuple[str, Callable[[set | None], None]] | None = None) -> EntityData:
    """extract -> map -> filter for one entity, streamed in batches; `gate` (see Mapper) skips
    what is not wanted early, each skipped record a finding (`keep_gated`: left in `gated` for
    the caller, engine.parallel). `early` (field, tell): tell(the set of the field's values over
    the records) is called as soon as every row is read and it is known which become records,
    before they are made (None: it cannot be known before; the caller takes it from the
    records), so that a second process waiting for it starts sooner (the users' gate)."""
    try:
        return _extract_entity(tenant, entity, source, params, run_date, gate, findings, progress,
                               keep_gated=keep_gated, early=early)
    except ExpressionError as exc:      # a mapping's expression that a record of the ERP breaks
        raise exc.for_tenant(tenant.id) from exc


def _extract_entity(tenant: Tenant, entity: str, source, params: dict, run_date: dt.date, gate,
                    findings: list[Finding], progress: Progress, *, keep_gated: bool,
                    early: tuple[str, Callable[[set | None], None]] | None) -> EntityData:
    out = EntityData(entity)
    mapper, columns_seen = None, None
    progress.start(f"extract {entity}")
    pending: list[tuple[Mapper, list]] = []         # with `early`: the first halves, in order
    rows_read = 0
    for columns, rows in source.batches(tenant.entities[entity], params):
        if mapper is None or columns != columns_seen:
            mapper, columns_seen = _mapper(tenant, entity, columns, out, findings, gate), columns
        if early is None:
            mapper.map_rows(rows)
        else:
            pending.append((mapper, mapper.first_half(rows, (early[0],))))
        rows_read += len(rows)
        progress.advance(len(rows))
    if early is not None:
        early[1](kept_values((half for _, halves in pending for half in halves), early[0]))
        pending.reverse()
        progress.stage("mapped", 0, rows_read)      # the live line moves through the second half too
        while pending:                  # each batch's rows let go once its records are made
            batch_mapper, halves = pending.pop()
            batch_mapper.second_half(halves)
            progress.stage("mapped", out.extracted, rows_read)
    out.settle_duplicates()
    if gate is not None and isinstance(gate[1], WindowGate):     # the same window is not checked again
        out.window = gate[1].bounds
    if not keep_gated:                  # else the caller reports both once the gate is settled
        findings.extend(unknown_code_findings(out))
        gated_findings(tenant, out, run_date, findings)
    progress.finish(f"({sum(out.filtered.values()):,} filtered)")
    return out


def _mapper(tenant: Tenant, entity: str, columns: list[str] | None, out: EntityData, findings: list[Finding],
            gate) -> Mapper:
    """The Mapper for a batch's columns (once per set of columns, not per row); a column the
    mapping reads that the query's rows lack (a query that selects *, which validate cannot
    check) stops the run as an invalid mapping, naming the columns."""
    mapping = tenant.entities[entity]
    where = f"tenant '{tenant.id}': entity '{entity}'"
    if columns is not None and (missing := unreturned_columns(mapping, columns)):
        close = [(name, did_you_mean(name, columns)) for name in missing]
        close = [(name, text) for name, text in close if text]
        said = (f" {close[0][1]}" if len(missing) == 1 and close else
                "".join(f" {name}: {text[:1].lower()}{text[1:]}" for name, text in close))
        at = f" (the query is written at {mapping.query_at})" if mapping.query_at else ""
        raise ConfigError([], f"{where}: the mapping reads {', '.join(missing)}, which the query's rows do not have"
                              f"{at}.{said}", hint=_columns_hint(tenant.id))
    try:
        return Mapper(mapping, columns, out, findings, gate)
    except ExprError as exc:            # a name two columns match but for case: `column 'x' is ambiguous`
        raise ConfigError([], f"{where}: {exc.message}", hint=_columns_hint(tenant.id)) from None


def _columns_hint(tenant_id: str) -> str:
    return ("add the columns to the query's SELECT list (name them rather than select *), or correct the mapping "
            f"(`idwell-sync discover {tenant_id} TABLE` lists a table's columns)")


def gated_findings(tenant: Tenant, out: EntityData, run_date: dt.date, findings: list[Finding]) -> None:
    """A finding for every record a gate skipped (contracts outside the window, persons without one)."""
    if out.entity == "occupancies":
        findings.extend(window_findings([(key, reason, early) for _, key, reason, early in out.gated],
                                        tenant.window, run_date))
    else:
        findings.extend(gated_user_findings([key for _, key, _, _ in out.gated],
                                            [reason for _, _, reason, _ in out.gated]))
    out.gated.clear()


GATED_USER_MESSAGE = "no contract in the contract window; not sent"


def gated_user_findings(keys: Iterable[str], reasons: Iterable[str]) -> Iterator[Finding]:
    """The finding of each person the users' gate stopped (ERP key, reason)."""
    return map(Finding, reasons, repeat("users"), keys, repeat(GATED_USER_MESSAGE))


def users_gate(tenant: Tenant, occ: EntityData | set[str]):
    """The users' gate: persons without a contract in the window are skipped (unless the tenant sends them)."""
    return occupancy_gate(occ) if tenant.rules.users_without_occupancy == "skip" else None


def entity_gate(tenant: Tenant, entity: str, run_date: dt.date, occ: EntityData | None):
    """The gate a run maps the entity's rows behind: the contract window for the occupancies, the
    users' gate (made of the occupancies `occ`, extracted first) for the users, none for the
    others. LookupError where the users need a gate and `occ` is None (not known)."""
    if entity == "occupancies":
        return window_gate(tenant.window, run_date)
    if entity != "users" or users_gate(tenant, set()) is None:
        return None
    if occ is None:
        raise LookupError("the users' gate is made of the occupancies, which are not known")
    return users_gate(tenant, occ)


def extract(tenant: Tenant, run_date: dt.date, findings: list[Finding],
            progress: Progress) -> tuple[dict[str, EntityData], dict | None, dict | None]:
    """extract -> map -> filter, entity by entity, streamed in batches. Contracts outside the
    window, and persons without a contract in it, are recognised early and not mapped in full.
    Also returns the requests the source sent again (an API source's, engine.sources.api; None
    when none were, or for a source that retries nothing, as an SQL source), and per entity the
    records that only the second reading of pages paged by position had (ApiExtractor.batches;
    None when there were none)."""
    from engine.sources import open_source
    params = window_params(tenant, run_date)
    data: dict[str, EntityData] = {}
    source = open_source(tenant, run_date=run_date)
    try:
        for entity in EXTRACT_ORDER:
            gate = entity_gate(tenant, entity, run_date, data.get("occupancies"))
            data[entity] = extract_entity(tenant, entity, source, params, run_date, gate, findings, progress)
    finally:
        source.close()
    return {e: data[e] for e in ENTITIES}, retries_of(source), dict(getattr(source, "recovered", {})) or None
