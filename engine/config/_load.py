"""Check one file: parse with marks, schema, merge, semantic checks, and (tenants) compile.

    check_tenant_file(path, mapping_dirs) -> (problems, Tenant or None if there are errors)
    check_mapping_file(path)              -> problems
    kind_of(path, doc)                    -> "tenant" or "mapping"
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from engine.config import _schema
from engine.config._check_mapping import Compiled, check_mapping, check_query_params, check_reserved_params
from engine.config._check_tenant import check_tenant
from engine.config._compile import compile_tenant
from engine.config._merge import merge_overrides
from engine.config._problem import Locator, Problem, file_problem, sort_problems
from engine.config._report import Report
from engine.config._text import did_you_mean, json_path
from engine.config._yaml import Document, display_name, load_document
from engine.config.model import Tenant

Kind = Literal["tenant", "mapping"]
_MODELINE = re.compile(r"#\s*yaml-language-server:\s*\$schema=\S*?(tenant|mapping)\.schema\.json")


def kind_of(path: Path, doc: Document | None = None) -> Kind:
    """Tenant or mapping: by the yaml-language-server modeline, else the folder's name
    (tenants/, mappings/), else the content (a mapping has top-level `entities`)."""
    text = doc.text if doc else path.read_text(encoding="utf-8", errors="replace")
    match = _MODELINE.search("\n".join(text.splitlines()[:5]))
    if match:
        return match.group(1)  # type: ignore[return-value]
    if path.parent.name in ("tenants", "mappings"):
        return "tenant" if path.parent.name == "tenants" else "mapping"
    data = doc.data if doc else None
    return "mapping" if isinstance(data, dict) and ("entities" in data or "source_type" in data) else "tenant"


def _parsed(doc: Document) -> list[Problem]:
    """Problems that stop the checks of a file: a YAML syntax error, an empty or non-mapping file."""
    if doc.error:
        mark, message, path = doc.error
        return [Problem(doc.file, mark.line, mark.col, json_path(path), message)]
    if doc.data is None:
        return [file_problem(doc, "the file is empty")]
    if not isinstance(doc.data, dict):
        return [file_problem(doc, "expected key: value lines at the top level of the file")]
    return []


def check_mapping_file(path: Path) -> list[Problem]:
    doc = load_document(path)
    stop = _parsed(doc)
    if stop:
        return stop
    report = Report(Locator.of(doc))
    report.schema(_schema.validate("mapping", doc.data))
    check_mapping(doc.data, report, file_stem=path.stem)
    return sort_problems(report.problems)


def check_tenant_file(path: Path, mapping_dirs: list[Path] | None = None) -> tuple[list[Problem], Tenant | None]:
    doc = load_document(path)
    stop = _parsed(doc)
    if stop:
        return stop, None
    data: dict[str, Any] = doc.data
    report = Report(Locator.of(doc))
    report.schema(_schema.validate("tenant", data))
    problems: list[Problem] = []
    merged: Any = None
    compiled = Compiled()
    mapping_path = _mapping_path(data.get("mapping"), path, mapping_dirs or [], report)
    if mapping_path is not None:
        mapping_doc = load_document(mapping_path)
        problems += _parsed(mapping_doc)
        if not problems:
            merged, loc, merge_problems = merge_overrides(mapping_doc, doc)
            mapping_report = Report(loc)
            mapping_report.schema(_schema.validate("mapping", merged))
            compiled = check_mapping(merged, mapping_report, file_stem=mapping_path.stem)
            check_query_params(merged, data.get("source"), mapping_report)
            problems += merge_problems + mapping_report.problems
    check_tenant(data, report, mapping=merged, file_stem=path.stem, file_name=path.name)
    source = data.get("source")
    if isinstance(source, dict) and source.get("type") == "sql":      # an API's params are its query string
        check_reserved_params(("source", "params"), source.get("params"), report)
    problems = sort_problems(problems + report.problems)
    if any(p.severity == "error" for p in problems) or merged is None:
        return problems, None
    return problems, compile_tenant(data, merged, compiled, path, query_at=_queries_at(merged, loc))


def _queries_at(merged: dict, loc: Locator) -> dict[str, str]:
    """file:line of each entity's query, the tenant's override or the mapping's: named when it fails."""
    found = {}
    for name, spec in (merged.get("entities") or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("query"), str):
            where = loc.problem(("entities", name, "query"), "")
            found[name] = f"{where.file}:{where.line}"
    return found


def mapping_candidates(name: str, tenant_path: Path, mapping_dirs: list[Path]) -> list[Path]:
    """Where the mapping `name` is looked for, in order."""
    folders = list(mapping_dirs) + [tenant_path.parent / ".." / "mappings"]
    return [folder / f"{name}.yaml" for folder in folders]


def _mapping_path(name: Any, tenant_path: Path, mapping_dirs: list[Path], report: Report) -> Path | None:
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        return None  # the schema reported it
    candidates = mapping_candidates(name, tenant_path, mapping_dirs)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    folders = [c.parent for c in candidates]
    known = sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})
    hint = did_you_mean(name, known) or ("Available mappings: " + ", ".join(known) if known else
                                         "A mapping kept in another folder is found with --mapping-dir DIR")
    where = ", ".join(display_name(f.resolve()) + "/" for f in folders)
    report.error(("mapping",), f"mapping '{name}' not found: no {name}.yaml in {where}" + (f". {hint}" if hint else ""))
    return None
