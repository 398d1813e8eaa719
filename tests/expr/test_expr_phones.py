"""German phone numbers as the ERP holds them, and the E.164 form the portal requires."""
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
