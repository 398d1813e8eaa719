"""Config: load, validate and compile tenant and mapping files (see engine.config.model).

    load_tenant(path, mapping_dirs=None) -> Tenant     raises ConfigError with every problem
    validate_paths(paths, mapping_dirs=None) -> [Problem]   files or folders, best first

The formats are defined by schema/tenant.schema.json and schema/mapping.schema.json (shipped
as `engine.schema`) and described in docs/config.md.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from engine.config._load import check_mapping_file, check_tenant_file, kind_of
from engine.config._problem import Problem, sort_problems
from engine.config._yaml import display_name, load_document
from engine.config.model import Tenant
from engine.errors import ConfigError

__all__ = ["load_tenant", "validate_paths", "collect_files", "Problem", "ConfigError"]

log = logging.getLogger(__name__)
YAML_SUFFIXES = (".yaml", ".yml")


def load_tenant(path: str | Path, *, mapping_dirs: list[Path] | None = None) -> Tenant:
    """Validate a tenant file and its mapping and compile them. Secrets stay unresolved.

    The mapping `name` is looked up as <dir>/<name>.yaml in `mapping_dirs`, then in
    <tenant file's folder>/../mappings/. Raises ConfigError carrying every problem, best first.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError([], f"tenant file not found: {path}")
    problems, tenant = check_tenant_file(path, [Path(d) for d in mapping_dirs or []])
    if tenant is None:
        raise ConfigError(problems)
    for problem in problems:
        log.warning("%s", problem)
    return tenant


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """The YAML files named, and those in the folders named (recursively), in a stable order.
    Raises FileNotFoundError for a path that does not exist."""
    files: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix in YAML_SUFFIXES and f.is_file())
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(str(p))
    seen: set[Path] = set()
    return [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]


def validate_paths(paths: Iterable[str | Path], *, mapping_dirs: list[Path] | None = None) -> list[Problem]:
    """Every problem of the tenant and mapping files named (files or folders), best first.

    A file is a mapping if its yaml-language-server modeline names mapping.schema.json, else if
    it sits in a folder named `mappings`, else if it has a top-level `entities` key; otherwise
    it is a tenant. Also reports tenant ids used by more than one file. Never resolves secrets.
    """
    problems: list[Problem] = []
    ids: dict[str, str] = {}
    dirs = [Path(d) for d in mapping_dirs or []]
    for path in collect_files(paths):
        doc = load_document(path)
        if kind_of(path, doc) == "mapping":
            problems += check_mapping_file(path)
            continue
        found, _ = check_tenant_file(path, dirs)
        problems += found
        tenant_id = doc.data.get("id") if isinstance(doc.data, dict) else None
        if isinstance(tenant_id, str):
            if tenant_id in ids:
                mark = doc.mark_at(("id",), 0)
                problems.append(Problem(doc.file, mark.line, mark.col, "$.id",
                                        f"the tenant id '{tenant_id}' is already used by {ids[tenant_id]}: ids must be unique"))
            else:
                ids[tenant_id] = display_name(path)
    return sort_problems(problems)
