"""The compiled closures against jmespath's interpreter, on generated expressions and records.

For each random expression and record, three results must agree exactly (same types, same
values, or the same exception type): jmespath.search with the engine's functions (the
reference), the compiled function over the dict, and the compiled function over a tuple row.
"""
import datetime as dt
import random
from decimal import Decimal

import jmespath
import pytest
from jmespath.exceptions import JMESPathError

from engine.config.model import CodeTable
from engine.expr import ExprError, compile_expression, jmespath_options

NAMES = ["a", "b", "Name", "obj", "items"]
TABLES = {"unit_types": CodeTable("unit_types", {"1": "apartment", "x": "other"}, "none")}
OPTIONS = jmespath_options(TABLES)
SCALARS = [None, "", " ", "x", " Max@Web.de ", "max@web.de; erika@web.de", "030-1234567", "keine",
           "01.02.2024", "2024-02-01", 0, 1, 2, -1, 1.5, True, False, Decimal("4711"),
           dt.date(2024, 2, 1), "1"]
LITERALS = ["'x'", "'1'", "`1`", "`0`", "`2`", "`null`", "`true`", "`false`", "`[]`", "`{}`",
            '`"a"`', '`[1, 2]`', '`{"a": 1}`', "''"]


def random_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 2 or roll < 0.55:
        return rng.choice(SCALARS)
    if roll < 0.75:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {k: random_value(rng, depth + 1) for k in rng.sample(["a", "b", "Name", "items"], rng.randint(0, 3))}


def random_record(rng: random.Random) -> dict:
    return {name: random_value(rng) for name in NAMES}


def random_expression(rng: random.Random, depth: int = 0) -> str:
    if depth >= 3 or rng.random() < 0.25:
        return rng.choice(NAMES * 3 + LITERALS + ["@"])
    x = lambda: random_expression(rng, depth + 1)  # noqa: E731
    name = rng.choice(NAMES)
    forms = [
        lambda: f"{rng.choice(NAMES)}.{name}", lambda: f"obj.{name}.a", lambda: f"{name}[0]",
        lambda: f"{name}[-1]", lambda: f"{name}[1:]", lambda: f"{name}[::-1]",
        lambda: f"{name}[*].a", lambda: f"{name}[?a]", lambda: f"{name}[?a == `1`].b",
        lambda: f"{name}[]", lambda: f"{name}.*", lambda: "*", lambda: "*.a", lambda: "[]",
        lambda: f"[{x()}, {x()}]", lambda: f"{{k: {x()}, l: {x()}}}", lambda: f"({x()}).a",
        lambda: f"{x()} || {x()}", lambda: f"{x()} && {x()}", lambda: f"!{x()}",
        lambda: f"{x()} == {x()}", lambda: f"{x()} != {x()}", lambda: f"{x()} < {x()}",
        lambda: f"{x()} >= {x()}", lambda: f"{name} == `true`", lambda: f"{name} != `0`",
        lambda: f"{name} == `1`", lambda: f"`false` == {name}", lambda: f"{x()} | {x()}", lambda: f"{name} | [0]",
        lambda: f"trim({x()})", lambda: f"lower({x()})", lambda: f"upper({x()})",
        lambda: f"to_text({x()})", lambda: f"normalize_email({x()})", lambda: f"split_emails({x()})",
        lambda: f"normalize_phone({x()})", lambda: f"normalize_phone({x()}, 'AT')",
        lambda: f"coalesce({x()}, {x()}, {x()})", lambda: f"concat({x()}, '-', {x()})",
        lambda: f"to_date({x()})", lambda: f"map_values({x()}, 'unit_types')",
        lambda: f"map_values({x()}, `{{\"1\": \"one\"}}`)", lambda: f"truncate({x()}, `3`)",
        lambda: f"to_string({x()})", lambda: f"not_null({x()}, {x()})", lambda: f"length({x()})",
        lambda: f"type({x()})", lambda: f"to_number({x()})", lambda: f"join(', ', {x()})",
        lambda: f"contains({x()}, {x()})", lambda: f"sort_by({name}, &a)", lambda: f"keys({x()})",
        lambda: f"abs({x()})", lambda: f"max_by({name}, &a)", lambda: f"map(&a, {name})",
        lambda: f"to_array({x()})", lambda: f"merge({x()}, {x()})", lambda: f"starts_with({x()}, 'x')",
    ]
    return rng.choice(forms)()


def outcome(function, *args):
    try:
        return ("value", strict(function(*args)))
    except (JMESPathError, TypeError, ValueError, AttributeError, KeyError) as error:
        return ("error", type(error).__name__)


def strict(value):
    """A value with its types spelled out, so that 1 and True, or 1 and 1.0, do not compare equal."""
    if isinstance(value, list):
        return ("list", [strict(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((k, strict(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def compiled_expressions(rng: random.Random, attempts: int):
    """(text, compiled expression) for each of `attempts` random expressions that compile."""
    for _ in range(attempts):
        text = random_expression(rng)
        try:
            yield text, compile_expression(text, code_tables=TABLES)
        except ExprError:
            continue


@pytest.mark.parametrize("seed", range(8))
def test_compiled_expressions_agree_with_jmespath(seed):
    rng = random.Random(seed)
    compared = 0
    for text, expr in compiled_expressions(rng, 400):
        for _ in range(4):
            record = random_record(rng)
            reference = outcome(jmespath.search, text, record, OPTIONS)
            assert outcome(expr.evaluate, record) == reference, (text, record)
            on_row = expr.bind(list(record))
            assert outcome(on_row, tuple(record.values())) == reference, (text, record)
            compared += 1
    assert compared > 1000      # the generator makes mostly valid expressions


def column_outcome(evaluate, rows, n):
    try:
        return ("value", strict(list(evaluate([list(c) for c in zip(*rows)], n))))
    except (JMESPathError, TypeError, ValueError, AttributeError, KeyError) as error:
        return ("error", type(error).__name__)


def rows_outcome(read, rows):
    values = []
    for row in rows:
        result = outcome(read, row)
        if result[0] == "error":
            return result            # the batch raises what its first failing row raises
        values.append(result[1])
    return ("value", ("list", values))


@pytest.mark.parametrize("seed", range(6))
def test_column_binding_agrees_with_the_row_binding(seed):
    """bind_columns over a batch gives each row's value from bind, or the first row's error;
    batches whose values repeat exercise the once-per-distinct-value path."""
    rng = random.Random(1000 + seed)
    compared = 0
    for text, expr in compiled_expressions(rng, 250):
        pool = [random_record(rng) for _ in range(rng.choice([1, 3, 60]))]
        n = rng.choice([1, 40, 60])
        rows = [tuple(rng.choice(pool)[name] for name in NAMES) for _ in range(n)]
        expected = rows_outcome(expr.bind(NAMES), rows)
        assert column_outcome(expr.bind_columns(NAMES), rows, n) == expected, (text, rows[:3])
        compared += 1
    assert compared > 150


@pytest.mark.parametrize("text", [
    "to_text(Nr)", "trim(Name)", "lower(trim(Name))", "upper(Name)", "to_date(Datum)",
    "concat(to_text(Nr), '-', to_text(Name))", "map_values(to_text(Nr), 'unit_types')",
    "coalesce(lower(trim(Name)), 'de')", "truncate(Name, `3`)", "normalize_email(Name)",
    "normalize_phone(Name)", "Nr", "'x'"])
def test_column_binding_on_database_shaped_columns(text):
    """The column versions of the common functions on typical columns, with and without nulls,
    few or many distinct values, and mixed types (1, 1.0, True and Decimal('1') must not share)."""
    rng = random.Random(text)
    values = {
        "Nr": [1, 2, 3, 4711, None, 1.0, True, Decimal("1"), Decimal("1.0"), -0.0, 0.0, "1"],
        "Name": [" Herr ", "Frau", "", None, "max@web.de", "030 1234567", 7, "x" * 5],
        "Datum": ["01.02.2024", "2024-02-01", None, dt.date(2024, 2, 1), dt.datetime(2024, 2, 1, 12), "x"],
    }
    expr = compile_expression(text, code_tables=TABLES)
    names = list(values)
    for kinds in ([int], [str], [str, type(None)], None):
        for distinct in (2, 40):
            choices = {k: [v for v in vs if kinds is None or type(v) in kinds] or [None] for k, vs in values.items()}
            pools = {k: [rng.choice(vs) for _ in range(distinct)] for k, vs in choices.items()}
            rows = [tuple(rng.choice(pools[k]) for k in names) for _ in range(60)]
            assert column_outcome(expr.bind_columns(names), rows, 60) == rows_outcome(expr.bind(names), rows), text


@pytest.mark.parametrize("column, as_they_are", [
    (["2024-02-01", None, "1999-12-31", "2024-02-01"], True),      # a database's ISO dates: given back unchanged
    ([None, None], True),
    (["2024-02-01", "2024-02-30"], False),                         # no such day: to_date keeps the text
    (["2024-02-01", " 2024-02-01"], False),                        # trimmed by to_date
    (["2024-02-01", "2024-02-01 10:00"], False),                   # a time after the date
    (["2024-02-01", "01.02.2024"], False),                         # a German date
    (["2024-02-01", "unbefristet"], False),                        # no date: null
])
def test_to_date_gives_a_column_of_iso_dates_back_as_it_is(column, as_they_are):
    """to_date over a column whose texts are ISO dates already gives the column itself back, and
    the window gate then compares it without looking again (iso_column); any other text takes
    the table of dates. Either way the values are what to_date gives row by row."""
    from engine.expr._columns import iso_column
    from engine.expr.functions import to_date
    got = compile_expression("to_date(Datum)").bind_columns(["Datum"])([tuple(column)], len(column))
    assert list(got) == [to_date(v) for v in column]
    assert iso_column(got) is as_they_are


@pytest.mark.parametrize("column, iso", [
    ([dt.date(2024, 2, 1), None, dt.date(1999, 12, 31), dt.date(2024, 2, 1)], True),   # PostgreSQL's dates
    ([dt.date(1, 1, 1), dt.date(9999, 12, 31)], True),
    ([dt.date(2024, 2, 1), dt.datetime(2024, 2, 1, 12)], False),    # a datetime: to_date cuts it to its day
    ([dt.date(2024, 2, 1), "01.02.2024"], False),
])
def test_to_date_reads_a_column_of_a_drivers_dates_once_per_day(column, iso):
    """to_date over a column of a driver's dates (and nulls) gives each day's ISO text from a
    table kept for the run, and marks the column as ISO dates for the window gate (iso_column);
    a column with anything else beside the dates takes the general path. Either way the values
    are what to_date gives row by row."""
    from engine.expr._columns import iso_column
    from engine.expr.functions import to_date
    got = compile_expression("to_date(Datum)").bind_columns(["Datum"])([tuple(column)], len(column))
    assert list(got) == [to_date(v) for v in column]
    assert iso_column(got) is iso
