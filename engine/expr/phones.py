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
from typing import Callable, NamedTuple, Sequence

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
    if type(raw) is not str:
        raw = str(raw)           # a number column: 301234567 reads as the national number
    if E164.fullmatch(raw):
        return raw
    return _analyze(raw, region).e164


def analyze_phone(raw: str | None, region: str = DEFAULT_REGION) -> PhoneInfo:
    """E.164 or None, plus whether the ERP's value is invalid (worth a finding)."""
    if raw is None:
        return PhoneInfo(None, False)
    if type(raw) is not str:
        raw = str(raw)
    if E164.fullmatch(raw):
        return PhoneInfo(raw, False)
    return _analyze(raw, region)


def normalize_phones(raws: Sequence[str | None], region: str = DEFAULT_REGION) -> list[str | None]:
    """[normalize_phone(raw, region) for raw in raws], for a whole column at once.

    The numbers of a column are mostly distinct, so the cache helps little. A number in the
    commonest German shapes ('030 1234567', '(030) 123 45-6', '0176/1234567', '+49 30 1234567')
    is read with string methods instead of three regexes (see _common_nsn), leaving one validity
    check; everything else goes through normalize_phone's path.
    """
    if region != "DE":
        return [normalize_phone(raw, region) for raw in raws]
    return list(map(_german_to_e164, raws))


def _german_to_e164(raw: str | None) -> str | None:
    if raw is None:
        return None
    if type(raw) is not str:
        raw = str(raw)
    if E164.fullmatch(raw):
        return raw
    nsn = _common_nsn(raw.strip())
    if nsn is not None and _german_validity()(nsn):
        return "+49" + nsn
    return _analyze(raw, DEFAULT_REGION).e164


def _common_nsn(text: str) -> str | None:
    """The national significant number of text made of ASCII digits, spaces, '/', '-' and
    parentheses, in national form ('0' or '(0' and a non-zero digit) or starting '+49'; None for
    anything else, and wherever german_fast_path's regexes could read the text differently
    ('(0)', '0049', a zero after the trunk prefix). For such text it gives what the shape and
    national-number regexes give (a test holds the two together)."""
    if not text or not text[-1].isdigit() or "(0)" in text:
        return None
    digits = text.replace(" ", "").replace("/", "").replace("-", "").replace("(", "").replace(")", "")
    if text.startswith("+49"):
        digits = digits[3:]
        start = 0
    else:
        first = 1 if text[0] == "(" else 0
        if len(text) < first + 2 or text[first] != "0":
            return None
        start = 1
    if not (digits.isascii() and digits.isdigit()) or len(digits) <= start or digits[start] == "0":
        return None
    return digits[start:]


_TEXT = {str}


@lru_cache(maxsize=1 << 16)   # a miss costs ~1 us (fast path) to ~17 us
def _analyze(raw: str, region: str) -> PhoneInfo:
    text = raw.strip()
    if not text or text.casefold() in PLACEHOLDERS:
        return PhoneInfo(None, False)
    if region == "DE" and (e164 := german_fast_path(text)):
        return PhoneInfo(e164, False)
    return _parse(text, region)


def _parse(text: str, region: str) -> PhoneInfo:
    """The reference: phonenumbers' parser and validity check, after removing words."""
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


# The fast path for the common German shapes: digits with spaces, '/', '-', '.', parentheses,
# in national form (0...) or international form (+49..., 0049..., with an optional '(0)').
# phonenumbers.parse costs ~12 us and is_valid_number ~5 us per value; this path reads the
# national significant number with one regex and checks it against the same metadata
# patterns, compiled once (~1-2 us). It only ever answers with a valid number; anything else
# goes to the reference path, and a test holds the two together.
_GERMAN_SHAPE = re.compile(r"(?:\+\s*49|0049|\(?0(?!0))[\d\s/().\-]*\d")
_INTERNATIONAL_TRUNK = re.compile(r"^(?:\+\s*49|0049)\s*\(0\)")
_SEPARATOR = re.compile(r"[ \t/().\-]")
_GERMAN_NSN = re.compile(r"(?:\+49|0049|0)([1-9]\d*)")


def german_fast_path(text: str) -> str | None:
    """E.164 for a valid German number in a common shape, else None (then: the full parser)."""
    if not _GERMAN_SHAPE.fullmatch(text):
        return None
    if "(0)" in text:
        text = _INTERNATIONAL_TRUNK.sub("+49", text)
    digits = _SEPARATOR.sub("", text)
    match = _GERMAN_NSN.fullmatch(digits)
    if match is None:
        return None
    nsn = match.group(1)
    return "+49" + nsn if _german_validity()(nsn) else None


@lru_cache(maxsize=1)
def _german_validity() -> Callable[[str], bool]:
    """phonenumbers' is_valid_number for country code 49, on the national significant number:
    the general pattern and one of the number types (fixed line and mobile tried first)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("DE")
    descs = [(frozenset(d.possible_length), re.compile(d.national_number_pattern).fullmatch)
             for d in (metadata.general_desc, metadata.fixed_line, metadata.mobile,
                       metadata.premium_rate, metadata.toll_free, metadata.shared_cost,
                       metadata.voip, metadata.personal_number, metadata.pager, metadata.uan,
                       metadata.voicemail)
             if d is not None and d.national_number_pattern]
    (general_lengths, general), types = descs[0], descs[1:]

    def is_valid(nsn: str) -> bool:
        length = len(nsn)
        if (general_lengths and length not in general_lengths) or general(nsn) is None:
            return False
        for lengths, match in types:
            if (not lengths or length in lengths) and match(nsn) is not None:
                return True
        return False
    return is_valid


def is_known_region(region: str) -> bool:
    """Whether phonenumbers knows the region code ('DE', 'AT', 'CH', ...)."""
    return isinstance(region, str) and region.upper() in phonenumbers.SUPPORTED_REGIONS
