"""The demo ERP: a deterministic, seeded DOMUS-like database with every hard case of the domain.

    from engine.demo import generate
    manifest = generate("sqlite:///var/demo/erp.sqlite", size="S", seed=42)
    manifest.keys("orphan_unit", "einheitid")

See docs/demo-erp.md for the schema, the sizes and every hard-case code.
"""
from engine.demo.generate import SIZES, generate
from engine.demo.manifest import CODES, FUTURE_DAYS, GRACE_DAYS, REFERENCE_DATE, Manifest
from engine.demo.schema import COLUMNS, KEYS, TABLES, build_tables

__all__ = ["generate", "Manifest", "SIZES", "CODES", "REFERENCE_DATE", "FUTURE_DAYS", "GRACE_DAYS",
           "TABLES", "COLUMNS", "KEYS", "build_tables"]
