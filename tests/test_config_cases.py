"""The example files in tests/config: every valid file validates, every invalid file yields
exactly the problems its `# expect:` lines state, verbatim and in order (best first).

Adding a case means adding a file: a tenant or mapping (told apart by its modeline), a comment
saying what it shows, and one `# expect: <problem as validate prints it>` line per problem, with
paths relative to tests/config (tenants there find their mapping in tests/config/mappings/).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import validate_paths

CASES = Path(__file__).parent / "config"
VALID = sorted((CASES / "valid").glob("*.yaml"))
INVALID = sorted((CASES / "invalid").glob("*.yaml"))


def expected(path: Path) -> list[str]:
    return [line[len("# expect: "):].rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines(True)
            if line.startswith("# expect: ")]


def problems(path: Path, monkeypatch: pytest.MonkeyPatch) -> list:
    monkeypatch.chdir(CASES)   # messages name files relative to the working directory
    return validate_paths([path.relative_to(CASES)])


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_case(path, monkeypatch):
    found = problems(path, monkeypatch)
    assert [p for p in found if p.severity == "error"] == []
    assert [str(p) for p in found] == expected(path)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_case(path, monkeypatch):
    lines = expected(path)
    assert lines, f"{path.name} has no '# expect:' line"
    found = problems(path, monkeypatch)
    assert [str(p) for p in found] == lines
    assert any(p.severity == "error" for p in found)


def test_there_are_enough_invalid_cases():
    assert len(INVALID) >= 30


def test_case_mappings_validate(monkeypatch):
    monkeypatch.chdir(CASES)
    assert validate_paths(["mappings"]) == []
