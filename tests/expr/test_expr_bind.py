"""Binding an expression to a query's columns, and what an Expr tells the config validator."""
import operator

import pytest

from engine.config.model import CodeTable
from engine.expr import ExprError, compile_expression

UNIT_TYPES = {"unit_types": CodeTable("unit_types", {"1": "apartment"}, "other")}


def test_a_plain_column_reads_the_tuple_directly():
    read = compile_expression("Bezeichnung").bind(["EinheitID", "Bezeichnung"])
    assert isinstance(read, operator.itemgetter)     # no dict, no jmespath search per row
    assert read((17, "Whg 1")) == "Whg 1"


def test_columns_match_case_insensitively_as_postgresql_returns_them():
    read = compile_expression("concat(to_string(VertragNr), '-', to_string(AdressNr))").bind(
        ["vertragnr", "adressnr"])
    assert read((100, 7)) == "100-7"


def test_an_exact_name_wins_over_a_case_variant():
    read = compile_expression("Nr").bind(["NR", "Nr"])
    assert read(("upper", "exact")) == "exact"


def test_two_case_variants_without_an_exact_match_are_ambiguous():
    with pytest.raises(ExprError, match=r"column 'Nr' is ambiguous: the query returns 'NR', 'nr'"):
        compile_expression("trim(Nr)").bind(["NR", "nr"])


def test_a_column_the_query_does_not_return_is_an_error_with_a_suggestion():
    with pytest.raises(ExprError) as caught:
        compile_expression("trim(Bezeichnug)").bind(["EinheitID", "Bezeichnung"])
    assert caught.value.message == ("unknown column 'Bezeichnug': the query does not return it. "
                                    "Did you mean 'Bezeichnung'?")
    assert caught.value.column == 5


def test_the_whole_record_on_a_row_is_a_dict_keyed_by_the_query_and_the_expression():
    expr = compile_expression("merge(@, {nr: nr})")
    assert expr.columns is None
    assert expr.bind(["Nr", "Name"])((1, "A")) == {"Nr": 1, "Name": "A", "nr": 1}


def test_dotted_paths_on_a_row_read_into_json_values():
    read = compile_expression("Adresse.Ort").bind(["Id", "Adresse"])
    assert read((1, {"Ort": "Köln"})) == "Köln"
    assert read((2, None)) is None


def test_bind_none_reads_dict_records_like_evaluate():
    expr = compile_expression("Kontakt.Email || 'none'")
    read = expr.bind(None)
    assert read({"Kontakt": {"Email": "max@web.de"}}) == "max@web.de"
    assert read({"Kontakt": {}}) == expr.evaluate({}) == "none"


@pytest.mark.parametrize("text, columns", [
    ("Nachname", {"Nachname"}),
    ("trim(Vorname) || Nachname", {"Vorname", "Nachname"}),
    ("Adresse.Ort", {"Adresse"}),
    ("Parteien[?Rolle == 'E'].Name", {"Parteien"}),
    ("sort_by(Parteien, &Nr)[0].Name", {"Parteien"}),
    ("Nachname | trim(@)", {"Nachname"}),
    ("{n: Nr, o: Ort}", {"Nr", "Ort"}),
    ("'DE'", set()),
    ("@", None),
    ("*.Name", None),
    ("length(@)", None),
])
def test_columns_are_the_top_level_names_read(text, columns):
    expr = compile_expression(text)
    assert expr.columns == (None if columns is None else frozenset(columns))


def test_functions_are_the_names_called():
    expr = compile_expression("map_values(to_string(TypCode), 'unit_types')", code_tables=UNIT_TYPES)
    assert expr.functions == {"map_values", "to_string"}
    assert expr.source == "map_values(to_string(TypCode), 'unit_types')"


def test_an_expr_is_frozen():
    expr = compile_expression("Nr")
    with pytest.raises(AttributeError):
        expr.source = "other"


def test_the_same_expression_compiled_twice_is_equal():
    assert compile_expression("trim(Nr)") == compile_expression("trim(Nr)")
    assert compile_expression("trim(Nr)") != compile_expression("trim(Ort)")


def test_an_expr_survives_pickling_for_worker_processes():
    import pickle
    expr = compile_expression("map_values(Art, 'roles')",
                              code_tables={"roles": CodeTable("roles", {"E": "owner"}, "other")})
    assert expr.evaluate({"Art": "e"}) == "owner"
    copy = pickle.loads(pickle.dumps(expr))
    assert copy == expr
    assert copy.evaluate({"Art": "E"}) == "owner"
    assert copy.bind(["ART"])(("x",)) == "other"


@pytest.mark.parametrize("text", ["map_values(to_text(TypCode), 'unit_types')",      # one column: memoised
                                  "map_values(coalesce(TypCode, Alt), 'unit_types')",   # two: column-wise
                                  "[map_values(TypCode, 'unit_types')][0]"])            # row by row
def test_a_code_the_code_table_lacks_is_told_in_every_binding_and_null_or_blank_is_not(text):
    """`note(table, code)`: the codes map_values sends the table's default for, although the
    table does not say so; row by row for each row, over a batch at least once per code (the
    caller finds the rows). Null and blank text get the default as intended: not told."""
    expr = compile_expression(text, code_tables=UNIT_TYPES)
    assert expr.notes_codes
    column = [1, 6, None, "  ", 6, 7, 1] * 10
    told = []
    note = lambda table, code: told.append((table, code))  # noqa: E731
    values = expr.bind_columns(["TypCode", "Alt"], note)([column, [None] * 70], 70)
    assert list(values) == ["apartment", "other", "other", "other", "other", "other", "apartment"] * 10
    assert {(t, str(c)) for t, c in told} == {("unit_types", "6"), ("unit_types", "7")}
    told.clear()
    read = expr.bind(["TypCode", "Alt"], note)
    assert [read((v, None)) for v in [1, 6, None, "  ", " 7 "]] == ["apartment", "other", "other", "other", "other"]
    assert [(t, str(c)) for t, c in told] == [("unit_types", "6"), ("unit_types", " 7 ")]
    told.clear()
    assert expr.bind(None, note)({"TypCode": 6}) == "other" and told == [("unit_types", 6) if "to_text" not in text
                                                                        else ("unit_types", "6")]


def test_a_table_written_in_the_expression_has_no_name_to_report():
    expr = compile_expression("map_values(Art, `{\"E\": \"owner\"}`)")
    assert not expr.notes_codes
    told = []
    assert expr.bind(["Art"], lambda *a: told.append(a))(("X",)) is None and told == []
