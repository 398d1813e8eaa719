"""A record the portal has from an earlier run, whose ERP record now breaks one of the import
API's rules (a country 'DEU', a language 'fr'), stays in the portal as it was last sent: it is
reported (invalid_record and invalid_kept), neither updated nor archived, and the records under
it (a building's units and their residents) stay too. A record never sent stays out."""
from __future__ import annotations

import pytest

from conftest import Findings
from engine import parallel


@pytest.fixture(params=["serial", "parallel"])
def both(request, monkeypatch):
    monkeypatch.setenv(parallel.ENVIRONMENT, "0" if request.param == "serial" else "1")
    return request.param


def building_with_residents(portal) -> tuple[str, set[str], set[str], set[str]]:
    """A building of the portal with units that have occupancies: (id, units, occupancies, users)."""
    for building in sorted(portal["buildings"]):
        units = {u for u, rec in portal["units"].items() if rec["building_id"] == building}
        occupancies = {o for o, rec in portal["occupancies"].items() if rec["unit_id"] in units}
        if occupancies:
            users = {portal["occupancies"][o]["user_id"] for o in occupancies}
            return building, units, occupancies, users
    raise AssertionError("no building with residents in the demo portal")


def test_one_bad_value_keeps_the_record_as_last_sent_with_everything_under_it(ws, both):
    ws.run()
    before = ws.portal()
    building, units, occupancies, users = building_with_residents(before)
    person = next(u for u in sorted(users) if "+" not in u)
    ws.erp_execute(("UPDATE objekt SET land = 'DEU', bezeichnung = 'Neuer Name' WHERE objektnr = ?", (int(building),)),
                   ("UPDATE adresse SET sprache = 'fr', nachname = 'Neuname' WHERE adressnr = ?", (int(person),)))

    second = ws.run()
    assert second.exit_code == 0
    assert second.summary["writes"] == 0, second.summary["entities"]
    assert all(c["delete"] == 0 for c in second.summary["entities"].values())
    after = ws.portal()
    assert after["buildings"][building] == before["buildings"][building], "kept as last sent, not renamed"
    assert after["users"][person] == before["users"][person]
    assert units <= set(after["units"]) and occupancies <= set(after["occupancies"]) and users <= set(after["users"])
    found = Findings(second.findings)
    assert found.codes("buildings", building) >= {"invalid_record", "invalid_kept"}
    assert found.codes("users", person) >= {"invalid_record", "invalid_kept"}
    [invalid] = found.of("buildings", building, "invalid_record")
    assert invalid.field == "country" and "DEU" in invalid.message
    [kept] = found.of("users", person, "invalid_kept")
    assert "keeps the record as the last run sent it" in kept.message and kept.severity == "warning"
    assert second.summary["findings"]["invalid_kept"] == 2

    ws.erp_execute(("UPDATE objekt SET land = 'DE' WHERE objektnr = ?", (int(building),)),
                   ("UPDATE adresse SET sprache = 'de' WHERE adressnr = ?", (int(person),)))
    fixed = ws.run()                                  # corrected: the changes made meanwhile go out
    assert fixed.summary["entities"]["buildings"]["update"] == 1
    assert fixed.summary["entities"]["users"]["update"] == 1
    assert ws.portal()["buildings"][building]["name"] == "Neuer Name"
    assert ws.portal()["users"][person]["last_name"] == "Neuname"
    assert "invalid_kept" not in fixed.summary["findings"]


def test_a_name_refused_as_too_long_is_kept_under_its_own_code(ws, both):
    """A name made longer than the portal allows, under long_names: reject: the person is counted
    and kept under its finding's code (name_too_long), and invalid_kept points to that finding,
    not to an invalid_record finding the report does not have."""
    reject = ws.tenant(rules={"long_names": "reject", "users_without_occupancy": "skip"})
    ws.run(reject)
    _, _, _, users = building_with_residents(ws.portal())
    person = next(u for u in sorted(users) if "+" not in u)
    ws.erp_execute(("UPDATE adresse SET vorname = ? WHERE adressnr = ?", ("Sehr" * 20, int(person))))
    second = ws.run(reject)
    found = Findings(second.findings)
    assert found.codes("users", person) >= {"name_too_long", "invalid_kept"}
    assert "invalid_record" not in found.codes("users", person)
    [kept] = found.of("users", person, "invalid_kept")
    assert kept.message.endswith("(see its name_too_long finding)")
    assert second.summary["entities"]["users"]["excluded"].get("name_too_long") == \
        second.summary["findings"]["name_too_long"] - 1, "the kept person is among `desired`"


def test_an_invalid_record_never_sent_is_not_created(ws, both):
    ws.run()
    number = ws.erp_rows("SELECT max(objektnr) + 1 AS k FROM objekt WHERE objektnr < 9000")[0]["k"]
    ws.erp_execute(("INSERT INTO objekt (objektnr, mandant, bezeichnung, strasse, hausnr, plz, ort, land) "
                    "VALUES (?, 1, 'Neubau', 'Weg', '1', '10115', 'Berlin', 'DEU')", (number,)))
    second = ws.run()
    assert str(number) not in ws.portal()["buildings"]
    assert second.summary["writes"] == 0
    found = Findings(second.findings)
    assert found.codes("buildings", number) == {"invalid_record"}


def test_same_records_and_findings_in_both_paths(ws, monkeypatch):
    ws.run()
    building, _, _, users = building_with_residents(ws.portal())
    people = sorted(u for u in users if "+" not in u)
    ws.erp_execute(("UPDATE objekt SET land = 'DEU' WHERE objektnr = ?", (int(building),)),
                   *(("UPDATE adresse SET sprache = 'fr' WHERE adressnr = ?", (int(p),)) for p in people))
    results = {}
    for mode in ("0", "1"):
        monkeypatch.setenv(parallel.ENVIRONMENT, mode)
        prepared = ws.plan()
        results[mode] = ({e: {i: (r.key, r.data) for i, r in d.records.items()} for e, d in prepared.data.items()},
                         [f.as_dict() for f in prepared.findings], prepared.plan.writes)
    assert results["0"] == results["1"]
    assert results["0"][2] == 0
    assert sum(f["code"] == "invalid_kept" for f in results["0"][1]) == 1 + len(people)


def test_a_move_out_date_nobody_can_read_never_becomes_an_open_end(ws, both):
    """Ende '31/03/2019' once read as no date: a tenant who moved out kept access with no end."""
    ws.run()
    portal = ws.portal()
    occupancy = next(o for o in sorted(portal["occupancies"]) if portal["occupancies"][o]["end_date"] is None
                     and "+" not in portal["occupancies"][o]["user_id"])
    contract = int(occupancy.split("-")[0])
    unit = ws.erp_rows("SELECT einheitid FROM vertrag WHERE vertragnr = ?", (contract,))[0][0]
    person = ws.add_person("Neumieter", "Nina", "nina.neumieter@example.de")
    new = ws.add_contract(unit, "M", "2020/03/01", None, [person])
    ws.erp_execute(("UPDATE vertrag SET ende = '31/03/2019' WHERE vertragnr = ?", (contract,)))

    second = ws.run()
    assert second.summary["writes"] == 0, second.summary["entities"]
    assert ws.portal()["occupancies"][occupancy] == portal["occupancies"][occupancy]   # kept as last sent
    found = Findings(second.findings)
    key = next(f.key for f in second.findings if f.entity == "occupancies" and f.code == "invalid_kept")
    assert key.startswith(f"{contract}/")
    [invalid] = [f for f in found.of("occupancies", key) if f.code == "invalid_record"]
    assert invalid.field == "end_date" and "31/03/2019" in invalid.message
    [never_sent] = [f for f in second.findings if f.key == f"{new}/{person}"]
    assert (never_sent.code, never_sent.field) == ("invalid_record", "start_date")
    assert "2020/03/01" in never_sent.message
    assert f"{new}-{person}" not in ws.portal()["occupancies"]

    ws.erp_execute(("UPDATE vertrag SET ende = 'unbefristet' WHERE vertragnr = ?", (contract,)),
                   ("UPDATE vertrag SET beginn = '01.03.2020' WHERE vertragnr = ?", (new,)))
    third = ws.run()                                  # 'unbefristet' is an open end; the new contract goes out
    assert "invalid_record" not in third.summary["findings"], third.summary["findings"]
    assert ws.portal()["occupancies"][occupancy]["end_date"] is None
    assert ws.portal()["occupancies"][f"{new}-{person}"]["start_date"] == "2020-03-01"


def test_a_refused_field_names_the_mapping_that_makes_it_from_the_erp(ws):
    """'role' got None says nothing about the ERP: the finding shows role = map_values(Art, 'roles')."""
    unit = ws.erp_rows("SELECT min(einheitid) AS u FROM einheit WHERE fiktiv = 0 AND typcode = 1")[0]["u"]
    person = ws.add_person("Codefehler", "Carl")
    contract = ws.add_contract(unit, "X", "01.01.2026", None, [person])
    result = ws.run()
    [unknown, invalid] = [f for f in result.findings if f.key == f"{contract}/{person}"]
    assert (invalid.code, invalid.field) == ("invalid_record", "role")
    assert invalid.message.endswith("(role = map_values(Art, 'roles'))"), invalid.message
    assert (unknown.code, unknown.field) == ("code_not_in_table", "role")         # what made it null
    assert unknown.message.startswith("Art 'X' is not in the code table 'roles': role became null"), unknown.message


def a_couple(portal) -> tuple[str, str, str]:
    """A couple the demo portal has as one merged user: (merged external_id, one person, the other)."""
    merged = next(u for u in sorted(portal["users"]) if u.count("+") == 1)
    first, second = merged.split("+")
    return merged, first, second


def test_a_refused_partner_keeps_the_couple_merged_as_last_sent(ws, both):
    """merge_partnership: one partner's language becomes 'fr'. The couple stays one portal user,
    its refused partner's part as last merged, instead of the other partner being sent alone and
    the couple archived overnight; the other partner's changes still go out."""
    ws.run()
    before = ws.portal()
    merged, one, other = a_couple(before)
    ws.erp_execute(("UPDATE adresse SET sprache = 'fr' WHERE adressnr = ?", (int(other),)))

    second = ws.run()
    assert second.summary["writes"] == 0, second.summary["entities"]
    after = ws.portal()
    assert after["users"][merged] == before["users"][merged]
    assert one not in after["users"] and other not in after["users"]
    found = Findings(second.findings)
    assert found.codes("users", other) >= {"invalid_record", "invalid_kept", "partnership_merged"}
    [kept] = found.of("users", other, "invalid_kept")
    assert merged in kept.message

    ws.erp_execute(("UPDATE adresse SET vorname = 'Zacharias' WHERE adressnr = ?", (int(one),)))
    third = ws.run()
    assert {a: n for a, n in third.summary["entities"]["users"].items() if a in ("create", "update", "delete")} \
        == {"create": 0, "update": 1, "delete": 0}
    user = ws.portal()["users"][merged]
    assert "Zacharias" in f"{user['first_name']} {user['last_name']}"
    assert user["language"] == before["users"][merged]["language"]

    ws.erp_execute(("UPDATE adresse SET sprache = 'de' WHERE adressnr = ?", (int(other),)))
    fixed = ws.run()
    assert "invalid_kept" not in fixed.summary["findings"] and "invalid_record" not in fixed.summary["findings"]
    assert merged in ws.portal()["users"]


def test_a_refused_partner_whose_couple_parts_stays_out(ws, both):
    """Taken back only to merge the couple again: once the partners no longer share the address,
    the refused one is not sent on its own with old data, nor its occupancies."""
    ws.run()
    merged, one, other = a_couple(ws.portal())
    ws.erp_execute(("UPDATE adresse SET sprache = 'fr' WHERE adressnr = ?", (int(other),)),
                   ("UPDATE adresse SET email = 'nur.einer@example.de' WHERE adressnr = ?", (int(one),)))
    second = ws.run(allow_deletes=True)
    portal = ws.portal()
    assert one in portal["users"] and other not in portal["users"] and merged not in portal["users"]
    assert not [o for o, rec in portal["occupancies"].items() if rec["user_id"] in (other, merged)]
    found = Findings(second.findings)
    assert "invalid_kept" not in found.codes("users", other)
    assert "invalid_record" in found.codes("users", other)


def test_a_contract_without_a_party_is_named_by_what_the_erp_shows(ws, both):
    """A contract with no VertragPartner row, read through a LEFT JOIN: its AdressNr is NULL, and its
    findings' ERP key shows that part as '(empty)', which a property manager can look for in DOMUS,
    not Python's 'None'."""
    unit = ws.erp_rows("SELECT min(einheitid) AS u FROM einheit WHERE fiktiv = 0 AND typcode = 1")[0]["u"]
    contract = ws.add_contract(unit, "M", "01.01.2026", None, [])
    query = ("SELECT v.VertragNr, p.AdressNr, v.EinheitID, v.Art, v.Beginn, v.Ende FROM Vertrag v "
             "LEFT JOIN VertragPartner p ON p.VertragNr = v.VertragNr")
    tenant = ws.tenant(overrides={"entities": {"occupancies": {"query": query}}})
    keys = {f.key for f in ws.plan(tenant).findings if f.key.startswith(f"{contract}/")}
    assert keys == {f"{contract}/(empty)"}, keys
