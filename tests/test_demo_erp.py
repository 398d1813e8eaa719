"""The demo ERP: deterministic, every hard case present with the right shape, the same rows on SQLite
and PostgreSQL, and the shipped mapping's queries run unchanged on both."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.exc import OperationalError

from engine.demo import CODES, KEYS, REFERENCE_DATE, TABLES, Manifest, build_tables, generate

ROOT = Path(__file__).resolve().parents[1]
MAPPING = yaml.safe_load((ROOT / "mappings" / "domus-sql.yaml").read_text("utf-8"))
TENANT = yaml.safe_load((ROOT / "tenants" / "demo.yaml").read_text("utf-8"))
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)


def read_all(url: str, schema: str | None = None) -> dict[str, list[tuple]]:
    """Every row of every demo table, typed by SQLAlchemy, in key order."""
    tables = build_tables(schema)
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = {name: [tuple(r) for r in conn.execute(select(tables[name]).order_by(
            *(tables[name].c[k] for k in KEYS[name])))] for name in TABLES}
    engine.dispose()
    return rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Size S with the default seed, in SQLite: (manifest, rows by table)."""
    path = tmp_path_factory.mktemp("demo") / "erp.sqlite"
    manifest = generate(f"sqlite:///{path}", "S")
    return manifest, read_all(f"sqlite:///{path}"), path


@pytest.fixture
def pg_schema():
    engine = create_engine(PG_URL)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is unreachable ({exc.orig}); CI is not set")
    name = f"demo_{uuid.uuid4().hex[:12]}"
    yield name
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    engine.dispose()


def index(rows: list[tuple], key: int = 0) -> dict:
    return {r[key]: r for r in rows}


# -- determinism and replacement -------------------------------------------------------------------

def test_same_seed_gives_identical_rows_and_a_rerun_replaces_the_content(tmp_path, demo):
    manifest, rows, _ = demo
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    generate(url, "S", seed=7)
    again = generate(url, "S")                      # over a different database: replaced, not appended
    assert read_all(url) == rows
    assert again.as_dict() == manifest.as_dict()


def test_another_seed_gives_other_rows_with_the_same_showcase(tmp_path, demo):
    _, rows, _ = demo
    url = f"sqlite:///{tmp_path / 'erp.sqlite'}"
    other = generate(url, "S", seed=43)
    other_rows = read_all(url)
    assert other_rows["adresse"] != rows["adresse"]
    assert all(other.cases[code] for code in CODES)


def test_manifest_counts_rows_and_is_written_next_to_the_sqlite_file(demo):
    manifest, rows, path = demo
    assert manifest.counts == {name: len(rows[name]) for name in TABLES}
    assert 280 <= manifest.counts["einheit"] <= 330
    assert Manifest.load(f"{path}.manifest.json").as_dict() == json.loads(json.dumps(manifest.as_dict()))


def test_unknown_size_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid values are: S, M, L"):
        generate(f"sqlite:///{tmp_path / 'x.sqlite'}", "XL")


# -- the hard cases, checked against the database ----------------------------------------------------

def test_every_hard_case_is_present_in_size_s(demo):
    manifest, _, _ = demo
    assert [code for code in CODES if not manifest.cases[code]] == []


def _norm(email: str) -> str:
    return email.strip().lower()


def test_shared_emails_have_the_declared_shapes(demo):
    manifest, rows, _ = demo
    person = index(rows["adresse"])
    parties = defaultdict(set)
    for vertragnr, adressnr, _ in rows["vertragpartner"]:
        parties[vertragnr].add(adressnr)
    email = {p: person[p][5] for p in person}
    for case in manifest.cases["email_case_variant"]:
        a, b = (email[p] for p in case["adressnr"])
        assert a != b and a.strip() == a and b.strip() == b and a.lower() == b.lower()
    for case in manifest.cases["email_whitespace_variant"]:
        a, b = (email[p] for p in case["adressnr"])
        assert a != b and _norm(a) == _norm(b) and (a != a.strip() or b != b.strip())
    for case in manifest.cases["couple_shared_email"]:
        a, b = case["adressnr"]
        assert _norm(email[a]) == _norm(email[b]) and {a, b} <= parties[case["vertragnr"][0]]
    unit_type = {r[0]: r[4] for r in rows["einheit"]}
    contract_unit = {r[0]: r[1] for r in rows["vertrag"]}
    for case in manifest.cases["couple_shared_email_and_parking"]:
        flat, parking = case["vertragnr"]
        assert set(case["adressnr"]) <= parties[flat] and set(case["adressnr"]) <= parties[parking]
        assert (unit_type[contract_unit[flat]], unit_type[contract_unit[parking]]) == (1, 3)
    for case in manifest.cases["email_shared_unrelated"]:
        a, b = case["adressnr"]
        assert _norm(email[a]) == _norm(email[b])
        assert not any({a, b} <= members for members in parties.values())
    # nobody else shares an address: every group of one normalised address is a recorded case
    groups = defaultdict(set)
    for p, value in email.items():
        if value and EMAIL.match(value.strip()):
            groups[_norm(value)].add(p)
    recorded = [set(c["adressnr"]) for code in ("couple_shared_email", "email_shared_unrelated")
                for c in manifest.cases[code]]
    assert [g for g in groups.values() if len(g) > 1 and not any(g <= r for r in recorded)] == []


def test_email_field_formats(demo):
    manifest, rows, _ = demo
    email = {r[0]: r[5] for r in rows["adresse"]}
    for code, sep in (("email_multiple_semicolon", ";"), ("email_multiple_comma", ",")):
        for case in manifest.cases[code]:
            raw = email[case["adressnr"][0]]
            parts = [p.strip() for p in raw.split(sep)]
            assert raw == case["raw"] and len(parts) == 2
            assert case["expected"] == next(p for p in parts if EMAIL.match(p))
    for case in manifest.cases["email_annotated"]:
        raw = email[case["adressnr"][0]]
        assert raw.startswith(case["expected"] + " (") and raw.endswith(")")
    for case in manifest.cases["email_invalid"]:
        raw = email[case["adressnr"][0]]
        assert raw == case["raw"] and not any(EMAIL.match(p.strip()) for p in re.split("[;,]", raw))
    assert "max@web.de (Büro)" in email.values()


def _digits(phone: str) -> str:
    d = re.sub(r"\D", "", phone.split("(mobil)")[0].replace("(0)", ""))
    return "0" + d[2:] if d.startswith("49") else "0" + d[4:] if d.startswith("0049") else d


def test_phone_formats_garbage_and_sharing(demo):
    manifest, rows, _ = demo
    person = index(rows["adresse"])
    column = {"telefon": 6, "mobil": 7}
    raws = {c["raw"] for c in manifest.cases["phone_german_format"]}
    assert {"0049(0)171 1234567", "(030) 123 45-6", "0176/1234567 (mobil)"} <= raws
    for case in manifest.cases["phone_german_format"]:
        assert person[case["adressnr"][0]][column[case["field"]]] == case["raw"]
        assert case["expected"].startswith("+49")
    for case in manifest.cases["phone_garbage"]:
        raw = person[case["adressnr"][0]][column[case["field"]]]
        assert raw == case["raw"] and len(re.sub(r"\D", "", raw)) < 5
    assert "keine" in {c["raw"] for c in manifest.cases["phone_garbage"]}
    groups = defaultdict(set)
    for p, row in person.items():
        for value in row[6:8]:
            if value and len(re.sub(r"\D", "", value)) >= 6:
                groups[_digits(value)].add(p)
    shared = [g for g in groups.values() if len(g) > 1]
    recorded = [set(c["adressnr"]) for c in manifest.cases["phone_shared"]]
    assert shared and sorted(map(sorted, shared)) == sorted(map(sorted, recorded))


def _filters(entity: str) -> dict:
    return {f["name"]: f for f in MAPPING["entities"][entity]["filters"]}


def test_phantom_units_trip_exactly_one_filter_of_the_mapping(demo):
    manifest, rows, _ = demo
    f = _filters("units")
    name_rx = re.compile(f["phantom_name"]["regex"])

    def tripped(row) -> set[str]:
        return ({"phantom_by_type"} if row[4] in f["phantom_type"]["in"] else set()) | \
            ({"phantom_by_flag"} if row[5] else set()) | ({"phantom_by_name"} if name_rx.search(row[3]) else set())

    unit = index(rows["einheit"])
    for code in ("phantom_by_type", "phantom_by_flag", "phantom_by_name"):
        for case in manifest.cases[code]:
            assert tripped(unit[case["einheitid"][0]]) == {code}
    listed = {u for code in ("phantom_by_type", "phantom_by_flag", "phantom_by_name")
              for u in manifest.keys(code, "einheitid")}
    assert {u for u, row in unit.items() if tripped(row)} == listed
    names = {unit[u][3] for u in manifest.keys("phantom_by_name", "einheitid")}
    assert {"Allgemeinfläche", "Abrechnungseinheit Heizung", "Dummy 999"} <= names


def test_objects_orphans_and_dangling_references(demo):
    manifest, rows, _ = demo
    obj, unit, person = index(rows["objekt"]), index(rows["einheit"]), index(rows["adresse"])
    for case in manifest.cases["orphan_unit"]:
        u = unit[case["einheitid"][0]]
        assert u[1] == case["objektnr"][0] and u[1] not in obj
    assert {u for u, row in unit.items() if row[1] not in obj} == set(manifest.keys("orphan_unit", "einheitid"))
    tests = {o for o in obj if 9000 <= o <= 9999}
    assert tests and tests == set(manifest.keys("test_object", "objektnr"))
    assert {o for o, row in obj.items() if row[1] not in (1, 2)} == set(manifest.keys("out_of_scope_object", "objektnr"))
    for code in ("test_object", "out_of_scope_object"):
        for case in manifest.cases[code]:
            assert {u for u, row in unit.items() if row[1] == case["objektnr"][0]} == set(case["einheitid"])
    contract = index(rows["vertrag"])
    for case in manifest.cases["contract_unknown_unit"]:
        assert contract[case["vertragnr"][0]][1] not in unit
    for case in manifest.cases["party_unknown_person"]:
        assert case["adressnr"][0] not in person
        assert (case["vertragnr"][0], case["adressnr"][0]) in {(r[0], r[1]) for r in rows["vertragpartner"]}


def _window_code(art, beginn, ende) -> str | None:
    window = TENANT["contract_window"]
    ref = dt.date.fromisoformat(window["reference_date"])
    first_end, last_start = ref - dt.timedelta(window["grace_days"]), ref + dt.timedelta(window["future_days"])
    if art == "L":
        return None
    if ende and ende < ref:
        return {first_end: "contract_ended_grace_edge", first_end - dt.timedelta(1): "contract_ended_beyond_grace_edge"
                }.get(ende, "contract_ended_in_grace" if ende > first_end else "contract_ended_long_ago")
    if beginn and beginn > ref:
        return {last_start: "contract_future_window_edge", last_start + dt.timedelta(1):
                "contract_future_beyond_window_edge"}.get(
            beginn, "contract_future_in_window" if beginn < last_start else "contract_future_beyond_window")
    return None


def test_contract_window_cases_follow_the_demo_tenants_window(demo):
    manifest, rows, _ = demo
    assert TENANT["contract_window"] == {"reference_date": REFERENCE_DATE.isoformat(),
                                         "future_days": manifest.future_days, "grace_days": manifest.grace_days}
    expected = defaultdict(set)
    for nr, _, art, beginn, ende in rows["vertrag"]:
        code = _window_code(art, beginn, ende)
        if code:
            expected[code].add(nr)
    codes = [c for c in CODES if c.startswith(("contract_ended", "contract_future"))]
    assert {c: set(manifest.keys(c, "vertragnr")) for c in codes} == {c: expected[c] for c in codes}
    ends = {r[4] for r in rows["vertrag"]}
    starts = {r[3] for r in rows["vertrag"]}
    assert {dt.date(2026, 5, 2), dt.date(2026, 5, 1)} <= ends and {dt.date(2026, 7, 31), dt.date(2026, 8, 1)} <= starts


def test_vacancies_owners_tenants_and_persons(demo):
    manifest, rows, _ = demo
    contract, person = index(rows["vertrag"]), index(rows["adresse"])
    parties = defaultdict(list)
    for vertragnr, adressnr, _ in rows["vertragpartner"]:
        parties[vertragnr].append(adressnr)
    pseudo_rx = re.compile(_filters("users")["vacancy_person"]["regex"])
    assert {p for p, row in person.items() if pseudo_rx.search(row[4])} == set(manifest.keys("pseudo_person", "adressnr"))
    assert "Leerstand" in {person[p][4] for p in manifest.keys("pseudo_person", "adressnr")}
    vacancies = {nr for nr, row in contract.items() if row[2] == "L"}
    assert vacancies == set(manifest.keys("vacancy_contract", "vertragnr"))
    assert all(pseudo_rx.search(person[p][4]) for v in vacancies for p in parties[v])
    for case in manifest.cases["owner_and_tenant_same_unit"]:
        e, m = (contract[v] for v in case["vertragnr"])
        assert (e[1], e[2], m[1], m[2]) == (case["einheitid"][0], "E", case["einheitid"][0], "M")
    unit = index(rows["einheit"])
    for case in manifest.cases["owner_multiple_objects"]:
        owned = {unit[contract[v][1]][1] for v, ps in parties.items()
                 if case["adressnr"][0] in ps and contract[v][2] == "E" and contract[v][1] in unit}
        assert set(case["objektnr"]) <= owned and len(owned) >= 2
    for case in manifest.cases["tenant_change"]:
        old, new = (contract[v] for v in case["vertragnr"])
        assert old[4] > REFERENCE_DATE and new[3] == old[4] + dt.timedelta(1)
    in_contract = {p for ps in parties.values() for p in ps}
    assert set(person) - in_contract == set(manifest.keys("person_without_contract", "adressnr"))
    for case in manifest.cases["name_over_70"]:
        row = person[case["adressnr"][0]]
        assert len(row[3 if case["field"] == "vorname" else 4]) > 70
    assert {p for p, row in person.items() if max(len(row[3] or ""), len(row[4])) > 70} == \
        set(manifest.keys("name_over_70", "adressnr"))
    assert all(person[p][1] == "Firma" and person[p][3] is None for p in manifest.keys("company_person", "adressnr"))
    assert all(person[p][1] in ("Eheleute", "Fam.", "Familie") for p in manifest.keys("couple_as_one_address", "adressnr"))
    assert all(re.search("[äöüÄÖÜßÇçıİşŞ]", f"{person[p][3]} {person[p][4]}")
               for p in manifest.keys("umlaut_names", "adressnr"))
    assert {"Herr", "Frau", "Herrn Dr.", "Firma", "Eheleute", "Fam."} <= {row[1] for row in person.values()}
    salutations = {str(code).strip().lower() for code in MAPPING["code_tables"]["salutations"]["values"]}
    assert {p for p, row in person.items() if (row[1] or "").strip() and row[1].strip().lower() not in salutations} \
        == set(manifest.keys("salutation_not_in_table", "adressnr"))
    assert all(person[p][1] == case["raw"] for case in manifest.cases["salutation_not_in_table"]
               for p in case["adressnr"])


def test_size_m_has_realistic_shares(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    manifest = generate(url, "M", seed=1)
    assert manifest.counts["einheit"] >= 20_000 and manifest.counts["adresse"] == 50_000
    persons = manifest.counts["adresse"]
    sharing = len(manifest.keys("couple_shared_email", "adressnr")) + len(manifest.keys("email_shared_unrelated", "adressnr"))
    assert 0.01 < sharing / persons < 0.10
    for code in ("email_invalid", "email_annotated", "email_multiple_semicolon", "phantom_by_flag", "vacancy_contract"):
        assert 0 < len(manifest.cases[code]) < 0.02 * persons, code


# -- PostgreSQL ----------------------------------------------------------------------------------------

def test_postgres_holds_the_same_rows_as_sqlite(demo, pg_schema):
    manifest, rows, _ = demo
    pg_manifest = generate(PG_URL, "S", schema=pg_schema)
    generate(PG_URL, "S", schema=pg_schema)                     # replaced, not appended
    assert read_all(PG_URL, pg_schema) == rows
    assert pg_manifest.as_dict() == manifest.as_dict()


def _plain(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (Decimal, float)):
        return float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def test_mapping_queries_run_unchanged_on_sqlite_and_postgres(demo, pg_schema):
    manifest, _, path = demo
    generate(PG_URL, "S", schema=pg_schema)
    expected = {"buildings": "objekt", "units": "einheit", "users": "adresse", "occupancies": "vertragpartner"}
    results = {}
    for name, url in (("sqlite", f"sqlite:///{path}"), ("postgresql", PG_URL)):
        engine = create_engine(url)
        with engine.connect() as conn:
            if name == "postgresql":
                conn.exec_driver_sql(f'SET search_path TO "{pg_schema}"')
            for entity, spec in MAPPING["entities"].items():
                result = conn.exec_driver_sql(spec["query"])
                columns = [c.lower() for c in result.keys()]
                results[name, entity] = columns, sorted(tuple(map(_plain, r)) for r in result)
        engine.dispose()
    for entity, table in expected.items():
        columns, rows = results["sqlite", entity]
        assert results["postgresql", entity] == (columns, rows), entity
        assert len(rows) == manifest.counts[table], entity


def test_a_copy_of_the_demo_tenant_plans_the_postgres_demo_with_the_documented_url(demo, pg_schema, tmp_path):
    """docs/demo-erp.md says how a tenant reads the demo generated into a PostgreSQL schema (the
    URL's search_path); `idwell-sync plan` with that URL reads and finds what it does from SQLite."""
    import subprocess
    import sys
    doc = (ROOT / "docs" / "demo-erp.md").read_text("utf-8")
    found = re.search(r"url: (postgresql\S*options=-csearch_path%3D)(\w+)", doc)
    assert found, "docs/demo-erp.md shows the URL of the demo in a PostgreSQL schema"
    _, _, path = demo
    generate(PG_URL, "S", schema=pg_schema)
    (tmp_path / "tenants").mkdir()
    (tmp_path / "mappings").symlink_to(ROOT / "mappings")
    summaries = {}
    for name, url in (("pgdemo", found.group(1) + pg_schema), ("litedemo", f"sqlite:///{path}")):
        tenant = dict(TENANT, id=name, source={"type": "sql", "url": url},
                      target={"type": "local", "path": f"var/portal/{name}.sqlite"})
        (tmp_path / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump(tenant, sort_keys=False), "utf-8")
        done = subprocess.run([sys.executable, "-m", "engine", "plan", name, "--json", "--no-out"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        summaries[name] = json.loads(done.stdout)
    pg, lite = summaries["pgdemo"], summaries["litedemo"]
    assert {e: v["extracted"] for e, v in pg["entities"].items()} == \
           {e: v["extracted"] for e, v in lite["entities"].items()}
    assert pg["findings"] == lite["findings"] and pg["writes"] == lite["writes"] > 0
