"""The compiled record rules give the same verdicts as a JSON Schema validator on the spec."""
from __future__ import annotations

import random

import jsonschema
import pytest

from engine.contract import RESOURCES, record_schema
from engine.contract.rules import check_record, suspects

VALID = {
    "buildings": {"external_id": "B1", "name": "Lindenstraße 4", "street": "Lindenstraße", "house_number": "4",
                  "postal_code": "10115", "city": "Berlin", "country": "DE"},
    "units": {"external_id": "U1", "building_id": "B1", "number": "007", "name": None, "type": "apartment",
              "floor": "2. OG", "area_m2": 71.5},
    "users": {"external_id": "P1", "salutation": "ms", "title": "Dr.", "first_name": "Grete", "last_name": "Müller",
              "email": "grete@web.de", "phone": "+4930123456", "mobile": None, "language": "de"},
    "occupancies": {"external_id": "C1", "user_id": "P1", "unit_id": "U1", "role": "owner",
                    "start_date": "2020-01-01", "end_date": None},
}

# Values tried in every field. Strings with an '@' are only well-formed addresses here, because
# python-jsonschema's e-mail check only looks for an '@' (the rules are stricter on purpose, below).
POOL = [None, "", "x", "a" * 69, "a" * 70, "a" * 71, "a" * 200, "a" * 201, 0, -1, 3, 1.5, -0.5, 10**20,
        True, False, [], {}, ["de"], "DE", "de", "De", "en", "fr", "D", "DEU", "apartment", "Apartment", "other",
        "parking", "tenant", "owner", "Owner", "mr", "ms", "mx", "company", "family", "+4917112345678",
        "+49171", "+0171234567", "0171 1234567", "+491711234567890123", "2024-02-29", "2023-02-29",
        "2024-1-01", "24-01-01", "2024-01-01T00:00", "max@web.de", "grete.müller@straße.de", "no-at-sign"]


def _flagged_by_jsonschema(validator: jsonschema.protocols.Validator, record: dict) -> set[str]:
    fields: set[str] = set()
    for error in validator.iter_errors(record):
        if error.path:
            fields.add(str(error.path[0]))
        elif error.validator == "required":
            fields.add(error.message.split("'")[1])
        elif error.validator == "additionalProperties":
            fields.update(set(record) - set(error.schema["properties"]))
        else:
            fields.add("")
    return fields


def _mutate(rng: random.Random, entity: str) -> dict:
    record = dict(VALID[entity])
    names = list(record)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        record[rng.choice(names)] = rng.choice(POOL)
    if rng.random() < 0.1:
        del record[rng.choice(names)]
    if rng.random() < 0.05:
        record[rng.choice(["Email", "note", "building"])] = "x"
    return record


@pytest.mark.parametrize("entity", RESOURCES)
def test_verdicts_match_a_json_schema_validator(entity):
    schema = record_schema(entity)
    cls = jsonschema.validators.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema"})
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    rng = random.Random(f"rules-{entity}")
    valid = invalid = 0
    for _ in range(3000):
        record = _mutate(rng, entity)
        expected = _flagged_by_jsonschema(validator, record)
        got = {v.field for v in check_record(entity, record)}
        assert got == expected, (record, [v.message for v in check_record(entity, record)])
        valid += not expected
        invalid += bool(expected)
    assert valid > 300 and invalid > 300      # the sample exercised both verdicts


@pytest.mark.parametrize("entity", RESOURCES)
def test_the_full_valid_records_pass(entity):
    assert check_record(entity, VALID[entity]) == []


def test_limits_come_from_the_spec():
    limit = record_schema("users")["properties"]["last_name"]["maxLength"]
    ok = dict(VALID["users"], last_name="n" * limit)
    too_long = dict(VALID["users"], last_name="n" * (limit + 1))
    assert check_record("users", ok) == []
    [violation] = check_record("users", too_long)
    assert (violation.field, violation.code) == ("last_name", "max_length")
    assert str(limit) in violation.message


@pytest.mark.parametrize("entity, changes, field, code", [
    ("users", {"last_name": ""}, "last_name", "min_length"),
    ("users", {"phone": "030 123456"}, "phone", "pattern"),
    ("users", {"language": "fr"}, "language", "enum"),
    ("users", {"salutation": "Herr"}, "salutation", "enum"),
    ("users", {"email": "keine"}, "email", "format"),
    ("users", {"first_name": 12}, "first_name", "type"),
    ("users", {"emial": "x@y.de"}, "emial", "unknown_field"),
    ("units", {"area_m2": -3}, "area_m2", "minimum"),
    ("units", {"area_m2": True}, "area_m2", "type"),
    ("units", {"area_m2": float("nan")}, "area_m2", "type"),       # JSON has no NaN nor Infinity
    ("units", {"area_m2": float("inf")}, "area_m2", "type"),
    ("occupancies", {"end_date": "31.12.2024"}, "end_date", "format"),
    ("occupancies", {"start_date": "2023-02-29"}, "start_date", "format"),
    ("buildings", {"country": "de"}, "country", "pattern"),
])
def test_each_rule_names_the_field(entity, changes, field, code):
    [violation] = check_record(entity, dict(VALID[entity], **changes))
    assert (violation.field, violation.code) == (field, code)
    assert repr(field) in violation.message


def test_suspects_include_a_nan_or_an_infinite_number():
    records = [dict(VALID["units"], area_m2=a) for a in (71.5, float("nan"), 60.0, float("inf"), -2.0)]
    assert suspects("units", records) == [1, 3, 4]


def test_missing_required_fields_are_each_reported():
    record = {"external_id": "C1", "role": "tenant"}
    got = {(v.field, v.code) for v in check_record("occupancies", record)}
    assert got == {("user_id", "required"), ("unit_id", "required")}


def test_not_an_object():
    [violation] = check_record("buildings", ["B1"])
    assert violation.code == "type"


@pytest.mark.parametrize("field, value", [
    ("phone", "+4930123456\n"),      # ECMA '$' does not match before a trailing newline
    ("email", "max@"),               # python-jsonschema accepts any string with an '@'
    ("email", "@web.de"),
    ("email", "max mustermann@web.de"),
    ("email", "max@localhost"),
])
def test_stricter_than_python_jsonschema_where_it_is_lax(field, value):
    [violation] = check_record("users", dict(VALID["users"], **{field: value}))
    assert violation.field == field


def test_unknown_resource_lists_the_valid_ones():
    with pytest.raises(ValueError, match="buildings, units, users, occupancies"):
        check_record("contracts", {})
