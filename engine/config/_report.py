"""Collects the problems of one check run, placed by a `Locator`."""
from __future__ import annotations

from engine.config._problem import Locator, Problem


class Report:
    def __init__(self, loc: Locator):
        self.loc = loc
        self.problems: list[Problem] = []

    def error(self, path: tuple, message: str, *, offset: int | None = None) -> None:
        self.problems.append(self.loc.problem(path, message, "error", offset))

    def warning(self, path: tuple, message: str, *, offset: int | None = None) -> None:
        self.problems.append(self.loc.problem(path, message, "warning", offset))

    def schema(self, raws: list) -> None:
        """Schema problems: (path, message, ...) tuples; a Raw with `in_flow` has that message for a
        value that stands inside braces or brackets."""
        for raw in raws:
            in_flow = getattr(raw, "in_flow", None)
            self.error(raw[0], in_flow if in_flow and self.loc.in_flow(raw[0][:-1]) else raw[1])

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)
