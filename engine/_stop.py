"""Stopping a run from outside (SIGTERM: a scheduler ending its window, `kill`) at a point where
it can be recorded.

The CLI turns SIGTERM into `Terminated` in the main thread (engine.cli), which ends a run as
Ctrl-C does: its history says failed, its lock is released, its helper processes are stopped.
A step that must not be cut in two (a transaction written to the portal and the note of what
it wrote) runs inside `whole()`: a SIGTERM that arrives there takes effect when it ends.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""


_depth = 0
_pending: type[KeyboardInterrupt] | None = None


def request_stop(kind: type[KeyboardInterrupt] = Terminated) -> None:
    """Stop now (raise `kind`), or at the end of the `whole()` step under way."""
    global _pending
    if _depth:
        _pending = kind
        return
    raise kind()


@contextmanager
def whole() -> Iterator[None]:
    """A step that a stop request does not cut in two: it takes effect after the step, also when
    the step ends with an error (the stop is what the caller reports, the error its context)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            kind, _pending = _pending, None
            raise kind()
