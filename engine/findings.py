"""Findings: what the engine noticed about the ERP's data, as data.

Every record that does not reach the portal, and every value the engine had to change, becomes a
`Finding` naming the tenant's entity, the ERP key and what to fix in the ERP. The catalogue below
is the one list of codes; reports, docs and tests use it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping

# code -> (severity, dropped?, what the property manager should fix in the ERP)
#   severity: "info" (expected, by design), "warning" (data quality), "error" (record not sent because broken)
CATALOGUE: dict[str, tuple[str, bool, str]] = {
    # filters (the reason codes of the shipped mappings; tenants may declare more)
    "phantom_unit": ("info", True, "nothing: fictitious units (common areas, billing units, dummies) are not portal units"),
    "test_object": ("info", True, "nothing: test objects are excluded by number range"),
    "out_of_scope": ("info", True, "nothing: the record belongs to a Mandant outside this tenant's scope"),
    "pseudo_person": ("info", True, "nothing: pseudo persons such as 'Leerstand' are not residents"),
    "vacancy_contract": ("info", True, "nothing: vacancy (Leerstand) contracts have no resident"),
    "filtered": ("info", True, "nothing: excluded by a tenant filter"),
    "filter_excludes_all": ("warning", False, "check the filters' values in the tenant or mapping file (validate warns about values such as 01 that never match a number)"),
    # references and time
    "orphan_unit": ("error", True, "assign the unit to an existing Objekt (building) in the ERP"),
    "unit_of_excluded_building": ("info", True, "nothing, unless the building should be in the portal"),
    "occupancy_unknown_user": ("error", True, "the contract names a person that does not exist in the ERP's address master"),
    "occupancy_excluded_user": ("info", True, "nothing: the contract's person is excluded"),
    "occupancy_unknown_unit": ("error", True, "the contract names a unit that does not exist in the ERP"),
    "occupancy_excluded_unit": ("info", True, "nothing: the contract's unit is excluded (phantom, orphan or filtered)"),
    "contract_ended": ("info", True, "nothing: the contract ended before the grace period"),
    "contract_future": ("info", True, "nothing: the move-in is further ahead than the contract window"),
    "user_without_occupancy": ("info", True, "nothing, unless the person should have portal access: give them a current contract"),
    "duplicate_key": ("error", True, "two ERP records map to the same external_id: make the key unique in the ERP"),
    # e-mail and phone
    "email_invalid": ("warning", False, "correct the e-mail address in the ERP's address master"),
    "email_annotated": ("info", False, "nothing: the annotation was removed; consider a separate note field"),
    "email_multiple": ("info", False, "keep one login address per person; the first valid one is used"),
    "email_shared": ("warning", False, "give each person their own e-mail address, or one account per owner partnership"),
    "email_shared_failed": ("error", False, "give each person their own e-mail address (dedup policy 'fail' stops the run)"),
    "partnership_merged": ("info", False, "nothing: persons of one contract sharing an e-mail became one portal user"),
    "partnership_not_merged": ("warning", False, "the merged user's external_id is another ERP record's: make the keys unique in the ERP"),
    "phone_invalid": ("warning", False, "correct the phone number in the ERP (German or international format)"),
    "phone_shared": ("warning", False, "give each person their own phone number"),
    # code tables
    "code_not_in_table": ("warning", False, "if the code is valid, add it to the tenant's code table override "
                          "(overrides.code_tables, docs/config.md); else correct it in the ERP. Until then the "
                          "field takes the table's default, which the message names"),
    # the import API's record rules
    "name_truncated": ("warning", False, "shorten the field in the ERP to the portal's limit, which the message names"),
    "name_too_long": ("error", True, "shorten the field in the ERP to the portal's limit, which the message names"),
    "invalid_record": ("error", True, "correct the named field in the ERP"),
    "invalid_kept": ("warning", False, "correct the field named by the record's invalid_record finding; until then the portal keeps the record as last sent"),
    # target
    "rejected": ("error", True, "see the portal's message; the record is retried on the next run"),
    "drift": ("info", False, "nothing in the ERP: a portal edit was overwritten because the ERP is master"),
    "email_held": ("warning", False, "nothing, once the extract is complete again: the address stays with the user whose archiving is held back"),
    "deletes_held": ("warning", False, "check that the records are meant to be gone from the ERP (or that the export was complete); the portal keeps them until the sync team releases the deletes"),
}


FILTER_REASONS = ("phantom_unit", "test_object", "out_of_scope", "pseudo_person", "vacancy_contract", "filtered")
"""The catalogue's codes for records a filter excludes. A filter may name a reason of the tenant's
own instead; its severity and advice are what the filter declares, or OWN_SEVERITY and own_advice
(tenant_codes)."""

OWN_SEVERITY = "info"
"""The severity of a reason of the tenant's own whose filters declare none: a filter is an exclusion
the tenant's file asks for on purpose, not a fault of the ERP's data, so the property manager is not
sent to check records that are fine. The advice says which filter (own_advice)."""


def own_advice(names: Iterable[str]) -> str:
    """The advice of a reason of the tenant's own whose filters declare none: `nothing: excluded by
    the filter 'sold_units'` (by the filters 'a' and 'b' where several name the reason)."""
    quoted = [f"'{n}'" for n in dict.fromkeys(names)]
    which = f"filter {quoted[0]}" if len(quoted) == 1 else f"filters {', '.join(quoted[:-1])} and {quoted[-1]}"
    return f"nothing: excluded by the {which}"


def tenant_codes(tenant) -> dict[str, tuple[str, bool, str]]:
    """The catalogue as one tenant's summary and report show it: CATALOGUE, and each reason of the
    tenant's own that its filters name, with the severity and advice a filter of that reason
    declares (validate makes the filters of one reason agree), else OWN_SEVERITY and own_advice."""
    codes = dict(CATALOGUE)
    own: dict[str, list] = {}
    for entity in tenant.entities.values():
        for rule in entity.filters:
            if rule.reason not in CATALOGUE:
                own.setdefault(rule.reason, []).append(rule)
    for reason, rules in own.items():
        severity = next((r.severity for r in rules if r.severity), OWN_SEVERITY)
        advice = next((r.advice for r in rules if r.advice), None) or own_advice(r.name for r in rules)
        codes[reason] = (severity, True, advice)
    return codes


_UNLISTED = (OWN_SEVERITY, True, "nothing: excluded by a filter of the tenant")


def code_info(code: str, codes: Mapping[str, tuple[str, bool, str]] = CATALOGUE) -> tuple[str, str]:
    """(severity, what to fix) of a code as `codes` has it (a tenant's: tenant_codes). A code no
    catalogue holds is a tenant's own filter reason, info."""
    severity, _, fix = codes.get(code) or CATALOGUE.get(code) or _UNLISTED
    return severity, fix


@dataclass(slots=True)
class Finding:
    """Treat as immutable (not frozen only because frozen dataclasses are slow to create, and a
    large tenant's run makes hundreds of thousands of findings)."""
    code: str
    entity: str
    key: str          # the ERP key of the record (or the portal external_id where no ERP key exists)
    message: str
    field: str | None = None

    @property
    def severity(self) -> str:
        """The catalogue's (a reason of the tenant's own: info; code_info with tenant_codes has what
        its filter declares)."""
        return code_info(self.code)[0]

    @property
    def fix(self) -> str:
        """The catalogue's (a reason of the tenant's own: code_info with tenant_codes)."""
        return code_info(self.code)[1]

    def as_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "entity": self.entity, "key": self.key,
                "field": self.field, "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        where = f"{self.entity} {self.key}" + (f" .{self.field}" if self.field else "")
        return f"[{self.code}] {where}: {self.message}"


def count_by_code(findings: Iterable[Finding]) -> dict[str, int]:
    return dict(sorted(Counter(f.code for f in findings).items()))


def by_severity(counts: dict[str, int], codes: Mapping[str, tuple[str, bool, str]] = CATALOGUE) -> list[tuple[str, int]]:
    """(code, count) pairs as the summary and the report list them: errors first, then warnings,
    then info, each by code (the severities of `codes`, a tenant's: tenant_codes)."""
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(counts.items(), key=lambda kv: (order.get(code_info(kv[0], codes)[0], 1), kv[0]))
