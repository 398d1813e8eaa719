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
    module_name, _, cls = SOURCES[tenant.source.type].partition(":")
    return getattr(importlib.import_module(module_name), cls)(tenant.source, tenant.id, run_date=run_date)
