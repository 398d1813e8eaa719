"""The import API's contract (idwell-import-api.yaml, shipped in this package), as data.

Everything the engine knows about the portal's records is derived from the spec here: the
resources, their fields, required fields, length limits, enums and patterns. Nothing restates
them by hand.
"""
from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

SPEC_FILE = "idwell-import-api.yaml"
RESOURCES: tuple[str, ...] = ("buildings", "units", "users", "occupancies")
_SCHEMA_NAMES = {"buildings": "Building", "units": "Unit", "users": "User", "occupancies": "Occupancy"}


@cache
def spec() -> dict[str, Any]:
    text = resources.files(__name__).joinpath(SPEC_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def record_schema(entity: str) -> dict[str, Any]:
    """The JSON Schema of one resource's record (e.g. 'users' -> components.schemas.User)."""
    return spec()["components"]["schemas"][_SCHEMA_NAMES[entity]]


def fields(entity: str) -> tuple[str, ...]:
    return tuple(record_schema(entity)["properties"])


def required(entity: str) -> tuple[str, ...]:
    return tuple(record_schema(entity).get("required", ()))


def email_key(value: Any) -> str | None:
    """The key of the portal's unique-login rule: trimmed and lower-cased; None for no (or a
    blank) address. The local store enforces it, the plan releases addresses by it."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower()
    return key or None


def references(entity: str) -> dict[str, str]:
    """Fields that hold another resource's external_id: field -> resource."""
    return {"units": {"building_id": "buildings"},
            "occupancies": {"user_id": "users", "unit_id": "units"}}.get(entity, {})


def not_utf8(record: dict[str, Any]) -> str | None:
    """The first field of a record whose text UTF-8 cannot encode (a lone surrogate, which an API
    source's JSON '\\ud800' gives), or None: the portal cannot read such a record."""
    for name, value in record.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None
