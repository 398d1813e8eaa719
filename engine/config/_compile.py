"""Turn a checked tenant (and its merged mapping) into the frozen model objects.

Runs only on data that passed the schema and the semantic checks, so it does not re-validate:
it applies defaults (the model's), compiles what the checks compiled already, and drops
filters that are switched off.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from engine.config import model as m
from engine.config._check_mapping import Compiled
from engine.config.secrets import SECRET_FIELDS, Secret


def compile_tenant(data: dict, mapping: dict, compiled: Compiled, path: Path,
                   query_at: dict[str, str] | None = None) -> m.Tenant:
    base = path.parent
    entities = {name: _entity(name, mapping["entities"][name], compiled, (query_at or {}).get(name))
                for name in m.ENTITIES if name in mapping["entities"]}
    dedup = data.get("dedup", {})
    email = dedup.get("email", {})
    schedule = data.get("schedule")
    return m.Tenant(
        id=data["id"],
        name=data.get("name", data["id"]),
        path=path,
        mapping=data["mapping"],
        source=_source(data["source"], base),
        entities=entities,
        code_tables=dict(compiled.code_tables),
        email_dedup=m.EmailDedup(**{k: tuple(v) if k == "order" else v for k, v in email.items()}),
        phone_dedup=m.PhoneDedup(**dedup.get("phone", {})),
        window=_window(data.get("contract_window", {})),
        rules=m.Rules(**data.get("rules", {})),
        deletion=m.Deletion(**{k: (float(v) if k != "max_count" else v) for k, v in data.get("deletion", {}).items()}),
        target=_target(data.get("target"), base),
        schedule=_schedule(schedule) if schedule else None,
        state_url=data.get("state_url"),
    )


def _secrets(spec: dict, base: Path) -> dict[str, Any]:
    return {k: (Secret(v, base) if k in SECRET_FIELDS and isinstance(v, str) else v) for k, v in spec.items()}


def _source(spec: dict, base: Path) -> m.SqlSource | m.ApiSource:
    spec = _secrets(spec, base)
    if spec["type"] == "api":
        auth = _secrets(spec.pop("auth"), base)
        return m.ApiSource(auth=m.ApiAuth(**auth), **{k: v for k, v in spec.items()})
    server_spec = {k: spec.pop(k) for k in list(spec) if k in m.SqlServer.__dataclass_fields__}
    server = None
    if "host" in server_spec:
        encrypt = server_spec.get("encrypt")
        if isinstance(encrypt, bool):
            server_spec["encrypt"] = "yes" if encrypt else "no"
        server = m.SqlServer(**server_spec)
    return m.SqlSource(server=server, **spec)


def _target(spec: dict | None, base: Path) -> m.LocalTarget | m.IdwellTarget | None:
    if spec is None:
        return None
    if spec["type"] == "local":
        return m.LocalTarget(type="local", path=Path(spec["path"]))
    return m.IdwellTarget(**_secrets(spec, base))


def _window(spec: dict) -> m.ContractWindow:
    date = spec.get("reference_date")
    return m.ContractWindow(reference_date=dt.date.fromisoformat(date) if date else None,
                            **{k: v for k, v in spec.items() if k != "reference_date"})


def _schedule(spec: dict) -> m.Schedule:
    window = spec.get("window") or {}
    return m.Schedule(cron=spec["cron"], timezone=spec.get("timezone", "Europe/Berlin"),
                      window_start=dt.time.fromisoformat(window["start"]) if window else None,
                      window_end=dt.time.fromisoformat(window["end"]) if window else None)


def _entity(name: str, spec: dict, compiled: Compiled, query_at: str | None = None) -> m.EntityMapping:
    path = ("entities", name)
    key = spec["key"]
    paginator = spec.get("paginator")
    filters = tuple(_filter(f, compiled.exprs.get(path + ("filters", i, "expr")))
                    for i, f in enumerate(spec.get("filters", ())) if f.get("enabled", True))
    return m.EntityMapping(
        name=name,
        fields={f: compiled.exprs[path + ("fields", f)] for f in spec["fields"]},
        key=(key,) if isinstance(key, str) else tuple(key),
        filters=filters,
        query=spec.get("query"),
        endpoint=spec.get("endpoint"),
        record_selector=spec.get("record_selector"),
        paginator=m.Paginator(**paginator) if paginator else None,
        params=dict(spec.get("params", {})),
        contract=compiled.exprs.get(path + ("contract",)),
        query_at=query_at,
    )


def _filter(spec: dict, expr: Any) -> m.FilterRule:
    common = {"name": spec["name"], "reason": spec["reason"], "description": spec.get("description"),
              "severity": spec.get("severity"), "advice": spec.get("advice")}
    if "flag" in spec:
        return m.FilterRule(kind="flag", field=spec["flag"], **common)
    if "expr" in spec:
        return m.FilterRule(kind="expr", expr=expr, **common)
    if "regex" in spec:
        return m.FilterRule(kind="regex", field=spec["field"], pattern=re.compile(spec["regex"]), **common)
    if "range" in spec:
        bounds = spec["range"]
        return m.FilterRule(kind="range", field=spec["field"], **common,
                            min=_float(bounds.get("min")), max=_float(bounds.get("max")))
    kind = "in" if "in" in spec else "not_in"
    values = frozenset(str(v).strip().lower() for v in spec[kind])
    return m.FilterRule(kind=kind, field=spec["field"], values=values, **common)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
