"""engine._table.ValueTable: a function's results kept across calls, computed once per value."""
from engine._table import ValueTable


def test_each_distinct_value_is_computed_once_across_calls_and_again_after_a_restart():
    calls = []

    def length(text):
        calls.append(text)
        return len(text)
    table = ValueTable(length, limit=4, fixed={None: None})
    assert table(["ab", "c", "ab", None]) == [2, 1, 2, None]
    assert table(("c", "ab", "def")) == [1, 2, 3]
    assert sorted(calls) == ["ab", "c", "def"]          # None never reaches the function
    assert table(["wxyz", "uv"]) == [4, 2]              # past the limit: started again, None still known
    assert sorted(calls[3:]) == ["uv", "wxyz"]
    assert table([None]) == [None]
