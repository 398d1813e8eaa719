"""The JSON Schemas: shipped in the installed package, complete for editors (every property
described, with an example that is itself valid), strict (unknown keys are errors)."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine.config import _schema
from engine.config._docs import resolve

REPO = Path(__file__).resolve().parent.parent


def test_schemas_are_loaded_from_the_installed_package():
    package = resources.files("engine.schema")
    for kind, name in _schema.SCHEMA_FILES.items():
        assert _schema.schema(kind) == json.loads(package.joinpath(name).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(_schema.schema(kind))


def test_validation_does_not_depend_on_the_source_tree(tmp_path):
    """Run from an empty folder: the schemas come from the package, not from ./schema."""
    code = ("from engine.config import _schema\n"
            "print(_schema.validate('tenant', {'id': 'x', 'mapping': 'm', 'source': {'type': 'sql', 'pasword': 1}}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Did you mean 'password'?" in done.stdout


def _properties(kind: str):
    """(pointer, name, property schema, file) for every property in a schema."""
    file = _schema.SCHEMA_FILES[kind]

    def walk(node, pointer):
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                yield f"{pointer}/properties/{name}", name, prop
            for key, value in node.items():
                if key not in ("examples", "if"):   # `if` only tests the dispatch key
                    yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{pointer}/{i}")
    for pointer, name, prop in walk(_schema.schema(kind), "#"):
        yield pointer, name, prop, file


ALL = [(kind, pointer) for kind in _schema.SCHEMA_FILES for pointer, *_ in _properties(kind)]


@pytest.mark.parametrize("kind", list(_schema.SCHEMA_FILES))
def test_every_property_has_a_description_and_a_valid_example(kind):
    missing, invalid = [], []
    for pointer, name, prop, file in _properties(kind):
        resolved, _ = resolve(prop, file)
        if not resolved.get("description") or not resolved.get("examples"):
            missing.append(pointer)
            continue
        validator = _schema._validator(kind).evolve(schema={"$ref": _schema.BASE + file + pointer})
        invalid += [f"{pointer}: {example!r}" for example in resolved["examples"]
                    if list(validator.iter_errors(example))]
    assert missing == [] and invalid == []


@pytest.mark.parametrize("kind", list(_schema.SCHEMA_FILES))
def test_unknown_keys_are_errors_everywhere(kind):
    """Every object schema with fixed keys forbids others; a `type` dispatcher (allOf of
    if/then) leaves that to its branches, which forbid them."""
    def walk(node, pointer):
        if isinstance(node, dict):
            if "properties" in node and "allOf" not in node:
                yield pointer, node.get("additionalProperties")
            for key, value in node.items():
                if key not in ("examples", "if"):
                    yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{pointer}/{i}")
    open_objects = [p for p, extra in walk(_schema.schema(kind), "#") if extra is not False]
    assert open_objects == []


def test_a_type_dispatcher_rejects_unknown_keys_through_its_branch():
    raws = _schema.validate("tenant", {"id": "x", "mapping": "m", "source": {"type": "sql", "url": "u", "colour": 1}})
    assert [(r.path, r.message) for r in raws] == [
        (("source", "colour"), "unknown field 'colour'. Valid fields are: 'type', 'url', 'host', 'port', 'database', "
                               "'username', 'password', 'driver', 'encrypt', 'trust_server_certificate', "
                               "'host_name_in_certificate', 'login_timeout', 'query_timeout', 'application_intent', "
                               "'tds_version', 'batch_size', 'params'")]
