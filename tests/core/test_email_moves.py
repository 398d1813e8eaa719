"""An e-mail that moves from one portal user to another between nights: a couple merged into one
user, the couple split again, two persons swapping addresses. The portal refuses a second user
with the same address, so the engine must clear it on the old holder first; otherwise the tenant
is stuck with refused writes night after night."""
from __future__ import annotations

import pytest

from engine import normalize
from engine.errors import ExitCode
from engine.targets import local



@pytest.fixture(autouse=True, params=["rows read here", "rows packed by the background reader",
                                      "packed rows, the run's packed only when compared"])
def portal_reader(request, monkeypatch):
    """Each case with the portal read in the foreground and by the background reader
    (engine.current), against whose packed rows the run compares its records packed as they
    became final (dedup changes some of them afterwards), or all packed when it compares."""
    if request.param != "rows read here":
        monkeypatch.setattr(local, "READ_IN_BACKGROUND_FROM", 0)
    if request.param.endswith("when compared"):
        monkeypatch.setattr(normalize, "_packed", lambda *a: None)


MERGE = {"dedup": {"email": {"policy": "merge_partnership", "fallback": "first_wins"}}}


def _new_flat(ws) -> int:
    return ws.add_unit(ws.in_scope_building(), "Wohnung Neu")


def test_a_partner_joining_and_leaving_a_contract_moves_the_login_cleanly(ws):
    tenant = ws.tenant(**MERGE)
    unit = _new_flat(ws)
    hans = ws.add_person("Neumann", "Hans", "hans.neumann@example.org")
    contract = ws.add_contract(unit, "M", "2024-01-01", None, [hans])
    assert ws.run(tenant).exit_code == ExitCode.OK
    assert ws.portal().holders("hans.neumann@example.org") == [str(hans)]

    grete = ws.add_person("Neumann", "Grete", "Hans.Neumann@example.org ")
    ws.erp_execute(("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 2)", (contract, grete)))
    night2 = ws.run(tenant)
    merged = "+".join(sorted([str(hans), str(grete)]))
    portal = ws.portal()
    assert night2.exit_code == ExitCode.OK, night2.summary
    assert portal.holders("hans.neumann@example.org") == [merged]
    assert str(hans) not in portal["users"]
    assert [o["user_id"] for o in portal.occupancies_of_contract(contract)] == [merged]
    assert ws.run(tenant).summary["writes"] == 0

    ws.erp_execute(("DELETE FROM vertragpartner WHERE vertragnr = ? AND adressnr = ?", (contract, grete)))
    night4 = ws.run(tenant, allow_deletes=True)
    portal = ws.portal()
    assert night4.exit_code == ExitCode.OK, night4.summary
    assert portal.holders("hans.neumann@example.org") == [str(hans)]
    assert merged not in portal["users"]
    assert [o["user_id"] for o in portal.occupancies_of_contract(contract)] == [str(hans)]
    assert ws.run(tenant).summary["writes"] == 0


def test_two_persons_swapping_addresses_are_both_updated(ws):
    tenant = ws.tenant()
    a = ws.add_person("Albers", "Anna", "anna@example.org")
    b = ws.add_person("Berger", "Bernd", "bernd@example.org")
    ws.add_contract(_new_flat(ws), "M", "2024-01-01", None, [a])
    ws.add_contract(_new_flat(ws), "M", "2024-01-01", None, [b])
    assert ws.run(tenant).exit_code == ExitCode.OK
    ws.erp_execute(("UPDATE adresse SET email = ? WHERE adressnr = ?", ("bernd@example.org", a)),
                   ("UPDATE adresse SET email = ? WHERE adressnr = ?", ("anna@example.org", b)))
    night2 = ws.run(tenant)
    users = ws.portal()["users"]
    assert night2.exit_code == ExitCode.OK, night2.summary
    assert (users[str(a)]["email"], users[str(b)]["email"]) == ("bernd@example.org", "anna@example.org")
    assert ws.run(tenant).summary["writes"] == 0


def test_the_person_who_holds_a_login_keeps_it_when_someone_else_gets_the_same_address(ws):
    tenant = ws.tenant(dedup={"email": {"policy": "first_wins"}})
    later = ws.add_person("Zander", "Zoe", "zoe@example.org")
    ws.add_contract(_new_flat(ws), "M", "2024-01-01", None, [later])
    assert ws.run(tenant).exit_code == ExitCode.OK
    # a newcomer with a better place in the declared order (an owner, earlier start) and the same address
    newcomer = ws.add_person("Adler", "Anton", "Zoe@Example.org")
    ws.add_contract(_new_flat(ws), "E", "2010-01-01", None, [newcomer])
    night2 = ws.run(tenant)
    users = ws.portal()["users"]
    assert night2.exit_code == ExitCode.OK, night2.summary
    assert users[str(later)]["email"] == "zoe@example.org"
    assert users[str(newcomer)]["email"] is None


@pytest.mark.parametrize("packed", [False, True])
def test_addresses_swapped_between_records_in_another_order_are_released(packed):
    """The same addresses in the same order of records, but held by other records, are still
    moves: each holder gives its address up first (the rerun's shortcut, nothing moves when the
    addresses and their holders are the same, must not take this for a rerun)."""
    from engine import contract
    from engine.current import Packed, pack_rows
    from engine.entity_data import Rec
    from engine.plan import email_releases
    names = contract.fields("users")

    def row(external_id: str, email: str) -> tuple:
        return tuple(external_id if n == "external_id" else email if n == "email" else None for n in names)
    portal = {"a": row("a", "x@example.de"), "b": row("b", "y@example.de")}
    desired = {i: Rec(i, dict(zip(names, row(i, e)))) for i, e in (("b", "x@example.de"), ("a", "y@example.de"))}
    current = portal
    if packed:
        current = Packed("users", list(portal), pack_rows(portal.values()), ["x@example.de", "y@example.de"],
                         lambda entity, ids: [portal[i] for i in (ids if ids is not None else portal)])
    releases = email_releases(desired, current)
    assert sorted((c.external_id, c.record["email"], c.changed) for c in releases) == \
        [("a", None, ("email",)), ("b", None, ("email",))]
