"""The same tenant on SQLite and on PostgreSQL gives identical results: the demo ERP generated into a
PostgreSQL schema of its own (127.0.0.1:5432, database test), synced with the demo tenant's mapping,
plans and fills the portal exactly as the SQLite ERP does. Required in CI; elsewhere skipped with the
reason when the server is unreachable."""
from __future__ import annotations

import uuid
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from engine.demo import generate
from engine.plan import plan_to_json
from pgcluster import require

pytestmark = pytest.mark.postgres

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_reachable() -> str | None:
    """None if the PostgreSQL server answers, else why not."""
    try:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # the reason is shown in the skip message
        return f"PostgreSQL on 127.0.0.1:5432 (db test) is not reachable: {type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def pg_erp(demo_erp):
    why = postgres_reachable()
    require(why is None, why or "")
    schema = f"core_{uuid.uuid4().hex[:12]}"
    try:
        manifest = generate(PG_URL, size="S", seed=42, schema=schema)
        yield schema, manifest
    finally:
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def source_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def comparable_plan(prepared) -> dict:
    plan = plan_to_json(prepared.plan)
    plan.pop("tenant")
    plan["changes"] = sorted(plan["changes"], key=lambda c: (c["entity"], c["action"], c["external_id"]))
    return plan


def comparable_summary(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("tenant", "timings", "plan_file")}


def finding_keys(findings) -> Counter:
    return Counter((f.code, f.entity, f.key, f.field, f.message) for f in findings)


def test_the_generator_writes_the_same_erp_to_postgresql(demo_erp, pg_erp):
    schema, manifest = pg_erp
    assert manifest.as_dict() == demo_erp.manifest.as_dict()


def test_the_same_tenant_plans_identically_on_sqlite_and_postgresql(ws, pg_erp):
    schema, _ = pg_erp
    lite = ws.plan(ws.tenant("demo-sqlite", portal=ws.root / "lite.sqlite"), portal=ws.root / "lite.sqlite")
    pg_tenant = ws.tenant("demo-pg", source_url=source_url(schema), portal=ws.root / "pg.sqlite")
    pg = ws.plan(pg_tenant, portal=ws.root / "pg.sqlite")
    assert pg.extracted == lite.extracted and sum(pg.extracted.values()) > 1000
    assert comparable_plan(pg) == comparable_plan(lite)
    assert finding_keys(pg.findings) == finding_keys(lite.findings)


def test_the_same_tenant_fills_the_portal_identically_on_sqlite_and_postgresql(ws, pg_erp):
    schema, _ = pg_erp
    lite_portal, pg_portal = ws.root / "lite.sqlite", ws.root / "pg.sqlite"
    lite = ws.run(ws.tenant("demo-sqlite", portal=lite_portal))
    pg = ws.run(ws.tenant("demo-pg", source_url=source_url(schema), portal=pg_portal))
    assert (lite.exit_code, pg.exit_code) == (0, 0)
    assert comparable_summary(pg.summary) == comparable_summary(lite.summary)
    assert ws.portal(pg_portal).records == ws.portal(lite_portal).records
    for entity, records in ws.portal(pg_portal).records.items():
        assert records, entity
    again = ws.run(ws.tenant("demo-pg", source_url=source_url(schema), portal=pg_portal))
    assert again.summary["writes"] == 0, "a rerun against PostgreSQL makes zero writes too"


def test_a_filter_finding_shows_a_decimal_as_the_erp_holds_it(ws, pg_erp):
    """PostgreSQL (as SQL Server) returns a DECIMAL column as Decimal: the property manager reads
    `Flaeche = 185.35`, not Python's `Decimal('185.35')`."""
    schema, _ = pg_erp
    rule = {"name": "big_units", "reason": "big_unit", "field": "Flaeche", "range": {"min": 150}}
    pg = ws.plan(ws.tenant("demo-pg", source_url=source_url(schema), portal=ws.root / "pg.sqlite",
                           overrides={"entities": {"units": {"filters": [rule]}}}), portal=ws.root / "pg.sqlite")
    found = {f.key: f.message for f in pg.findings if f.code == "big_unit"}
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as conn:
        areas = {str(k): v for k, v in conn.execute(
            sql.SQL("SELECT einheitid, flaeche FROM {}.einheit WHERE flaeche >= 150").format(sql.Identifier(schema)))}
    assert found and set(found) <= set(areas)
    for key, message in found.items():
        assert message == f"excluded by filter 'big_units': Flaeche = {areas[key]} is in the range 150..", message
