"""Golden cases (cases.yaml) and compile errors (errors.yaml), read as data."""
from pathlib import Path

import jmespath
import pytest
import yaml

from engine.config.model import CodeTable
from engine.expr import ExprError, compile_expression, jmespath_options

HERE = Path(__file__).parent
GOLDEN = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))
TABLES = {name: CodeTable(name, t["values"], t.get("default")) for name, t in GOLDEN["code_tables"].items()}
ERRORS = yaml.safe_load((HERE / "errors.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['expression']} {c['record']}")
def test_golden_case(case):
    expr = compile_expression(case["expression"], code_tables=TABLES)
    record = case["record"]
    columns = list(record)
    row = tuple(record.values())
    assert expr.evaluate(record) == case["expected"]
    assert expr.bind(columns)(row) == case["expected"]
    reference = jmespath.search(case["expression"], record, options=jmespath_options(TABLES))
    assert reference == case["expected"]


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c["expression"] or "<empty>")
def test_compile_error(case):
    with pytest.raises(ExprError) as caught:
        compile_expression(case["expression"], code_tables={k: TABLES[k] for k in ("unit_types", "roles")})
    assert (caught.value.message, caught.value.column) == (case["message"], case["column"])
    assert str(caught.value) == case["message"]
