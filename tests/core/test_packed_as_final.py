"""Against a packed portal (a large local store, engine.current) a run packs each record once it
is final (EntityData.packed_rows: buildings, units and occupancies while the second process
works on the persons, each person by whoever normalises it), and the diff compares those bytes.
Dedup changes some records after they were packed: a login or a phone cleared, occupancies
moved onto a merged user. Those must be compared as they are then, or the portal would keep
what the ERP no longer says."""
from __future__ import annotations

import pytest

from engine import plan
from engine.targets import local


@pytest.fixture(autouse=True)
def packed_portal(monkeypatch):
    monkeypatch.setattr(local, "READ_IN_BACKGROUND_FROM", 0)


@pytest.fixture
def packed_fresh(monkeypatch) -> dict[str, list[str]]:
    """entity -> the external_ids the diff had to pack itself (not packed in advance)."""
    fresh: dict[str, list[str]] = {}
    pack_desired = plan._pack_desired

    def spy(entity, desired, ids, known):
        fresh[entity] = [i for i in ids if not known or i not in known]
        return pack_desired(entity, desired, ids, known)
    monkeypatch.setattr(plan, "_pack_desired", spy)
    return fresh


def test_a_login_cleared_by_dedup_after_packing_reaches_the_portal(ws, packed_fresh):
    """none_wins: a second person with the same address takes the login from its holder."""
    tenant = ws.tenant(dedup={"email": {"policy": "none_wins"}})
    building = ws.in_scope_building()
    holder = ws.add_person("Altmann", "Anna", "anna.altmann@example.org")
    ws.add_contract(ws.add_unit(building, "Wohnung A"), "M", "2024-01-01", None, [holder])
    ws.run(tenant)
    assert ws.portal()["users"][str(holder)]["email"] == "anna.altmann@example.org"
    assert ws.run(tenant).summary["writes"] == 0
    users = ws.portal()["users"]      # persons came packed, but for those dedup changed (shared addresses)
    assert str(holder) not in packed_fresh["users"] and len(packed_fresh["users"]) < len(users) / 4

    other = ws.add_person("Neumann", "Nora", " Anna.Altmann@example.org")
    ws.add_contract(ws.add_unit(building, "Wohnung B"), "M", "2024-01-01", None, [other])
    night = ws.run(tenant)
    assert ws.portal()["users"][str(holder)]["email"] is None
    assert ws.portal()["users"][str(other)]["email"] is None
    assert str(holder) in packed_fresh["users"]         # packed again after dedup cleared it
    assert ws.run(tenant).summary["writes"] == 0


def test_a_phone_cleared_by_dedup_after_packing_reaches_the_portal(ws, packed_fresh):
    """phone.unique: an owner who comes with a tenant's number keeps it; the tenant loses it."""
    tenant = ws.tenant(dedup={"phone": {"unique": True}})
    building = ws.in_scope_building()
    tenant_person = ws.add_person("Mieter", "Max", "max.mieter@example.org", telefon="030 1234567")
    ws.add_contract(ws.add_unit(building, "Wohnung M"), "M", "2024-01-01", None, [tenant_person])
    ws.run(tenant)
    assert ws.portal()["users"][str(tenant_person)]["phone"] == "+49301234567"

    owner = ws.add_person("Eigner", "Erika", "erika.eigner@example.org", telefon="(030) 123 45 67")
    ws.add_contract(ws.add_unit(building, "Wohnung E"), "E", "2020-01-01", None, [owner])
    ws.run(tenant)
    users = ws.portal()["users"]
    assert users[str(owner)]["phone"] == "+49301234567"
    assert users[str(tenant_person)]["phone"] is None
    assert str(tenant_person) in packed_fresh["users"]
    assert ws.run(tenant).summary["writes"] == 0


def test_occupancies_moved_onto_a_merged_user_after_packing_reach_the_portal(ws, packed_fresh):
    """merge_partnership: a partner joins a contract; the holder's occupancy, packed with the
    holder as its user, now belongs to the merged user."""
    tenant = ws.tenant(dedup={"email": {"policy": "merge_partnership", "fallback": "first_wins"}})
    hans = ws.add_person("Neumann", "Hans", "hans.neumann@example.org")
    contract = ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung N"), "M", "2024-01-01", None, [hans])
    ws.run(tenant)
    grete = ws.add_person("Neumann", "Grete", "hans.neumann@example.org")
    ws.erp_execute(("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 2)", (contract, grete)))
    ws.run(tenant)
    merged = "+".join(sorted([str(hans), str(grete)]))
    assert [o["user_id"] for o in ws.portal().occupancies_of_contract(contract)] == [merged]
    assert f"{contract}-{hans}" in packed_fresh["occupancies"]
    assert ws.run(tenant).summary["writes"] == 0


def test_a_partnership_whose_merged_id_an_erp_record_has_is_sent_apart():
    """Merging persons 1 and 2 would make the portal user '1+2'; where the ERP already has a
    record of that id, merging would replace it without a word. The partnership is sent apart
    instead (a finding on each person, the address by the fallback policy) and the ERP record
    '1+2' keeps its own record and packed row."""
    from engine.config.model import EmailDedup
    from engine.current import pack_rows, tuples
    from engine.contract import fields
    from engine.dedup import dedup_emails
    from engine.entity_data import EntityData, Rec

    def user(external_id, first, email):
        return {"external_id": external_id, "salutation": "ms", "title": None, "first_name": first,
                "last_name": "Paar", "email": email, "phone": None, "mobile": None, "language": "de"}
    datas = [user("1", "Anna", "paar@example.org"), user("2", "Ben", "paar@example.org"),
             user("1+2", "Alt", "alt@example.org")]
    names = fields("users")
    users = EntityData("users", records={d["external_id"]: Rec(d["external_id"], d) for d in datas})
    users.packed_rows = dict(zip(users.records, pack_rows(tuples(datas, names))))
    occ = EntityData("occupancies", records={
        f"c1-{u}": Rec(f"c1/{u}", {"external_id": f"c1-{u}", "user_id": u, "unit_id": "n1", "role": "tenant",
                                   "start_date": "2024-01-01", "end_date": None}, "c1") for u in ("1", "2")})
    findings = []
    winners = dedup_emails(users, occ, EmailDedup(policy="merge_partnership"), {}, findings)
    assert set(users.records) == {"1", "2", "1+2"}
    assert users.records["1+2"].data["first_name"] == "Alt"
    assert users.packed_rows["1+2"] == pack_rows(tuples([users.records["1+2"].data], names))[0]
    assert [(f.code, f.key) for f in findings if f.code == "partnership_not_merged"] == [("partnership_not_merged", "1"),
                                                                                      ("partnership_not_merged", "2")]
    assert "'1+2' is already ERP record 1+2's" in findings[0].message
    assert winners == {"paar@example.org": "1"}, "the fallback first_wins: the lower key"
    assert users.records["2"].data["email"] is None and "2" not in users.packed_rows
    assert {r.data["user_id"] for r in occ.records.values()} == {"1", "2"}, "the occupancies stay with the persons"
