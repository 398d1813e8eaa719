"""Small text helpers shared by the config checks: did-you-mean, lists, JSON paths."""
from __future__ import annotations

import difflib
import re
from typing import Any, Iterable

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """"Did you mean 'x'?" for the closest candidate, or "" when none is close."""
    options = [str(c) for c in candidates]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {o.lower(): o for o in options}
        close = [lowered[word.lower()]] if word.lower() in lowered else []
    return f"Did you mean '{close[0]}'?" if close else ""


def quoted_list(items: Iterable[Any]) -> str:
    return ", ".join(f"'{i}'" for i in items)


def key_text(key: Any) -> str:
    """A mapping key as YAML writes it: a key YAML reads as true or null shows so, not as Python's True or None."""
    if key is None:
        return "null"
    if isinstance(key, bool):
        return str(key).lower()
    return str(key)


def code_text(code: Any) -> str:
    """A code of a code table as the YAML file writes it: 'Herr' and '1 ' quoted, 1, true and null as they are."""
    return repr(code) if isinstance(code, str) else key_text(code)


def clash_message(code: Any, other: Any, value: Any, other_value: Any, where: str) -> str:
    """Two codes of one table that map_values takes for one (`where`: the other's line)."""
    return (f"code {code_text(code)} is the same code as {code_text(other)} ({where}) for map_values (codes are "
            f"compared trimmed and lower-cased), with another value ({value!r}, not {other_value!r}): keep one of them")


def json_path(path: Iterable[Any]) -> str:
    """('source', 'password') -> $.source.password; indexes and odd keys in brackets."""
    out = "$"
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif _IDENT.match(key_text(part)):
            out += f".{key_text(part)}"
        else:
            out += "['" + key_text(part).replace("'", "\\'") + "']"
    return out
