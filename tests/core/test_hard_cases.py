"""Every hard case of the demo ERP ends up as the right portal state or finding (the demo tenant:
merge_partnership with fallback first_wins, window 2026-06-01 -30/+60 days, long names truncated).

One test per hard-case code of the manifest. Each instance names its ERP keys; the expectation comes
from the domain rule for that case and from the ERP rows, and is checked against what a user sees:
the local portal store and the findings (code, entity, ERP key, field).
"""
from __future__ import annotations

import datetime as dt
import re

import pytest

from engine.demo import CODES, FUTURE_DAYS, GRACE_DAYS, REFERENCE_DATE
from engine.expr.emails import PLACEHOLDERS
from engine.expr.phones import PLACEHOLDERS as PHONE_PLACEHOLDERS
from engine.findings import CATALOGUE

PHONE_FIELD = {"telefon": "phone", "mobil": "mobile"}
NAME_FIELD = {"nachname": "last_name", "vorname": "first_name"}
ROLE_RANK = {"owner": 0, "tenant": 1}
DROPPING = {code for code, (_, dropped, _) in CATALOGUE.items() if dropped}


# -- what the ERP says --------------------------------------------------------------------------
def contract(run, v) -> dict:
    rows = run.ws.erp_rows("SELECT * FROM vertrag WHERE vertragnr = ?", (v,))
    assert rows, f"contract {v} is not in the ERP"
    return dict(rows[0])


def parties(run, v) -> list[int]:
    return [r["adressnr"] for r in run.ws.erp_rows(
        "SELECT adressnr FROM vertragpartner WHERE vertragnr = ? ORDER BY position", (v,))]


def person(run, p) -> dict | None:
    rows = run.ws.erp_rows("SELECT * FROM adresse WHERE adressnr = ?", (p,))
    return dict(rows[0]) if rows else None


def day(value) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(str(value)[:10])


def in_window(c: dict) -> bool:
    """The contract window rule with the demo tenant's window (both edges inclusive)."""
    end, start = day(c["ende"]), day(c["beginn"])
    return (end is None or end >= REFERENCE_DATE - dt.timedelta(days=GRACE_DAYS)) and \
        (start is None or start <= REFERENCE_DATE + dt.timedelta(days=FUTURE_DAYS))


def login(raw: str) -> str:
    """The e-mail rule for a plain address: trimmed and lower-cased."""
    return raw.strip().lower()


# -- what the portal and the findings say ---------------------------------------------------------
def assert_not_sent_person(run, p, why: str = "") -> None:
    assert run.portal.portal_user_of(p) is None, f"person {p} should not be in the portal {why}"
    codes = run.findings.codes("users", p)
    assert codes & DROPPING, f"person {p} is missing from the portal without a finding: {codes}"


def assert_kept_contract(run, v) -> None:
    occ = run.portal.occupancies_of_contract(v)
    c = contract(run, v)
    assert occ, f"contract {v} ({c['beginn']}..{c['ende']}) is in the window but has no occupancy in the portal"
    for p in parties(run, v):
        user = run.portal.portal_user_of(p)
        assert user is not None, f"party {p} of contract {v} is not in the portal"
        assert user in {o["user_id"] for o in occ}, f"party {p} of contract {v} has no occupancy of it"
    for o in occ:
        assert o["unit_id"] == str(c["einheitid"])
        assert o["start_date"] == (str(c["beginn"])[:10] if c["beginn"] else None)
        assert o["end_date"] == (str(c["ende"])[:10] if c["ende"] else None)
    assert not any(f.code in ("contract_ended", "contract_future") for p in parties(run, v)
                   for f in run.findings.of("occupancies", f"{v}/{p}"))


def assert_dropped_contract(run, v, code: str) -> None:
    assert run.portal.occupancies_of_contract(v) == []
    for p in parties(run, v):
        assert run.findings.of("occupancies", f"{v}/{p}", code), f"occupancy {v}/{p}: no finding {code}"


def winner_by_order(run, users: list[str]) -> str:
    """The declared order (owner before tenant, then earliest start, then lowest key), applied to the
    occupancies the portal holds for each candidate."""
    def rank(u):
        occ = run.portal.occupancies_of_user(u)
        return (min(ROLE_RANK.get(o["role"], 9) for o in occ), min(o["start_date"] for o in occ), u)
    return min(users, key=rank)


# -- the checks, one per hard-case code --------------------------------------------------------
# Each check asserts one instance and returns True when the instance shows the case in the portal
# (a person who has no current contract shows nothing there); every code must be shown at least once.

def check_email_variant(run, inst) -> bool:
    (a, b), (r1, r2) = inst["adressnr"], inst["raw"]
    assert r1 != r2 and login(r1) == login(r2)
    assert [person(run, a)["email"], person(run, b)["email"]] == [r1, r2]
    address = login(r1)
    users = [run.portal.portal_user_of(p) for p in (a, b)]
    holders = run.portal.holders(address)
    assert len(holders) <= 1
    for p, user in zip((a, b), users):
        if user is None:
            assert_not_sent_person(run, p)
        elif user not in holders:
            assert run.portal["users"][user]["email"] is None
            assert run.findings.of("users", p, "email_shared") or \
                run.findings.of("users", run.findings_key(user), "email_shared")
    if None in users:
        return False
    assert holders and holders[0] in users, f"nobody of {a}, {b} holds {address}"
    return True


def check_couple_shared_email(run, inst) -> bool:
    members, (v,) = inst["adressnr"], inst["vertragnr"]
    assert sorted(members) == sorted(parties(run, v))
    raws = {login(person(run, p)["email"]) for p in members}
    assert len(raws) == 1, f"the couple does not share an address: {raws}"
    if not in_window(contract(run, v)):
        for p in members:
            assert run.portal.portal_user_of(p) is None or run.portal.portal_user_of(p) == str(p)
        return False
    merged = "+".join(sorted(str(p) for p in members))
    assert run.portal.portal_user_of(members[0]) == merged, f"couple {members} of contract {v} is not one portal user"
    for p in members:
        assert str(p) not in run.portal["users"]
        assert run.findings.of("users", p, "partnership_merged")
    user = run.portal["users"][merged]
    full = f"{user['first_name'] or ''} {user['last_name']}"
    for p in members:
        erp = person(run, p)
        for part in (erp["vorname"], erp["nachname"]):
            assert part is None or part.strip() in full, f"{part!r} missing from the merged name {full!r}"
    if user["email"] is None:       # the address is shared beyond the couple and another holder keeps it
        assert run.findings.of("users", run.findings_key(merged), "email_shared")
    else:
        assert user["email"] == raws.pop()
    occ = run.portal.occupancies_of_contract(v)
    assert [o["user_id"] for o in occ] == [merged], f"contract {v}: one occupancy of the merged user, got {occ}"
    return True


def check_couple_and_parking(run, inst) -> bool:
    members, (flat, park) = inst["adressnr"], inst["vertragnr"]
    assert check_couple_shared_email(run, {"adressnr": members, "vertragnr": [flat]})
    merged = run.portal.portal_user_of(members[0])
    park_unit = contract(run, park)["einheitid"]
    assert run.ws.erp_rows("SELECT typcode FROM einheit WHERE einheitid = ?", (park_unit,))[0]["typcode"] == 3
    assert run.portal["units"][str(park_unit)]["type"] == "parking"
    occ = run.portal.occupancies_of_contract(park)
    assert [(o["user_id"], o["unit_id"]) for o in occ] == [(merged, str(park_unit))], \
        "the shared parking space hangs under the merged user, once"
    return True


def check_email_shared_unrelated(run, inst) -> bool:
    a, b = inst["adressnr"]
    contracts = [{r["vertragnr"] for r in run.ws.erp_rows(
        "SELECT vertragnr FROM vertragpartner WHERE adressnr = ?", (p,))} for p in (a, b)]
    assert not contracts[0] & contracts[1], "unrelated persons share no contract"
    address = login(person(run, a)["email"])
    assert login(person(run, b)["email"]) == address
    users = [run.portal.portal_user_of(p) for p in (a, b)]
    if None in users:
        return False
    winner = winner_by_order(run, users)
    assert run.portal.holders(address) == [winner], f"{address}: expected the fallback first_wins winner {winner}"
    loser_p, loser = next((p, u) for p, u in zip((a, b), users) if u != winner)
    assert run.portal["users"][loser]["email"] is None
    shared = run.findings.of("users", run.findings_key(loser), "email_shared")
    assert shared and shared[0].field == "email"
    assert f"kept by {run.findings_key(winner)}" in shared[0].message
    return True


def check_email_multiple(run, inst) -> bool:
    (p,), raw, expected = inst["adressnr"], inst["raw"], inst["expected"]
    assert person(run, p)["email"] == raw
    # several valid addresses: email_multiple; a valid one next to a broken one: email_invalid naming the
    # part that was ignored. Either way the property manager learns what happened to the rest of the field.
    others = [part.strip() for part in re.split(r"[;,]", raw) if login(part) != login(expected)]
    told = run.findings.of("users", p, "email_multiple") + run.findings.of("users", p, "email_invalid")
    assert told and {f.field for f in told} == {"email"}, f"{raw!r}: nothing tells about {others}"
    for f in run.findings.of("users", p, "email_invalid"):
        assert "ignored invalid part" in f.message and any(o in f.message for o in others), f.message
    return check_login_in_portal(run, p, login(expected))


def check_email_annotated(run, inst) -> bool:
    (p,), raw, expected = inst["adressnr"], inst["raw"], inst["expected"]
    assert person(run, p)["email"] == raw
    assert run.findings.of("users", p, "email_annotated")
    assert not run.findings.of("users", p, "email_invalid")
    return check_login_in_portal(run, p, login(expected))


def check_login_in_portal(run, p, address: str) -> bool:
    user = run.portal.portal_user_of(p)
    if user is None:
        assert_not_sent_person(run, p)
        return False
    email = run.portal["users"][user]["email"]
    if email is None:       # lost the address to another holder: reported
        assert run.findings.of("users", run.findings_key(user), "email_shared")
        assert run.portal.holders(address)
        return False
    assert email == address
    return True


def check_email_invalid(run, inst) -> bool:
    (p,), raw = inst["adressnr"], inst["raw"]
    assert person(run, p)["email"] == raw
    placeholder = raw.strip().lower() in PLACEHOLDERS       # 'keine', 'k.A.': no address, nothing to report
    invalid = run.findings.of("users", p, "email_invalid")
    assert [f.field for f in invalid] == ([] if placeholder else ["email"]), raw
    user = run.portal.portal_user_of(p)
    if user is None:
        assert_not_sent_person(run, p)
        return False
    return run.portal["users"][user]["email"] is None if user == str(p) else False


def check_phone_format(run, inst) -> bool:
    (p,), column, raw, expected = inst["adressnr"], inst["field"], inst["raw"], inst["expected"]
    assert person(run, p)[column] == raw
    name = PHONE_FIELD[column]
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", expected)
    assert not [f for f in run.findings.of("users", p, "phone_invalid") if f.field == name]
    if str(p) not in run.portal["users"]:
        return False
    assert run.portal["users"][str(p)][name] == expected, f"{raw!r} should arrive as {expected}"
    return True


def check_phone_garbage(run, inst) -> bool:
    """Sent empty; text that is no number is reported, a placeholder ('keine', '-', '0') is an
    empty field, as an e-mail field's is (PLACEHOLDERS)."""
    (p,), column, raw = inst["adressnr"], inst["field"], inst["raw"]
    assert person(run, p)[column] == raw
    name = PHONE_FIELD[column]
    reported = [f.field for f in run.findings.of("users", p, "phone_invalid") if f.field == name]
    assert reported == ([] if raw.strip().casefold() in PHONE_PLACEHOLDERS else [name]), raw
    if str(p) not in run.portal["users"]:
        return False
    assert run.portal["users"][str(p)][name] is None
    return True


def check_phone_shared(run, inst) -> bool:
    (a, b), column = inst["adressnr"], inst["field"]
    name = PHONE_FIELD[column]
    users = {run.portal.portal_user_of(p) for p in (a, b)}
    assert not run.findings.of("users", a, "phone_shared") and not run.findings.of("users", b, "phone_shared")
    if None in users or len(users) == 1:        # merged couples carry the number once
        return False
    numbers = {run.portal["users"][u][name] for u in users}
    assert len(numbers) == 1 and None not in numbers, f"phone.unique is off: both keep the number, got {numbers}"
    return True


def check_phantom(rule: str):
    def check(run, inst) -> bool:
        (u,) = inst["einheitid"]
        assert str(u) not in run.portal["units"]
        found = run.findings.of("units", u, "phantom_unit")
        assert len(found) == 1 and f"filter '{rule}'" in found[0].message, found
        return True
    return check


def check_orphan_unit(run, inst) -> bool:
    (u,), (o,), (v,) = inst["einheitid"], inst["objektnr"], inst["vertragnr"]
    assert not run.ws.erp_rows("SELECT 1 FROM objekt WHERE objektnr = ?", (o,))
    assert str(u) not in run.portal["units"] and str(o) not in run.portal["buildings"]
    assert [f.field for f in run.findings.of("units", u, "orphan_unit")] == ["building_id"]
    assert run.portal.occupancies_of_contract(v) == []
    for p in inst["adressnr"]:
        assert run.findings.of("occupancies", f"{v}/{p}", "occupancy_excluded_unit")
        user = run.portal.portal_user_of(p)
        if user is None:        # the contract is current: the report must not say the person has none
            [dropped] = run.findings.of("users", p, "user_without_occupancy")
            assert "contract window are not sent (occupancy_excluded_unit)" in dropped.message, dropped.message
        else:
            assert str(u) not in {o["unit_id"] for o in run.portal.occupancies_of_user(user)}
    return True


def check_excluded_object(reason: str):
    def check(run, inst) -> bool:
        (o,), units = inst["objektnr"], inst["einheitid"]
        assert str(o) not in run.portal["buildings"]
        assert run.findings.of("buildings", o, reason)
        assert {u for (u,) in run.ws.erp_rows("SELECT einheitid FROM einheit WHERE objektnr = ?", (o,))} == set(units)
        for u in units:
            assert str(u) not in run.portal["units"]
            assert run.findings.of("units", u, "unit_of_excluded_building")
            for c in run.ws.erp_rows("SELECT vertragnr FROM vertrag WHERE einheitid = ?", (u,)):
                assert run.portal.occupancies_of_contract(c["vertragnr"]) == []
        return True
    return check


def check_vacancy(run, inst) -> bool:
    (v,), (u,), (p,) = inst["vertragnr"], inst["einheitid"], inst["adressnr"]
    assert contract(run, v)["art"] == "L"
    assert run.findings.of("occupancies", f"{v}/{p}", "vacancy_contract")
    assert run.portal.occupancies_of_contract(v) == []
    assert run.portal.portal_user_of(p) is None
    assert str(u) in run.portal["units"], "a vacant unit is still a unit of the portal"
    return True


def check_pseudo_person(run, inst) -> bool:
    (p,) = inst["adressnr"]
    assert run.findings.of("users", p, "pseudo_person")
    assert run.portal.portal_user_of(p) is None
    for c in run.ws.erp_rows("SELECT vertragnr FROM vertragpartner WHERE adressnr = ?", (p,)):
        assert not [o for o in run.portal.occupancies_of_contract(c["vertragnr"]) if o["user_id"] == str(p)]
    return True


def check_window(kind: str, edge_offset: int | None):
    """kind: ended/future; edge_offset: the exact distance from the window's edge the case sits at
    (0: on the edge, 1: one day beyond it), None: anywhere on that side."""
    grace_edge = REFERENCE_DATE - dt.timedelta(days=GRACE_DAYS)
    future_edge = REFERENCE_DATE + dt.timedelta(days=FUTURE_DAYS)

    def check(run, inst) -> bool:
        (v,) = inst["vertragnr"]
        c = contract(run, v)
        assert sorted(inst["adressnr"]) == sorted(parties(run, v))
        if kind == "ended":
            end = day(c["ende"])
            if edge_offset is not None:
                assert end == grace_edge - dt.timedelta(days=edge_offset)
        else:
            start = day(c["beginn"])
            if edge_offset is not None:
                assert start == future_edge + dt.timedelta(days=edge_offset)
        if in_window(c):
            assert_kept_contract(run, v)
        else:
            assert_dropped_contract(run, v, f"contract_{kind}")
            for p in parties(run, v):
                user = run.portal.portal_user_of(p)
                if user is None:
                    assert run.findings.of("users", p, "user_without_occupancy")
        return True
    return check


def check_kept_or_dropped(kept: bool, kind: str, edge_offset: int | None):
    check = check_window(kind, edge_offset)

    def outer(run, inst) -> bool:
        assert in_window(contract(run, inst["vertragnr"][0])) is kept
        return check(run, inst)
    return outer


def check_tenant_change(run, inst) -> bool:
    (u,), (old, new) = inst["einheitid"], inst["vertragnr"]
    a, b = contract(run, old), contract(run, new)
    assert a["einheitid"] == b["einheitid"] == u and a["art"] == b["art"] == "M"
    assert day(a["ende"]) + dt.timedelta(days=1) == day(b["beginn"])
    for c in (a, b):
        if in_window(c):
            assert_kept_contract(run, c["vertragnr"])
        else:
            assert run.portal.occupancies_of_contract(c["vertragnr"]) == []
    return in_window(a) and in_window(b)


def check_owner_and_tenant(run, inst) -> bool:
    (u,), (e, t) = inst["einheitid"], inst["vertragnr"]
    ce, ct = contract(run, e), contract(run, t)
    assert (ce["art"], ct["art"], ce["einheitid"], ct["einheitid"]) == ("E", "M", u, u)
    if not (in_window(ce) and in_window(ct)):
        return False
    if str(u) not in run.portal["units"]:       # e.g. a unit of an out-of-scope object: explained
        assert run.findings.codes("units", u) & DROPPING
        assert run.portal.occupancies_of_contract(e) == run.portal.occupancies_of_contract(t) == []
        return False
    assert {o["role"] for o in run.portal.occupancies_of_contract(e)} == {"owner"}
    assert {o["role"] for o in run.portal.occupancies_of_contract(t)} == {"tenant"}
    assert {o["unit_id"] for o in run.portal.occupancies_of_contract(e) + run.portal.occupancies_of_contract(t)} == {str(u)}
    return True


def check_owner_multiple_objects(run, inst) -> bool:
    (p,), objects = inst["adressnr"], inst["objektnr"]
    user = run.portal.portal_user_of(p)
    assert user is not None
    owned = {run.portal["units"][o["unit_id"]]["building_id"]
             for o in run.portal.occupancies_of_user(user) if o["role"] == "owner"}
    assert {str(o) for o in objects} <= owned
    return True


def check_contract_unknown_unit(run, inst) -> bool:
    (v,), (u,) = inst["vertragnr"], inst["einheitid"]
    assert not run.ws.erp_rows("SELECT 1 FROM einheit WHERE einheitid = ?", (u,))
    assert run.portal.occupancies_of_contract(v) == []
    for p in inst["adressnr"]:
        assert [f.field for f in run.findings.of("occupancies", f"{v}/{p}", "occupancy_unknown_unit")] == ["unit_id"]
    return True


def check_party_unknown_person(run, inst) -> bool:
    (v,), (missing,) = inst["vertragnr"], inst["adressnr"]
    assert person(run, missing) is None and missing in parties(run, v)
    assert [f.field for f in run.findings.of("occupancies", f"{v}/{missing}", "occupancy_unknown_user")] == ["user_id"]
    others = [p for p in parties(run, v) if p != missing]
    assert others, "the contract has a real party too"
    occ_users = {o["user_id"] for o in run.portal.occupancies_of_contract(v)}
    for p in others:
        assert run.portal.portal_user_of(p) in occ_users, "the real party keeps the occupancy"
    return True


def check_umlaut_names(run, inst) -> bool:
    shown = False
    for p in inst.get("adressnr", []):
        erp = person(run, p)
        user = run.portal["users"].get(str(p))
        if user is None or run.findings.of("users", p, "name_truncated"):
            continue
        assert (user["first_name"], user["last_name"]) == \
            ((erp["vorname"] or "").strip() or None, erp["nachname"].strip())
        shown = shown or not (erp["nachname"] + (erp["vorname"] or "")).isascii()
    for o in inst.get("objektnr", []):
        erp = dict(run.ws.erp_rows("SELECT * FROM objekt WHERE objektnr = ?", (o,))[0])
        b = run.portal["buildings"][str(o)]
        assert (b["name"], b["street"], b["city"]) == (erp["bezeichnung"], erp["strasse"], erp["ort"])
        shown = shown or not (erp["bezeichnung"] + erp["strasse"] + erp["ort"]).isascii()
    return shown


def check_name_over_70(run, inst) -> bool:
    (p,), column, length = inst["adressnr"], inst["field"], inst["length"]
    value = person(run, p)[column]
    assert len(value) == length > 70
    name = NAME_FIELD[column]
    assert [f.field for f in run.findings.of("users", p, "name_truncated")] == [name]
    if str(p) not in run.portal["users"]:
        return False
    sent = run.portal["users"][str(p)][name]
    assert sent == value.strip()[:70].rstrip() and len(sent) <= 70
    return True


def check_company(run, inst) -> bool:
    (p,) = inst["adressnr"]
    assert person(run, p)["anrede"].strip().lower() == "firma"
    user = run.portal["users"].get(str(p))
    if user is None:
        return False
    assert (user["salutation"], user["first_name"]) == ("company", None)
    return True


def check_couple_as_one_address(run, inst) -> bool:
    (p,) = inst["adressnr"]
    erp = person(run, p)
    assert erp["anrede"].strip().lower() in ("eheleute", "fam.", "familie")
    user = run.portal["users"].get(str(p))
    if user is None:
        return False
    assert user["salutation"] == "family"
    assert (user["first_name"], user["last_name"]) == ((erp["vorname"] or "").strip() or None, erp["nachname"].strip())
    return True


def check_salutation_not_in_table(run, inst) -> bool:
    (p,) = inst["adressnr"]
    assert person(run, p)["anrede"] == inst["raw"]
    user = run.portal["users"].get(str(p))
    if user is None:
        return False
    assert user["salutation"] is None
    [finding] = run.findings.of("users", p, "code_not_in_table")
    assert finding.field == "salutation"
    assert finding.message == (f"Anrede {inst['raw']!r} is not in the code table 'salutations': salutation became "
                               f"null (1 record: {p})")
    return True


def check_person_without_contract(run, inst) -> bool:
    (p,) = inst["adressnr"]
    assert not run.ws.erp_rows("SELECT 1 FROM vertragpartner WHERE adressnr = ?", (p,))
    assert run.findings.of("users", p, "user_without_occupancy")
    assert run.portal.portal_user_of(p) is None
    return True


CHECKS = {
    "email_case_variant": check_email_variant,
    "email_whitespace_variant": check_email_variant,
    "couple_shared_email": check_couple_shared_email,
    "couple_shared_email_and_parking": check_couple_and_parking,
    "email_shared_unrelated": check_email_shared_unrelated,
    "email_multiple_semicolon": check_email_multiple,
    "email_multiple_comma": check_email_multiple,
    "email_annotated": check_email_annotated,
    "email_invalid": check_email_invalid,
    "phone_german_format": check_phone_format,
    "phone_garbage": check_phone_garbage,
    "phone_shared": check_phone_shared,
    "phantom_by_type": check_phantom("phantom_type"),
    "phantom_by_flag": check_phantom("phantom_flag"),
    "phantom_by_name": check_phantom("phantom_name"),
    "orphan_unit": check_orphan_unit,
    "test_object": check_excluded_object("test_object"),
    "out_of_scope_object": check_excluded_object("out_of_scope"),
    "vacancy_contract": check_vacancy,
    "pseudo_person": check_pseudo_person,
    "contract_ended_long_ago": check_kept_or_dropped(False, "ended", None),
    "contract_ended_beyond_grace_edge": check_kept_or_dropped(False, "ended", 1),
    "contract_ended_grace_edge": check_kept_or_dropped(True, "ended", 0),
    "contract_ended_in_grace": check_kept_or_dropped(True, "ended", None),
    "contract_future_in_window": check_kept_or_dropped(True, "future", None),
    "contract_future_window_edge": check_kept_or_dropped(True, "future", 0),
    "contract_future_beyond_window_edge": check_kept_or_dropped(False, "future", 1),
    "contract_future_beyond_window": check_kept_or_dropped(False, "future", None),
    "tenant_change": check_tenant_change,
    "owner_and_tenant_same_unit": check_owner_and_tenant,
    "owner_multiple_objects": check_owner_multiple_objects,
    "contract_unknown_unit": check_contract_unknown_unit,
    "party_unknown_person": check_party_unknown_person,
    "umlaut_names": check_umlaut_names,
    "name_over_70": check_name_over_70,
    "company_person": check_company,
    "couple_as_one_address": check_couple_as_one_address,
    "person_without_contract": check_person_without_contract,
    "salutation_not_in_table": check_salutation_not_in_table,
}


def test_the_demo_tenant_uses_the_window_the_manifest_is_built_on(demo_run):
    window = demo_run.result.prepared.tenant.window
    m = demo_run.manifest
    assert (window.reference_date.isoformat(), window.grace_days, window.future_days) == \
        (m.reference_date, m.grace_days, m.future_days)
    assert demo_run.result.prepared.tenant.email_dedup.policy == "merge_partnership"
    assert demo_run.result.prepared.tenant.email_dedup.fallback == "first_wins"


@pytest.mark.parametrize("code", CODES)
def test_hard_case(demo_run, code):
    assert code in CHECKS, f"no expectation for the hard case {code!r}: add one to CHECKS"
    instances = demo_run.manifest.cases[code]
    assert instances, f"the S demo has no instance of {code}"
    shown = [CHECKS[code](demo_run, inst) for inst in instances]
    assert any(shown), f"no instance of {code} shows in the portal: {instances[:3]}"


def test_the_run_is_clean_and_nothing_is_refused(demo_run):
    r = demo_run.result
    assert (r.exit_code, r.summary["status"]) == (0, "ok")
    assert not demo_run.findings.keys("rejected")
    assert r.summary["writes"] == sum(len(demo_run.portal[e]) for e in demo_run.portal.records)


def test_every_record_extracted_is_sent_or_excluded_with_a_reason(demo_run):
    """docs/summary.md: extracted = excluded + desired per entity, up to partnership merges, which count
    their members under `excluded` and add the merged user to `desired`."""
    s = demo_run.result.summary
    merged_users = [i for i in demo_run.portal["users"] if "+" in i]
    assert merged_users, "the demo merges couples"
    for entity, c in s["entities"].items():
        added = len(merged_users) if entity == "users" else 0
        assert c["extracted"] + added == sum(c["excluded"].values()) + c["desired"], (entity, c)
        assert c["desired"] == len(demo_run.portal[entity]), entity
        assert c["create"] == c["desired"] and c["update"] == c["delete"] == c["unchanged"] == 0
    members = sum(len(i.split("+")) for i in merged_users)
    assert s["entities"]["users"]["excluded"]["partnership_merged"] == members


def test_extracted_counts_are_the_erp_rows(demo_run):
    s = demo_run.result.summary["entities"]
    rows = {t: demo_run.ws.erp_rows(f"SELECT count(*) AS n FROM {t}")[0]["n"]
            for t in ("objekt", "einheit", "adresse", "vertragpartner")}
    assert (s["buildings"]["extracted"], s["units"]["extracted"], s["users"]["extracted"],
            s["occupancies"]["extracted"]) == (rows["objekt"], rows["einheit"], rows["adresse"], rows["vertragpartner"])


@pytest.mark.parametrize("contract", ["current", "ended"])
def test_the_balance_holds_when_the_erp_repeats_a_key(ws, contract):
    """A person listed twice as party of one contract gives two rows with one external_id: the second
    is not sent (duplicate_key) and still counted under `excluded`."""
    which = "v.ende IS NULL" if contract == "current" else "v.ende < '2020-01-01'"
    row = ws.erp_rows("SELECT p.vertragnr, max(p.adressnr) AS adressnr FROM vertragpartner p "
                      f"JOIN vertrag v USING (vertragnr) WHERE v.art IN ('M', 'E') AND {which} "
                      "GROUP BY p.vertragnr ORDER BY p.vertragnr LIMIT 1")[0]
    ws.erp_execute(("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 9)",
                    (row["vertragnr"], row["adressnr"])))
    result = ws.run()
    key = f"{row['vertragnr']}/{row['adressnr']}"
    c = result.summary["entities"]["occupancies"]
    assert c["extracted"] == sum(c["excluded"].values()) + c["desired"], "every row is sent or excluded once"
    if contract == "current":
        [dup] = [f for f in result.findings if f.code == "duplicate_key"]
        assert (dup.entity, dup.key) == ("occupancies", key)
        assert c["excluded"].get("duplicate_key") == 1
    else:       # out of the window either way: both rows are reported for the window
        assert [f.code for f in result.findings if f.entity == "occupancies" and f.key == key] == ["contract_ended"] * 2


def test_a_duplicate_key_says_which_row_was_sent_and_which_was_not(ws):
    """Two address rows with one AdressNr: the finding tells them apart by their values, so the
    property manager can see which person's data is missing from the portal."""
    nr = ws.erp_rows("SELECT min(p.adressnr) AS a FROM vertragpartner p JOIN vertrag v USING (vertragnr) "
                     "WHERE v.art = 'M' AND v.ende IS NULL")[0]["a"]
    first = ws.erp_rows("SELECT vorname, nachname FROM adresse WHERE adressnr = ?", (nr,))[0]
    query = ("SELECT a.AdressNr, a.Anrede, a.Titel, a.Vorname, a.Nachname, a.Email, a.Telefon, a.Mobil, a.Sprache "
             f"FROM Adresse a UNION ALL SELECT {nr}, 'Herr', NULL, 'Doppelt', 'Zweitname', 'dup@example.de', NULL, "
             "NULL, 'de'")              # an ERP view that repeats a key (the table itself has it unique)
    result = ws.run(ws.tenant(overrides={"entities": {"users": {"query": query}}}))
    [dup] = [f for f in result.findings if f.code == "duplicate_key"]
    assert (dup.entity, dup.key) == ("users", str(nr))
    sent, not_sent = dup.message.split("; this row is not sent")
    assert f"another row with the same ERP key {nr}, read first and sent" in sent
    assert repr(first["nachname"].strip()) in sent and "Zweitname" not in sent
    assert "'Zweitname'" in not_sent and "'Doppelt'" in not_sent
    assert ws.portal()["users"][str(nr)]["last_name"] == first["nachname"].strip()


@pytest.mark.parametrize("filtered_first", [False, True])
def test_the_balance_holds_when_a_repeated_key_is_filtered_in_one_row_and_dropped_later(ws, filtered_first):
    """An ERP view that repeats the orphan unit's key in a row the phantom filter excludes: the
    filtered row and the orphan are two rows, each counted under its own reason (the orphan's
    exclusion replaced the filtered row's, so the summary lost a row)."""
    [orphan] = ws.manifest.keys("orphan_unit", "einheitid")
    units = "SELECT e.EinheitID, e.ObjektNr, e.EinheitNr, e.Bezeichnung, e.TypCode, e.Fiktiv, e.Etage, e.Flaeche FROM Einheit e"
    phantom = (f"SELECT e.EinheitID, e.ObjektNr, e.EinheitNr, 'Heizzentrale' AS Bezeichnung, 90 AS TypCode, e.Fiktiv, e.Etage, e.Flaeche "
               f"FROM Einheit e WHERE e.EinheitID = {orphan}")
    query = f"{phantom} UNION ALL {units}" if filtered_first else f"{units} UNION ALL {phantom}"
    result = ws.run(ws.tenant(overrides={"entities": {"units": {"query": query}}}))
    c = result.summary["entities"]["units"]
    assert c["extracted"] == sum(c["excluded"].values()) + c["desired"], c
    codes = [f.code for f in result.findings if f.entity == "units" and f.key == str(orphan)]
    assert sorted(codes) == ["orphan_unit", "phantom_unit"]
    assert c["excluded"]["orphan_unit"] == 1
    assert c["excluded"]["phantom_unit"] == result.summary["findings"]["phantom_unit"]


def test_a_row_without_a_key_is_described_by_its_values(ws):
    query = ("SELECT a.AdressNr, a.Anrede, a.Titel, a.Vorname, a.Nachname, a.Email, a.Telefon, a.Mobil, a.Sprache "
             "FROM Adresse a UNION ALL SELECT NULL, 'Frau', NULL, 'Ohne', 'Schluessel', 'ohne@example.de', NULL, "
             "NULL, 'de'")
    result = ws.run(ws.tenant(overrides={"entities": {"users": {"query": query}}}))
    [unkeyed] = [f for f in result.findings if f.code == "invalid_record" and f.field == "external_id"]
    assert (unkeyed.entity, unkeyed.key) == ("users", "(empty)")
    described = unkeyed.message.split("the row: ")[1]     # column names as the driver spells them
    assert [part.split(" ", 1)[1] for part in described.split(", ")][:4] == \
        ["'Frau'", "'Ohne'", "'Schluessel'", "'ohne@example.de' (external_id = to_text(AdressNr))"]
    assert unkeyed.message.endswith("(external_id = to_text(AdressNr))")


def test_codes_and_numbers_arrive_as_the_erp_writes_them(demo_run):
    """Postal codes and unit numbers keep their leading zeros, country codes are trimmed upper case
    (' de' -> 'DE'), areas are numbers, unit type codes map to the portal's types."""
    portal = demo_run.portal
    objects = {str(r["objektnr"]): r for r in demo_run.ws.erp_rows("SELECT * FROM objekt")}
    assert any(r["land"] != r["land"].strip().upper() for r in objects.values() if r["land"]), "the demo has ' de'"
    for key, b in portal["buildings"].items():
        erp = objects[key]
        assert (b["postal_code"], b["country"]) == (erp["plz"], (erp["land"] or "DE").strip().upper())
    assert any(b["postal_code"].startswith("0") for b in portal["buildings"].values())
    types = {1: "apartment", 2: "commercial", 3: "parking", 4: "storage", 5: "other"}
    units = {str(r["einheitid"]): r for r in demo_run.ws.erp_rows("SELECT * FROM einheit")}
    for key, u in portal["units"].items():
        erp = units[key]
        assert (u["number"], u["type"], u["building_id"]) == (erp["einheitnr"], types[erp["typcode"]], str(erp["objektnr"]))
        assert u["area_m2"] is None or u["area_m2"] == pytest.approx(float(erp["flaeche"]))
    assert any(u["number"].startswith("0") for u in portal["units"].values())
