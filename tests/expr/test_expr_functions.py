"""The registered functions: every documented example, the generated docs, and edge cases."""
import datetime as dt
from pathlib import Path
from decimal import Decimal

import pytest

from engine.config.model import CodeTable
from engine.expr import FUNCTIONS, compile_expression
from engine.expr.docs import END_MARKER, example_call, render

EXAMPLES = [(f, args, expected) for f in FUNCTIONS.values() for args, expected in f.examples]


@pytest.mark.parametrize("function, args, expected", EXAMPLES,
                         ids=[example_call(f, a)[0] for f, a, _ in EXAMPLES])
def test_documented_example(function, args, expected):
    text, record = example_call(function, args)
    assert compile_expression(text).evaluate(record) == expected


def test_every_function_has_a_doc_and_an_example_with_null():
    for function in FUNCTIONS.values():
        assert function.doc and function.examples, function.name
        assert any(None in args for args, _ in function.examples) or function.name == "map_values", function.name


def test_docs_functions_md_is_generated_from_the_registry():
    current = (Path(__file__).resolve().parents[2] / "docs" / "functions.md").read_text(encoding="utf-8")
    assert END_MARKER in current, "docs/functions.md lost its end-of-reference marker"
    assert current.split(END_MARKER)[0] == render(), "run: python -m engine.expr.docs"


def read(text, **record):
    tables = {"unit_types": CodeTable("unit_types", {"1": "apartment", "3": "parking"}, "other")}
    return compile_expression(text, code_tables=tables).evaluate(record)


def test_to_string_quotes_a_decimal_where_to_text_gives_the_digits():
    assert read("to_string(Nr)", Nr=Decimal("4711")) == '"4711"'     # jmespath, kept as is
    assert read("to_text(Nr)", Nr=Decimal("4711")) == "4711"
    assert read("to_text(Nr)", Nr=Decimal("1E+3")) == "1000"
    assert read("to_string(Nr)", Nr=4711) == "4711"


@pytest.mark.parametrize("value, expected", [
    ("31.12.2023", "2023-12-31"), (" 1.2.2024 ", "2024-02-01"), ("2024-02-29", "2024-02-29"),
    ("2024-02-29T10:00:00", "2024-02-29"), ("20240229", "2024-02-29"), ("", None), (" unbefristet ", None),
    ("0000-00-00", None), (20240229, "2024-02-29"),
    # no date that can be read: kept as the text, which the record check refuses naming it
    ("29.02.2023", "29.02.2023"), ("31.12.23", "31.12.23"), (" morgen ", "morgen"), (2024, "2024"),
    (Decimal("20240229.5"), "20240229.5"),
    (dt.date(2024, 5, 1), "2024-05-01"), (dt.datetime(2024, 5, 1, 23, 59), "2024-05-01"),
])
def test_to_date(value, expected):
    assert read("to_date(d)", d=value) == expected


@pytest.mark.parametrize("code, expected", [
    (1, "apartment"), ("1", "apartment"), (" 1 ", "apartment"), (1.0, "apartment"),
    (Decimal("3"), "parking"), (Decimal("3.00"), "parking"), (9, "other"), (None, "other"), ("", "other"),
])
def test_map_values_compares_codes_as_trimmed_text(code, expected):
    assert read("map_values(c, 'unit_types')", c=code) == expected


def test_map_values_keys_of_the_table_are_trimmed_and_lower_cased_too():
    tables = {"roles": CodeTable("roles", {" E ": "owner", "m": "tenant"})}
    expr = compile_expression("map_values(Art, 'roles')", code_tables=tables)
    assert [expr.evaluate({"Art": a}) for a in ("e", "M", "X")] == ["owner", "tenant", None]


def test_coalesce_skips_blank_text_where_not_null_does_not():
    assert read("coalesce(a, b)", a="  ", b="x") == "x"
    assert read("not_null(a, b)", a="  ", b="x") == "  "
    assert read("coalesce(a, b)", a=0, b="x") == 0


def test_truncate_counts_characters_not_bytes():
    assert read("truncate(n, `4`)", n="Jürgen") == "Jürg"


def test_text_functions_read_numbers_as_text():
    assert read("trim(n)", n=12) == "12"
    assert read("upper(n)", n=Decimal("1.50")) == "1.50"
    assert read("lower(n)", n=["a"]) is None


ODD_VALUES = [None, "", "  ", "x", 0, -1, 1.5, float("nan"), True, False, [], ["a", None], {}, {"a": 1},
              Decimal("NaN"), Decimal("-0.5"), dt.date(2024, 1, 1), b"bytes", "\u00a0", "ß" * 300]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_engines_functions_give_a_value_for_any_input_instead_of_raising(name):
    low, high = FUNCTIONS[name].arity
    tables = {"t": CodeTable("t", {"1": "one"}, "default")}
    for value in ODD_VALUES:
        if name == "map_values":
            text = "map_values(v, 't')"
        elif name == "truncate":
            text = "truncate(v, `3`)"
        else:
            text = f"{name}({', '.join(['v'] * max(low, 1))})"
        compile_expression(text, code_tables=tables).evaluate({"v": value})
        if high is None or high > low:
            compile_expression(f"{name}({', '.join(['v'] * (low + 1))})").evaluate({"v": value})


def test_the_generator_answers_help_instead_of_writing_a_file_named_help(tmp_path):
    """`python -m engine.expr.docs --help` used to take --help for the output path and write the
    reference into a file named '--help'."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "engine.expr.docs", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "functions.md"
    done = subprocess.run([sys.executable, "-m", "engine.expr.docs", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").startswith("# Expression functions")
