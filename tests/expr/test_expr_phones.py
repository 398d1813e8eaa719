"""German phone numbers as the ERP holds them, and the E.164 form the portal requires."""
import random
import re

import pytest

from engine.expr import PhoneInfo, analyze_phone, normalize_phone

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")     # the import API's pattern


@pytest.mark.parametrize("raw, expected", [
    ("0049(0)171 1234567", "+491711234567"),
    ("(030) 123 45-6", "+4930123456"),
    ("0176/1234567 (mobil)", "+491761234567"),
    ("+49 30 1234567", "+49301234567"),
    ("030-1234567", "+49301234567"),
    ("+49 (0) 30 1234567", "+49301234567"),
    ("Tel.: 030 1234567", "+49301234567"),
    ("mobil 0171 1234567", "+491711234567"),
    ("0171 1234567 privat", "+491711234567"),
    ("030 123456-78", "+493012345678"),
    ("089 / 12 34 56", "+4989123456"),
    ("+41 44 668 18 00", "+41446681800"),
    ("0041 44 668 18 00", "+41446681800"),
    ("+49301234567", "+49301234567"),
])
def test_german_free_text_becomes_e164(raw, expected):
    assert normalize_phone(raw) == expected
    assert E164.match(expected)


@pytest.mark.parametrize("raw", ["keine", "-", "n/a", "", "   ", None, "0"])
def test_placeholders_and_empty_fields_give_none_and_are_not_invalid(raw):
    assert normalize_phone(raw) is None
    assert analyze_phone(raw) == PhoneInfo(None, False)


@pytest.mark.parametrize("raw", ["12345", "030", "ab 18 Uhr", "030 1234567 oder 0171 1234567",
                                 "00000000", "+49 1"])
def test_garbage_gives_none_and_is_reported_as_invalid(raw):
    assert analyze_phone(raw) == PhoneInfo(None, True)


def test_the_region_decides_how_a_national_number_is_read():
    assert normalize_phone("0664 1234567", "AT") == "+436641234567"
    assert normalize_phone("044 668 18 00", "CH") == "+41446681800"
    assert normalize_phone("+49 30 1234567", "AT") == "+49301234567"


def test_analyze_phone_unpacks_as_number_and_flag():
    e164, invalid = analyze_phone("(030) 123 45-6")
    assert (e164, invalid) == ("+4930123456", False)


AREA_CODES = ["30", "40", "89", "221", "211", "6221", "3741", "33203", "171", "176", "151", "1512",
              "160", "180", "800", "700", "900", "32", "1", "9", "49", "0"]
SHAPES = ["0{a} {s}", "0{a}/{s}", "0{a}-{s}", "(0{a}) {s}", "+49 {a} {s}", "+49 (0) {a} {s}",
          "0049(0){a} {s}", "0049 {a} {s}", "+49{a}{s}", "0{a} {s}-{e}", "0{a}.{s}", "+49-{a}-{s}",
          "0 {a} {s}", "00{a} {s}", "+490{a}{s}"]


def test_the_german_fast_path_agrees_with_phonenumbers():
    from engine.expr.phones import _parse, german_fast_path
    rng = random.Random(3)
    fast = 0
    for _ in range(20000):
        subscriber = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 10)))
        text = rng.choice(SHAPES).format(a=rng.choice(AREA_CODES), s=subscriber, e=rng.randint(0, 99))
        quick = german_fast_path(text)
        if quick is not None:
            fast += 1
            assert quick == _parse(text, "DE").e164, text
    assert fast > 5000       # the common shapes do take the fast path


def test_a_number_column_is_read_as_the_national_number():
    assert normalize_phone(301234567) == "+49301234567"
    assert analyze_phone(4930) == PhoneInfo(None, True)


def _regex_nsn(text):
    """The national number german_fast_path's regexes read from text (None: not that shape)."""
    from engine.expr.phones import _GERMAN_NSN, _GERMAN_SHAPE, _SEPARATOR
    if not _GERMAN_SHAPE.fullmatch(text) or "(0)" in text:
        return None
    match = _GERMAN_NSN.fullmatch(_SEPARATOR.sub("", text))
    return match[1] if match else None


def test_the_common_shapes_are_read_as_the_fast_paths_regexes_read_them():
    """_common_nsn reads the commonest shapes with string methods; where it answers, the regexes
    must give the same national number (elsewhere it defers to them)."""
    from engine.expr.phones import _common_nsn
    rng = random.Random(7)
    answered = 0
    for _ in range(30000):
        head = rng.choice(["0", "(0", "+49", "0049", "+4 9", "00", "(00", "+490", "", "1", "(", "0(", "+"])
        body = "".join(rng.choice("0123456789" * 3 + " /-()\t.+x٣") for _ in range(rng.randint(0, 14)))
        text = head + body
        nsn = _common_nsn(text)
        if nsn is not None:
            answered += 1
            assert nsn == _regex_nsn(text), text
    assert answered > 1000


def test_a_column_of_numbers_gives_what_each_number_gives():
    from engine.expr.phones import normalize_phones
    rng = random.Random(8)
    raws = [None, "", " ", "keine", 301234567, "+49301234567", "0049(0)171 1234567", "(030) 123 45-6",
            "0176/1234567 (mobil)", "+41 44 668 18 00", "030 123456-78", "0 030 1234", "+49 030 123456"]
    for _ in range(3000):
        raws.append(rng.choice(["0", "(0", "+49 ", "0049 "]) + "".join(rng.choice("0123456789 /-()") for _ in range(rng.randint(3, 13))))
    assert normalize_phones(raws) == [normalize_phone(r) for r in raws]
    assert normalize_phones(raws, "AT") == [normalize_phone(r, "AT") for r in raws]
