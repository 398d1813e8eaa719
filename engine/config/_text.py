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


def json_path(path: Iterable[Any]) -> str:
    """('source', 'password') -> $.source.password; indexes and odd keys in brackets."""
    out = "$"
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif _IDENT.match(str(part)):
            out += f".{part}"
        else:
            out += "['" + str(part).replace("'", "\\'") + "']"
    return out
