"""A `Problem` found in a config file, and the `Locator` that turns a path into file:line:col.

A merged tenant (mapping + overrides) is checked as one document, but each of its values came
from a file: the locator remembers, per path of the merged document, which file and which path
in that file the value came from, so a problem is reported where the person has to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.config._text import json_path
from engine.config._yaml import Document

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    col: int
    json_path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.col} {self.json_path}: {label}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "json_path": self.json_path,
                "message": self.message, "severity": self.severity}

    @property
    def sort_key(self) -> tuple:
        """Best first: errors before warnings, then by file and position."""
        return (self.severity != "error", self.file, self.line, self.col, self.json_path, self.message)


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Sorted best first, without duplicates (a mapping's problem found via two tenants)."""
    return sorted(set(problems), key=lambda p: p.sort_key)


def file_problem(doc: Document, message: str, line: int = 1, col: int = 1) -> Problem:
    return Problem(doc.file, line, col, "$", message)


class Locator:
    """Where each path of a (possibly merged) document came from."""

    def __init__(self) -> None:
        self._origin: dict[tuple, tuple[Document, tuple]] = {}

    @classmethod
    def of(cls, doc: Document) -> "Locator":
        loc = cls()
        loc.graft((), doc, ())
        return loc

    def graft(self, dst: tuple, doc: Document, src: tuple) -> None:
        """The subtree at `dst` now comes from `doc` at `src` (replacing what was there)."""
        self.prune(dst)
        n = len(src)
        for path in (doc.spots or {()}):
            if path[:n] == src:
                self._origin[dst + path[n:]] = (doc, path)
        self._origin.setdefault(dst, (doc, src))

    def set(self, dst: tuple, doc: Document, src: tuple) -> None:
        """Only the node at `dst` (not its subtree) now comes from `doc` at `src`."""
        self._origin[dst] = (doc, src)

    def prune(self, dst: tuple) -> None:
        n = len(dst)
        for path in [p for p in self._origin if p[:n] == dst]:
            del self._origin[path]

    def origin(self, path: tuple) -> tuple[Document, tuple] | None:
        return self._origin.get(tuple(path))

    def in_flow(self, path: tuple) -> bool:
        """Whether the mapping or list at `path` is written in braces or brackets, where a plain
        value cannot hold { } [ ] , (so that `${env:NAME}` must be quoted there)."""
        found = self._origin.get(tuple(path))
        spot = (found[0].spots or {}).get(found[1]) if found else None
        return bool(spot and spot.flow)

    def problem(self, path: tuple, message: str, severity: Severity = "error",
                offset: int | None = None) -> Problem:
        """A problem at `path` of the document; `offset`: a character inside the value there."""
        path = tuple(path)
        for i in range(len(path), -1, -1):
            found = self._origin.get(path[:i])
            if found is None:
                continue
            doc, src = found
            full = src + path[i:]
            mark = doc.mark_at(src, offset if i == len(path) else None)
            return Problem(doc.file, mark.line, mark.col, json_path(full), message, severity)
        raise LookupError(f"no origin for {path}")  # pragma: no cover - the root always has one
