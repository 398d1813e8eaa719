"""What every target offers the pipeline (a small Protocol; implementations live beside it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, NamedTuple, Protocol, Sequence

Action = Literal["create", "update", "delete"]


class Change(NamedTuple):
    """One planned write. `record` is the full desired record (the portal replaces, never patches).
    A named tuple: immutable, and a large tenant's first plan, which creates over 700,000 of
    them, can make them in C (tuple.__new__ over the fields, engine.plan.diff_entity)."""
    entity: str                      # buildings | units | users | occupancies
    action: Action
    external_id: str
    record: dict[str, Any] | None = None       # create/update: every portal field of the record
    changed: tuple[str, ...] = ()              # update: the fields whose value differs
    before: dict[str, Any] | None = None       # update/delete: the portal's current record
    key: str = ""                              # the ERP key the record came from ('' for deletes)


@dataclass(frozen=True, slots=True)
class Outcome:
    change: Change
    ok: bool
    status: int = 200                 # as the import API would answer (200/201/204/400/404/409)
    code: str | None = None           # the API's error code: invalid, email_taken, unknown_reference, has_dependents, not_found
    message: str | None = None
    field: str | None = None


Progress = Callable[[int], None]      # called with the number of changes just finished


class Target(Protocol):
    name: str

    def read(self, entity: str) -> Iterator[dict[str, Any]]:
        """The current, active records of one resource that carry an external_id (the managed ones)."""

    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> list[Outcome]:
        """Apply changes in the given order (the caller orders them by dependency).
        A refused change does not stop the others; each gets an Outcome. When the target fails
        part-way, the exception it raises carries `partial_outcomes`: what was accepted before,
        and may carry `in_flight`: the changes sent without an answer."""

    def close(self) -> None: ...


def retries_of(target: Any) -> dict | None:
    """The requests a target sent again so far (a target over HTTP has `retries()`, e.g.
    engine.targets.idwell.IdwellTarget), for the summary; None for one that retries nothing.
    The same for a source (engine.sources.api.ApiExtractor; an SQL source retries nothing)."""
    retries = getattr(target, "retries", None)
    return retries() if retries is not None else None
