"""Sources: where records come from. One module per kind, one entry in SOURCES."""
from __future__ import annotations

import datetime as dt
import importlib

SOURCES: dict[str, str] = {
    "sql": "engine.sources.sql:SqlExtractor",
    "api": "engine.sources.api:ApiExtractor",
}


def open_source(tenant, *, run_date: dt.date):
    """The extractor for the tenant's source. It offers batches(entity, params) and close()."""
    return source_class(tenant)(tenant.source, tenant.id, run_date=run_date)


def source_class(tenant) -> type:
    """The extractor's class for the tenant's source, its module imported (engine.parallel
    imports it before it forks, so that the two processes do not both import it)."""
    module_name, _, cls = SOURCES[tenant.source.type].partition(":")
    return getattr(importlib.import_module(module_name), cls)
