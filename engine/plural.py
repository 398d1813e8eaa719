"""A count with its noun, for messages: `1 write`, `2 writes`, `1,204 persons`."""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for 1 and plural otherwise (`plural`, else the noun with an s)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
