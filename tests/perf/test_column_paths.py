"""The fast column-wise paths give exactly what the record-by-record paths give.

The engine maps a batch of SQL rows column by column (engine.mapping_columns._ColumnBindings),
normalises a column at a time and checks only the records that may break a rule
(engine.contract.rules.suspects). These tests hold each fast path against the plain one on the
demo ERP's rows, with batches cut to awkward sizes, rows repeated (duplicate keys) and keys
emptied, so that a fast path that drops a finding, reorders one or keeps a record it should not
fails here.
"""
from __future__ import annotations

import datetime as dt
import random
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from engine.config import load_tenant
from engine.contract import RESOURCES, record_schema
from engine.contract.rules import check_record, suspects
from engine.demo import REFERENCE_DATE, generate
from engine.entity_data import EntityData
from engine.mapping import Mapper, kept_values
from engine.references import occupancy_gate, window_gate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(tenant, ERP connection) for the S demo ERP and tenants/demo.yaml."""
    root = tmp_path_factory.mktemp("columns")
    erp = root / "erp.sqlite"
    generate(f"sqlite:///{erp}", size="S", seed=42)
    shutil.copytree(REPO / "mappings", root / "mappings")
    (root / "tenants").mkdir()
    doc = yaml.safe_load((REPO / "tenants" / "demo.yaml").read_text("utf-8"))
    doc["source"]["url"] = f"sqlite:///{erp}"
    doc["target"]["path"] = str(root / "portal.sqlite")
    path = root / "tenants" / "demo.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
    connection = sqlite3.connect(erp)
    yield load_tenant(path), connection
    connection.close()


def rows_of(connection, query: str) -> tuple[list[str], list[tuple]]:
    cursor = connection.execute(query)
    return [d[0] for d in cursor.description], cursor.fetchall()


def map_both_ways(mapping, columns, rows, gate, batch: int):
    """(EntityData, findings) mapped column-wise and record by record, in batches of `batch` rows."""
    results = []
    for columnwise in (True, False):
        out, findings = EntityData(mapping.name), []
        mapper = Mapper(mapping, columns, out, findings, gate)
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            mapper.map_rows(chunk) if columnwise else mapper._map_each(chunk)
        results.append((out, findings))
    return results


def assert_same(fast, plain):
    """Compared part by part, reporting the first difference only (a diff of thousands of
    records would be unreadable)."""
    (a, fa), (b, fb) = fast, plain
    parts = {
        "records": ([(k, r.key, r.contract, list(r.data.items())) for k, r in a.records.items()],
                    [(k, r.key, r.contract, list(r.data.items())) for k, r in b.records.items()]),
        "excluded": (list(a.excluded.items()), list(b.excluded.items())),
        "counts": ((a.extracted, a.filtered, a.unkeyed), (b.extracted, b.filtered, b.unkeyed)),
        "gated": (a.gated, b.gated),
        "findings": (fa, fb),
    }
    for part, (x, y) in parts.items():
        if x != y:
            first = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y))) \
                if isinstance(x, list) else None
            shown = (x, y) if first is None else (x[first:first + 2], y[first:first + 2], len(x), len(y))
            pytest.fail(f"{part} differ: column-wise vs record by record: {shown!r}"[:3000], pytrace=False)


@pytest.mark.parametrize("entity", RESOURCES)
@pytest.mark.parametrize("batch", [1, 2, 37, 10_000])
def test_column_mapping_equals_record_by_record(demo, entity, batch):
    tenant, connection = demo
    mapping = tenant.entities[entity]
    columns, rows = rows_of(connection, mapping.query)
    rng = random.Random(f"{entity}{batch}")
    rows = rows + rng.sample(rows, 5)                      # the same ERP key again: duplicate_key
    key_at = [c.casefold() for c in columns].index(mapping.key[0].casefold())
    rows.insert(3, tuple(None if i == key_at else v for i, v in enumerate(rows[3])))  # no external_id
    gate = None
    if entity == "occupancies":
        gate = window_gate(tenant.window, REFERENCE_DATE)
    elif entity == "users":
        occ = tenant.entities["occupancies"]
        occ_columns, occ_rows = rows_of(connection, occ.query)
        occupancies = EntityData("occupancies")
        Mapper(occ, occ_columns, occupancies, [], None).map_rows(occ_rows[::2])
        gate = occupancy_gate(occupancies)
    fast, plain = map_both_ways(mapping, columns, rows, gate, batch)
    assert fast[1], "the rows must give findings (filters, duplicates, an empty key)"
    assert_same(fast, plain)


def map_in_halves(mapping, columns, rows, gate, batch: int, name: str):
    """((EntityData, findings), kept_values) mapped in two halves (Mapper.first_half, every
    batch's, then second_half), as a run's contracts are when the users' gate is sent early."""
    out, findings = EntityData(mapping.name), []
    mapper = Mapper(mapping, columns, out, findings, gate)
    halves = [mapper.first_half(rows[start:start + batch], (name,)) for start in range(0, len(rows), batch)]
    known = kept_values((half for batch_halves in halves for half in batch_halves), name)
    for batch_halves in halves:
        mapper.second_half(batch_halves)
    return (out, findings), known


EARLY_FIELD = {"buildings": "city", "units": "building_id", "users": "email", "occupancies": "user_id"}
EARLY_SOURCE = {"buildings": "ort", "units": "objektnr", "users": "email"}   # the occupancies' is in their key


@pytest.mark.parametrize("entity", RESOURCES)
@pytest.mark.parametrize("batch", [1, 37, 10_000])
def test_mapping_in_two_halves_equals_mapping_at_once(demo, entity, batch):
    """The first half tells a field's values over the records to be made (the first of a
    duplicate key, not the later ones); the second half then makes exactly the records, exclusions
    and findings that mapping at once makes."""
    tenant, connection = demo
    mapping = tenant.entities[entity]
    columns, rows = rows_of(connection, mapping.query)
    again = random.Random(f"{entity}{batch}").sample(rows, 5)      # duplicate keys, the field changed
    source = [c.casefold() for c in columns].index(EARLY_SOURCE[entity]) if entity in EARLY_SOURCE else None
    rows = rows + [tuple("changed" if i == source else v for i, v in enumerate(row)) for row in again]
    gate = window_gate(tenant.window, REFERENCE_DATE) if entity == "occupancies" else None
    name = EARLY_FIELD[entity]
    at_once = map_both_ways(mapping, columns, rows, gate, batch)[0]
    in_halves, known = map_in_halves(mapping, columns, rows, gate, batch, name)
    assert at_once[1], "the rows must give findings (filters, duplicates)"
    assert_same(in_halves, at_once)
    assert known == {r.data[name] for r in at_once[0].records.values()}
    assert "changed" not in known, "the first row of a key makes its record, not a later one"
    if entity == "occupancies":
        assert known == occupancy_gate(at_once[0])[1].wanted


def test_a_field_cannot_be_told_early_where_a_batch_is_mapped_record_by_record(demo, monkeypatch):
    """A slice whose first half raises is mapped row by row: its records are known only once
    they are made, so nothing is told early (the run then takes the gate from the records)."""
    from engine import mapping_columns
    tenant, connection = demo
    mapping = tenant.entities["occupancies"]
    columns, rows = rows_of(connection, mapping.query)
    first, calls = mapping_columns._ColumnBindings.first, []

    def first_but_the_third_raises(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise TypeError("a value no column function expects")
        return first(self, *args, **kwargs)
    gate = window_gate(tenant.window, REFERENCE_DATE)
    at_once = map_both_ways(mapping, columns, rows, gate, 10)[0]
    monkeypatch.setattr(mapping_columns._ColumnBindings, "first", first_but_the_third_raises)
    in_halves, known = map_in_halves(mapping, columns, rows, gate, 10, "user_id")
    assert known is None
    assert_same(in_halves, at_once)


def test_a_gate_without_a_column_form_is_asked_record_by_record(demo):
    tenant, connection = demo
    mapping = tenant.entities["occupancies"]
    columns, rows = rows_of(connection, mapping.query)
    _, gate = window_gate(tenant.window, REFERENCE_DATE)
    plain_gate = (("start_date", "end_date"), lambda data: gate(data))
    assert_same(*map_both_ways(mapping, columns, rows, plain_gate, 100))


def test_a_batch_that_raises_column_wise_is_mapped_record_by_record(demo):
    """A value no column function expects (here a list in a text column) makes the batch take the
    row path, which gives what it always gave, or raises what it always raised."""
    tenant, connection = demo
    mapping = tenant.entities["buildings"]
    columns, rows = rows_of(connection, mapping.query)
    at = [c.casefold() for c in columns].index("ort")
    rows[5] = tuple(["Köln", "Bonn"] if i == at else v for i, v in enumerate(rows[5]))
    assert_same(*map_both_ways(mapping, columns, rows, None, 1000))


VALUES = [None, "", " ", "x", "a" * 71, "a" * 201, "DE", "de", "xx", "mr", "family", "owner", "tenant",
          "apartment", "+49301234567", "+4930", "030 1234567", "max@web.de", " max@web.de ", "max@@web",
          "max@web", "2024-02-30", "2024-02-01", "2024-2-1", 0, 1, -1, 2.5, -0.5, float("nan"), True, False,
          Decimal("1.5"), dt.date(2024, 2, 1), [], {}, ["x"]]


@pytest.mark.parametrize("entity", RESOURCES)
def test_suspects_never_miss_a_record_the_check_rejects(entity):
    rng = random.Random(entity)
    names = list(record_schema(entity)["properties"])
    for shape in ("spec fields", "one missing", "one unknown"):
        records = []
        for _ in range(400):
            record = {name: rng.choice(VALUES) if rng.random() < 0.3 else rng.choice(["ok", None, 1])
                      for name in names}
            if shape == "one missing" and rng.random() < 0.1:
                record.pop(rng.choice(names))
            if shape == "one unknown" and rng.random() < 0.1:
                record["unknown"] = 1
            records.append(record)
        flagged = set(suspects(entity, records))
        rejected = {i for i, r in enumerate(records) if check_record(entity, r)}
        assert rejected <= flagged
        assert rejected, "the random records must include some the check rejects"


@pytest.mark.parametrize("entity", RESOURCES)
def test_valid_records_are_not_suspects(entity):
    """The point of the fast path: records that pass the check are not re-checked."""
    valid = {"buildings": {"external_id": "1", "name": "Haus", "street": None, "house_number": "1",
                           "postal_code": "50667", "city": "Köln", "country": "DE"},
             "units": {"external_id": "2", "building_id": "1", "number": "001", "name": "Whg 1",
                       "type": "apartment", "floor": None, "area_m2": 71.5},
             "users": {"external_id": "3", "salutation": "mr", "title": None, "first_name": "Hans",
                       "last_name": "Müller", "email": "hans@web.de", "phone": "+49301234567",
                       "mobile": None, "language": "de"},
             "occupancies": {"external_id": "4", "user_id": "3", "unit_id": "2", "role": "owner",
                             "start_date": "2020-01-01", "end_date": None}}[entity]
    assert check_record(entity, valid) == []
    assert suspects(entity, [dict(valid) for _ in range(50)]) == []


def test_a_login_from_the_e_mail_fast_path_always_passes_the_format_rule():
    """normalize_entity does not re-check the format of such logins (engine.normalize), so every
    text the fast-path regex accepts must pass the import API's e-mail format rule."""
    from engine.contract.rules import _FORMATS
    from engine.expr.emails import _SIMPLE
    passes = _FORMATS["email"][0]
    rng = random.Random(11)
    alphabet = "abcz09_%+-.@" + "xn--"
    matched = 0
    for _ in range(200000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 16)))
        if rng.random() < 0.5:
            text = text.replace("@", "") + "@" + rng.choice(["web", "a-b", "x.y", "t-online"]) + "." + rng.choice(["de", "com", "co.uk"])
        if _SIMPLE.fullmatch(text):
            matched += 1
            assert passes(text), text
    assert matched > 5000


def test_repeated_texts_share_one_object_and_other_values_stay_as_they_are(demo):
    """Column-wise mapping gives the records of a run one object per distinct text of a field
    (names, building references), which is what keeps a large run's records smaller; the
    values stay equal to the row path's, numbers keep their type (1 and 1.0 are equal as dict
    keys, but not the same value for the portal), and a field of mostly distinct texts
    (e-mails) is not collected."""
    from engine import mapping_columns
    tenant, connection = demo
    columns, rows = rows_of(connection, tenant.entities["units"].query)
    (columnwise, _), (rowwise, _) = map_both_ways(tenant.entities["units"], columns, rows, None, 64)
    assert columnwise.records == rowwise.records
    buildings = [r.data["building_id"] for r in columnwise.records.values()]
    assert len(set(map(id, buildings))) == len(set(buildings)) < len(buildings)
    areas = [r.data["area_m2"] for r in columnwise.records.values()]
    assert list(map(type, areas)) == [type(r.data["area_m2"]) for r in rowwise.records.values()]

    shared = mapping_columns._SharedTexts()
    floats = shared([1.0, 2.5, None])
    assert floats == [1.0, 2.5, None] and type(shared([1, 2])[0]) is int and type(floats[0]) is float
    unique = [f"person{i}@example.org" for i in range(mapping_columns.SHARED_PROBE)]
    assert shared(unique) == unique
    assert not shared.on                  # mostly distinct: no longer looked at
    names = [("Müller" + "x")[:-1] for _ in range(100)]     # equal texts, separate objects
    sharing = mapping_columns._SharedTexts()
    assert len(set(map(id, sharing(names)))) == 1 and sharing.on
