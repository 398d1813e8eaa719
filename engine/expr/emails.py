"""E-mail fields: from the ERP's free text to the portal's login.

The e-mail address is the portal login and must be unique. ERP fields hold more than one
address ('max@web.de; erika@web.de'), annotations ('max@web.de (Büro)', 'Büro: max@web.de',
'Max Muster <max@web.de>'), case and whitespace variants, and garbage. `analyze_email` reads such
a field once and says everything the engine needs: the login (the first valid address, trimmed
and lower-cased), all valid addresses, the invalid parts as written, and whether the field was
annotated or held several addresses (both are findings for the property manager).

Speed: a well-formed common address takes a regex fast path; only the rest goes through
email-validator (RFC syntax, IDN domains). Results are cached, so a value that repeats (couples
sharing an address) is analysed once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress
from operator import not_
from typing import Any, Sequence

from email_validator import EmailNotValidError, validate_email

# A plain ASCII address: dot-separated atoms before the @, dot-separated labels after it, a
# letter TLD, no punycode label (email-validator turns 'xn--' into the Unicode form). Applied to
# the lower-cased text. Anything else takes the slow path.
_SIMPLE = re.compile(
    r"[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*"
    r"@(?:(?!xn--)[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}"
)
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}")   # '(Büro)', '[privat]'
_SPELLED_AT = re.compile(r"[(\[{]\s*at\s*[)\]}]", re.IGNORECASE)  # 'max(at)web.de': an address, not an annotation
_ANGLE = re.compile(r"<([^<>]*)>")                            # 'Max Muster <max@web.de>'
_SEPARATORS = re.compile(r"[;,\s]+")
_EDGE_PUNCTUATION = "\"'<>.:"
_ONLY_PUNCTUATION = re.compile(r"[\W_]*")

PLACEHOLDERS = frozenset({
    "-", "--", "---", ".", "?", "x", "keine", "kein", "keine angabe", "k.a.", "k. a.", "ka",
    "n/a", "na", "n.a.", "none", "null", "nicht vorhanden", "unbekannt", "entfällt",
})
"""Field contents that mean 'no address': no login, and not reported as invalid."""


@dataclass(frozen=True, slots=True)
class EmailInfo:
    login: str | None = None            # the first valid address, normalised; None: no login
    addresses: tuple[str, ...] = ()     # every valid address, normalised, in order, no repeats
    invalid: tuple[str, ...] = ()       # the parts that are not valid addresses, as written
    annotated: bool = False             # text around the address was removed ('(Büro)', 'Büro:')
    multiple: bool = False              # the field held more than one address-like part


_EMPTY = EmailInfo()


def analyze_email(raw: str | None) -> EmailInfo:
    """Everything about one ERP e-mail field (None and '' give an EmailInfo without login)."""
    if raw is None:
        return _EMPTY
    return _analyze(raw if type(raw) is str else str(raw))


def normalize_email(raw: str | None) -> str | None:
    """The login: the field's first valid address, trimmed and lower-cased, or None."""
    if raw is None:
        return None
    return _analyze(raw if type(raw) is str else str(raw)).login


def analyze_emails(raws: Sequence[Any]) -> tuple[list[str | None], dict[int, EmailInfo]]:
    """For a column of ERP e-mail fields that are not null: the login of each, and the EmailInfo
    of the fields that are not one plain address (only those can carry findings). The same as
    analyze_email field by field; the plain addresses, most of a column and mostly distinct, are
    recognised in three C-level passes (strip, lower, the fast-path regex) without the cache."""
    texts = raws if set(map(type, raws)) == {str} else [r if type(r) is str else str(r) for r in raws]
    logins: list[str | None] = list(map(str.lower, map(str.strip, texts)))
    others: dict[int, EmailInfo] = {}
    for i in compress(range(len(texts)), map(not_, map(_SIMPLE.fullmatch, logins))):
        info = others[i] = _analyze(texts[i])
        logins[i] = info.login
    return logins, others


@lru_cache(maxsize=1 << 16)   # ~25 MB when full; a miss costs ~1-2 us
def _analyze(raw: str) -> EmailInfo:
    text = raw.strip()
    lowered = text.lower()
    if _SIMPLE.fullmatch(lowered):                      # the fast path: one plain address
        return EmailInfo(lowered, (lowered,))
    if not text or lowered in PLACEHOLDERS:
        return _EMPTY
    annotated = False
    stripped = _BRACKETED.sub(lambda m: m[0] if _SPELLED_AT.fullmatch(m[0]) else " ", text)
    if stripped != text:
        annotated = True
    inside_angles = _ANGLE.findall(stripped)
    if inside_angles:
        annotated = True
        outside = _ANGLE.sub(" ", stripped)
        stripped = " ".join(inside_angles + [w for w in outside.split() if "@" in w])
    parts = [p for p in _SEPARATORS.split(stripped) if p and not _ONLY_PUNCTUATION.fullmatch(p)]
    candidates = [p for p in parts if "@" in p or _SPELLED_AT.search(p)]
    if not candidates:
        return EmailInfo(invalid=(text,), annotated=annotated)
    if len(candidates) < len(parts):                    # words next to an address: 'Büro: max@...'
        annotated = True
    addresses: list[str] = []
    invalid: list[str] = []
    for part in candidates:
        address = _normalize_part(part)
        if address is None:
            invalid.append(part)
        elif address not in addresses:
            addresses.append(address)
    return EmailInfo(
        login=addresses[0] if addresses else None,
        addresses=tuple(addresses),
        invalid=tuple(invalid),
        annotated=annotated,
        multiple=len(candidates) > 1,
    )


def _normalize_part(part: str) -> str | None:
    candidate = part.strip(_EDGE_PUNCTUATION)
    if candidate.lower().startswith("mailto:"):
        candidate = candidate[7:]
    lowered = candidate.lower()
    if _SIMPLE.fullmatch(lowered):
        return lowered
    try:
        # allow_smtputf8=False: an umlaut before the @ ('jürgen@web.de') is almost always a typo
        # for 'juergen@...', and German mail providers do not accept such addresses.
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return result.normalized.lower()
