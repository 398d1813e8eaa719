"""The files the project ships: tenants/, mappings/ and the examples in docs/ validate, start
with a modeline that points at the schema, and docs/config.md's reference matches the schemas."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from engine.config import validate_paths
from engine.config._docs import render, update

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*REPO.glob("tenants/*.yaml"), *REPO.glob("mappings/*.yaml"), *REPO.glob("docs/**/*.yaml")])
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def _errors(problems):
    return [str(p) for p in problems if p.severity == "error"]


def test_shipped_tenants_mappings_and_docs_files_validate(monkeypatch):
    monkeypatch.chdir(REPO)
    assert SHIPPED
    assert _errors(validate_paths([p.relative_to(REPO) for p in SHIPPED])) == []


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_yaml_starts_with_a_modeline_to_the_schema(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{path.name}: the first line must be '# yaml-language-server: $schema=...'"
    target = (path.parent / match.group(1)).resolve()
    assert target.parent == (REPO / "schema").resolve() and target.is_file()


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_yaml_examples_in_the_docs_validate(tmp_path, monkeypatch):
    """Each ```yaml block in docs/*.md that starts with a modeline is a whole file and must
    validate (tenants against the shipped mappings)."""
    blocks = [b for doc in sorted((REPO / "docs").glob("*.md")) for b in _yaml_blocks(doc.read_text(encoding="utf-8"))
              if MODELINE.match(b.splitlines()[0])]
    assert blocks, "docs/config.md should carry a worked example"
    (tmp_path / "tenants").mkdir()
    (tmp_path / "mappings").mkdir()
    for i, block in enumerate(blocks):
        folder = "mappings" if "mapping.schema.json" in block.splitlines()[0] else "tenants"
        name = re.search(r"^(?:id|name): (\S+)$", block, re.M).group(1)
        (tmp_path / folder / f"{name}.yaml").write_text(block, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert _errors(validate_paths(["tenants", "mappings"], mapping_dirs=[REPO / "mappings"])) == []


def test_docs_reference_matches_the_schemas():
    current = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert update(current) == current, "docs/config.md is stale: run python -m engine.config._docs"


def test_docs_reference_mentions_every_schema_property():
    from engine.config import _schema
    text = render()
    names = {name for kind in _schema.SCHEMA_FILES for name in _walk_names(_schema.schema(kind))}
    assert sorted(n for n in names if f"| `{n}` |" not in text) == []


def _walk_names(node):
    if isinstance(node, dict):
        yield from (node.get("properties") or {})
        for key, value in node.items():
            if key != "examples":
                yield from _walk_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_names(value)


def test_ci_template_and_pre_commit_hook_call_validate():
    """Both integrations call the console script's validate command, which must exist."""
    import tomllib

    import yaml

    from engine.cli import COMMANDS
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    entry = hooks[0]["entry"].split()
    assert entry[0] in scripts and entry[1] in COMMANDS and hooks[0]["pass_filenames"] is False
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "validate-tenants.yml").read_text())
    steps = " ".join(step.get("run", "") for step in workflow["jobs"]["validate"]["steps"])
    assert "idwell-sync validate --format github" in steps


def test_the_documented_defaults_are_what_a_tenant_that_leaves_them_out_gets(tmp_path):
    """docs/config.md's Default column, read from the model's dataclasses, against tenants that
    leave every optional key out, compiled as a run compiles them: a compiler that put another
    value in place of a left-out key would make the column wrong."""
    import yaml
    from engine.config import load_tenant
    from engine.config._docs import defaults
    (tmp_path / "tenants").mkdir()
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    common = {"mapping": "domus-sql", "target": {"type": "local", "path": "p.sqlite"},
              "dedup": {"email": {}, "phone": {}}, "contract_window": {}, "rules": {}, "deletion": {},
              "schedule": {"cron": "30 3 * * *"}}
    sql = {"type": "sql", "host": "h", "database": "d", "username": "u", "password": "${env:PW}"}
    api = {"type": "api", "base_url": "https://api.example/v1", "auth": {"type": "api_key", "key": "${env:KEY}"}}
    compiled = {}
    for name, source, mapping, target in (
            ("s", sql, "domus-sql", {"type": "local", "path": "p.sqlite"}),
            ("a", api, "domus-api", {"type": "idwell", "base_url": "https://portal.example/import/v1",
                                     "token": "${env:TOKEN}"})):
        path = tmp_path / "tenants" / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**common, "id": name, "source": source, "mapping": mapping, "target": target}))
        compiled[name] = load_tenant(path)
    s, a = compiled["s"], compiled["a"]
    objects = {"source (type: sql)": (s.source, s.source.server), "source (type: api)": (a.source,),
               "source.auth (type: api_key)": (a.source.auth,), "dedup.email": (s.email_dedup,),
               "dedup.phone": (s.phone_dedup,), "contract_window": (s.window,), "rules": (s.rules,),
               "deletion": (s.deletion,), "target (type: idwell)": (a.target,), "schedule": (s.schedule,),
               "entities.<entity>.paginator": (a.entities["buildings"].paginator,)}
    checked = 0
    for title, targets in objects.items():
        for key, documented in defaults(title).items():
            got = next(getattr(t, key) for t in targets if hasattr(t, key))
            assert got == documented, f"{title}.{key}: documented {documented!r}, a tenant gets {got!r}"
            checked += 1
    assert checked >= 25
