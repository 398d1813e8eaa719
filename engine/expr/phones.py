"""Phone numbers: German free text from the ERP to the portal's E.164 form (+4930...).

The ERP holds whatever people typed: '0049(0)171 1234567', '(030) 123 45-6',
'0176/1234567 (mobil)', 'Tel. 030 1234567', 'keine'. `normalize_phone` returns E.164 or None;
`analyze_phone` also says whether the field held something that should be fixed in the ERP.

phonenumbers does the parsing and the validity check (number ranges per country). Before it
sees the text, words are removed: phonenumbers reads letters as vanity digits (a trailing
'(mobil)' would otherwise become part of the number). Results are cached: a value that repeats
(a switchboard number shared by many persons) is parsed once.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import phonenumbers

DEFAULT_REGION = "DE"

# The portal's own rule for phone and mobile (see the import API spec).
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

PLACEHOLDERS = frozenset({
    "-", "--", "---", ".", "/", "?", "x", "0", "keine", "kein", "keine angabe", "k.a.", "k. a.",
    "ka", "n/a", "na", "n.a.", "none", "null", "nicht vorhanden", "unbekannt", "entfällt",
})
"""Field contents that mean 'no number': they give None and are not reported as invalid."""

_WORDS_IN_BRACKETS = re.compile(r"[(\[][^)\]]*[^\W\d_][^)\]]*[)\]]")  # '(mobil)', '[privat]'
_LEADING_LABEL = re.compile(r"^[^\d+(]*")                               # 'Tel.: ', 'mobil '
_TRAILING_TEXT = re.compile(r"[^\d)]*$")                                # ' privat', ' ab 18 Uhr'
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")


class PhoneInfo(NamedTuple):
    e164: str | None
    invalid: bool
    """True when the field held text that is neither empty, a placeholder, nor a phone number."""


def normalize_phone(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """The number in E.164 form, or None when the field is empty, a placeholder or unparseable."""
    if raw is None:
        return None
    if E164.fullmatch(raw):
        return raw
    return _analyze(raw, region).e164


def analyze_phone(raw: str | None, region: str = DEFAULT_REGION) -> PhoneInfo:
    """E.164 or None, plus whether the ERP's value is invalid (worth a finding)."""
    if raw is None:
        return PhoneInfo(None, False)
    if E164.fullmatch(raw):
        return PhoneInfo(raw, False)
    return _analyze(raw, region)


@lru_cache(maxsize=1 << 17)
def _analyze(raw: str, region: str) -> PhoneInfo:
    text = raw.strip()
    if not text or text.casefold() in PLACEHOLDERS:
        return PhoneInfo(None, False)
    if not _DIGIT.search(text):
        return PhoneInfo(None, True)
    cleaned = _WORDS_IN_BRACKETS.sub(" ", text)
    cleaned = _LEADING_LABEL.sub("", cleaned)
    cleaned = _TRAILING_TEXT.sub("", cleaned)
    if _LETTER.search(cleaned):
        # letters between digits: two numbers with 'oder', a note in the middle: not guessable
        return PhoneInfo(None, True)
    try:
        number = phonenumbers.parse(cleaned, region.upper() if region else DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return PhoneInfo(None, True)
    if not phonenumbers.is_valid_number(number):
        return PhoneInfo(None, True)
    return PhoneInfo(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), False)


def is_known_region(region: str) -> bool:
    """Whether phonenumbers knows the region code ('DE', 'AT', 'CH', ...)."""
    return isinstance(region, str) and region.upper() in phonenumbers.SUPPORTED_REGIONS
