"""The manifest of a generated demo ERP: which hard case sits under which ERP keys, and row counts.

Tests and the demo use it to assert that the engine handled each case. `CODES` is the one list of
hard-case codes; docs/demo-erp.md explains each and what the engine should do with it. An instance
is a small dict: key kinds (`objektnr`, `einheitid`, `adressnr`, `vertragnr`) -> list of ints, plus
optional facts about the case (`field`, `raw`, `expected`).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

REFERENCE_DATE = dt.date(2026, 6, 1)
FUTURE_DAYS = 60
GRACE_DAYS = 30

CODES: tuple[str, ...] = (
    # e-mail
    "email_case_variant", "email_whitespace_variant", "couple_shared_email", "couple_shared_email_and_parking",
    "email_shared_unrelated", "email_multiple_semicolon", "email_multiple_comma", "email_annotated",
    "email_invalid",
    # phone
    "phone_german_format", "phone_garbage", "phone_shared",
    # units and objects
    "phantom_by_type", "phantom_by_flag", "phantom_by_name", "orphan_unit", "test_object", "out_of_scope_object",
    # contracts and the window (relative to REFERENCE_DATE, FUTURE_DAYS, GRACE_DAYS)
    "vacancy_contract", "pseudo_person", "contract_ended_long_ago", "contract_ended_beyond_grace_edge",
    "contract_ended_grace_edge", "contract_ended_in_grace", "contract_future_in_window",
    "contract_future_window_edge", "contract_future_beyond_window_edge", "contract_future_beyond_window",
    "tenant_change", "owner_and_tenant_same_unit", "owner_multiple_objects", "contract_unknown_unit",
    "party_unknown_person",
    # persons
    "umlaut_names", "name_over_70", "company_person", "couple_as_one_address", "person_without_contract",
    "salutation_not_in_table",
)


@dataclass
class Manifest:
    size: str
    seed: int
    reference_date: str = REFERENCE_DATE.isoformat()
    future_days: int = FUTURE_DAYS
    grace_days: int = GRACE_DAYS
    counts: dict[str, int] = field(default_factory=dict)
    cases: dict[str, list[dict]] = field(default_factory=lambda: {code: [] for code in CODES})

    def add(self, code: str, **facts) -> None:
        """Record one instance of a hard case; list-valued facts are ERP keys."""
        if code not in self.cases:
            raise KeyError(f"unknown hard-case code {code!r}; valid values are: {', '.join(CODES)}")
        self.cases[code].append(facts)

    def keys(self, code: str, kind: str) -> list:
        """All ERP keys of one kind over the instances of `code`, in order, without repeats."""
        seen: dict = {}
        for instance in self.cases[code]:
            for key in instance.get(kind, ()):
                seen.setdefault(key, None)
        return list(seen)

    def summary(self) -> dict[str, int]:
        """Instances per code."""
        return {code: len(items) for code, items in self.cases.items()}

    def as_dict(self) -> dict:
        return {"size": self.size, "seed": self.seed, "reference_date": self.reference_date,
                "future_days": self.future_days, "grace_days": self.grace_days, "counts": self.counts,
                "cases": self.cases}

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":")), "utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        data = json.loads(Path(path).read_text("utf-8"))
        return cls(size=data["size"], seed=data["seed"], reference_date=data["reference_date"],
                   future_days=data["future_days"], grace_days=data["grace_days"], counts=data["counts"],
                   cases=data["cases"])
