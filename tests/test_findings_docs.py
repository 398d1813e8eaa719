"""docs/findings.md lists every finding code the engine can emit, and no other.

The codes come from two places, and both are read here: engine/findings.py's CATALOGUE (severity,
whether the record is sent, what to fix), and the engine's source, scanned for every use of
`Finding`: a code written as a literal (`Finding("orphan_unit", "units", ...)`), passed as a
literal to a helper that hands it on (`add(i, "email_invalid", ...)`), or assigned as a literal
just before (`reason = "occupancy_unknown_user" if ... else ...`). A use whose code cannot be read
from the source must be listed in FORWARDED, with the codes it carries: a new one fails here until
someone says which codes it emits, so that no code reaches a report without its row in the docs.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from engine.findings import CATALOGUE, FILTER_REASONS

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "findings.md"

FORWARDED: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    # (module, the function using Finding): (where its codes come from, the codes)
    ("engine/mapping.py", "_exclude_at_once"): ("a filter's reason (mappings/*.yaml, a tenant's overrides)", frozenset()),
    ("engine/mapping.py", "_filtered_by"): ("a filter's reason (mappings/*.yaml, a tenant's overrides)", frozenset()),
    ("engine/pipeline.py", "_name_mapped_fields"): ("an existing finding, its message extended", frozenset()),
    ("engine/parallel_messages.py", "*"): ("findings the second process packed, unpacked", frozenset()),
    ("engine/references.py", "window_findings"): ("the contract window's gate (ContractGate)",
                                                  frozenset({"contract_ended", "contract_future"})),
    ("engine/extract.py", "gated_user_findings"): ("the users' gate (UsersGate, _KEEP_OR_SKIP)",
                                                   frozenset({"user_without_occupancy"})),
}
"""Uses of Finding whose code is not a literal the scan can read. Codes of filter reasons are
collected from the shipped mappings instead (filter_reasons); every code named here must be a
string literal in the engine's source."""


class _Scan(ast.NodeVisitor):
    """Every use of the name Finding in one module: (innermost function, node, its call or None)."""

    def __init__(self):
        self.functions: list[ast.FunctionDef] = []
        self.uses: list[tuple[ast.FunctionDef | None, ast.AST, ast.Call | None]] = []
        self._calls: dict[int, ast.Call] = {}

    def visit_FunctionDef(self, node):
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        self._calls[id(node.func)] = node
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id == "Finding" and isinstance(node.ctx, ast.Load):
            self.uses.append((self.functions[-1] if self.functions else None, node, self._calls.get(id(node))))


def _annotation_names(tree: ast.AST) -> set[int]:
    """ids of the Name nodes inside annotations (`-> Finding`, `list[Finding]`): no use."""
    ids = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations = [a.annotation for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in filter(None, annotations):
            ids |= {id(n) for n in ast.walk(annotation)}
    return ids


def _literals(node: ast.AST) -> list[str] | None:
    """The codes a literal expression can be: "x", or "x" if ... else "y"; None: not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        a, b = _literals(node.body), _literals(node.orelse)
        return a + b if a is not None and b is not None else None
    return None


def _argument(call: ast.Call, position: int, name: str) -> ast.AST | None:
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args[:position + 1]):
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _codes_of(tree: ast.AST, function: ast.FunctionDef | None, arg: ast.AST) -> list[str] | None:
    """The codes `arg` (the first argument of a Finding in `function`) can be, read from the
    source; None where they cannot be read."""
    if (codes := _literals(arg)) is not None:
        return codes
    if not isinstance(arg, ast.Name) or function is None:
        return None
    params = [a.arg for a in [*function.args.posonlyargs, *function.args.args]]
    if arg.id in params:                       # a helper: the codes its callers in this module pass
        position, found = params.index(arg.id), []
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                 and n.func.id == function.name]
        for call in calls:
            given = _argument(call, position, arg.id)
            codes = _literals(given) if given is not None else None
            if codes is None:
                return None
            found += codes
        return found or None
    assigned = [n.value for n in ast.walk(function) if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == arg.id for t in n.targets)]
    found = []
    for value in assigned:
        if (codes := _literals(value)) is None:
            return None
        found += codes
    return found or None


def engine_codes() -> tuple[dict[str, set[str]], list[str], set[tuple[str, str]]]:
    """(code -> the entities its literal uses name, the uses whose code cannot be read, the
    FORWARDED entries met)."""
    codes: dict[str, set[str]] = {}
    unread, met = [], set()
    for path in sorted((REPO / "engine").rglob("*.py")):
        module = path.relative_to(REPO).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scan = _Scan()
        scan.visit(tree)
        skip = _annotation_names(tree)
        for function, node, call in scan.uses:
            if id(node) in skip:
                continue
            name = function.name if function else "<module>"
            for key in ((module, name), (module, "*")):
                if key in FORWARDED:
                    met.add(key)
                    for code in FORWARDED[key][1]:
                        codes.setdefault(code, set())
                    break
            else:
                found = _codes_of(tree, function, call.args[0]) if call is not None and call.args else None
                if found is None:
                    unread.append(f"{module}:{node.lineno} ({name})")
                    continue
                entity = call.args[1] if len(call.args) > 1 else None
                for code in found:
                    codes.setdefault(code, set()).update(
                        [entity.value] if isinstance(entity, ast.Constant) and isinstance(entity.value, str) else [])
    return codes, unread, met


def filter_reasons() -> set[str]:
    """The reasons the shipped mappings' filters count the records they exclude under."""
    reasons = set()
    for path in (REPO / "mappings").glob("*.yaml"):
        for entity in yaml.safe_load(path.read_text(encoding="utf-8"))["entities"].values():
            reasons |= {f["reason"] for f in entity.get("filters") or ()}
    return reasons


ROW = re.compile(r"^\| `([a-z_]+)` \| (.*) \|$")


def documented() -> dict[str, dict[str, str]]:
    """docs/findings.md's table: code -> its cells by column."""
    rows, columns = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| code |"):
            columns = [c.strip() for c in line.strip("|").split("|")]
        elif columns and (m := ROW.match(line)):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == len(columns), f"docs/findings.md: the row of {m.group(1)} has {len(cells)} cells"
            assert m.group(1) not in rows, f"docs/findings.md lists {m.group(1)} twice"
            rows[m.group(1)] = dict(zip(columns, cells))
    return rows


def test_every_use_of_finding_in_the_engine_has_codes_the_scan_can_read():
    codes, unread, met = engine_codes()
    assert not unread, ("the code of these uses of Finding cannot be read from the source: write it as a literal, "
                        f"or add the use to FORWARDED with the codes it carries: {unread}")
    assert met == set(FORWARDED), f"FORWARDED names uses that are gone: {set(FORWARDED) - met}"
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "engine").rglob("*.py"))
    for key, (_, forwarded) in FORWARDED.items():
        for code in forwarded:
            assert f'"{code}"' in source, f"{key}: {code} is no longer in the engine's source"


def test_every_code_the_engine_emits_is_in_the_catalogue():
    """A code missing there is reported as a tenant's own filter reason (info, 'excluded by a filter')."""
    codes, _, _ = engine_codes()
    emitted = set(codes) | filter_reasons()
    assert emitted - set(CATALOGUE) == set()
    assert set(CATALOGUE) - emitted - set(FILTER_REASONS) == set(), "catalogue codes the engine no longer emits"


def test_docs_list_every_code_of_the_catalogue_and_no_other():
    listed = documented()
    assert sorted(set(CATALOGUE) - set(listed)) == [], "codes missing from docs/findings.md"
    assert sorted(set(listed) - set(CATALOGUE)) == [], "docs/findings.md lists codes that no longer exist"


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_each_row_says_what_the_catalogue_says(code):
    row = documented().get(code)
    if row is None:
        pytest.fail(f"docs/findings.md has no row for {code}")
    severity, dropped, fix = CATALOGUE[code]
    assert row["severity"] == severity
    assert row["record sent"].split()[0].strip(",:") == ("no" if dropped else "yes")
    assert row["what to fix in the ERP"] == fix.replace("|", "\\|")
    assert row["what it means"], f"{code}: say what it means"


def test_each_row_names_the_entities_the_engine_gives_the_code():
    codes, _, _ = engine_codes()
    listed = documented()
    for code, entities in codes.items():
        if code in listed and not listed[code]["entity"].startswith("any"):
            missing = [e for e in entities if e not in listed[code]["entity"]]
            assert not missing, f"docs/findings.md: {code} is also given to {missing}"


def test_the_summary_and_the_readme_point_to_the_list():
    assert "(findings.md)" in (REPO / "docs" / "summary.md").read_text(encoding="utf-8")
    assert "(docs/findings.md)" in (REPO / "README.md").read_text(encoding="utf-8")
