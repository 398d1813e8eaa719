"""A value of the wrong type anywhere gives an error message, never a traceback: the semantic
checks run on schema-invalid data too (to report everything at once) and must cope with it."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from engine.config import validate_paths

CASES = Path(__file__).parent / "config"


def _paths(data, path=()):
    if path:
        yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, path + (i,))


def _wrong(value):
    """A value of a JSON type that the place of `value` does not accept."""
    return [value] if isinstance(value, dict) else {"x": value}


def _mutations(path: Path):
    data = yaml.safe_load(path.read_text())
    for where in _paths(data):
        changed = copy.deepcopy(data)
        node = changed
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = _wrong(node[where[-1]])
        yield where, changed


@pytest.mark.parametrize("case, folder", [
    ("valid/sql-server-full.yaml", "tenants"), ("valid/overrides-merge.yaml", "tenants"),
    ("valid/api-oauth.yaml", "tenants"), ("mappings/sql-basic.yaml", "mappings")])
def test_wrong_types_anywhere_give_errors_not_tracebacks(case, folder, tmp_path):
    (tmp_path / "tenants").mkdir()
    shutil.copytree(CASES / "mappings", tmp_path / "mappings")
    source = CASES / case
    target = tmp_path / folder / source.name
    missed = []
    for where, data in _mutations(source):
        target.write_text(yaml.safe_dump(data, sort_keys=False))
        if not any(p.severity == "error" for p in validate_paths([target])):
            missed.append(where)
    assert missed == []
