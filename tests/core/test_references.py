"""References: nothing hangs in the air. A unit whose building is missing or excluded is not sent; an
occupancy whose unit or person is missing or excluded is dropped with its reason; a person left with
no occupancy is not sent (or is, with users_without_occupancy: send)."""
from __future__ import annotations


def findings_of(result, code: str, entity: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in result.findings:
        if f.code == code and f.entity == entity:
            out.setdefault(f.key, []).append(f)
    return out


def test_units_of_a_building_deleted_in_the_erp_become_orphans(ws):
    building = ws.in_scope_building()
    units = {str(r["einheitid"]) for r in ws.erp_rows("SELECT einheitid FROM einheit WHERE objektnr = ?", (building,))}
    contracts = ws.erp_rows("SELECT p.vertragnr, p.adressnr FROM vertragpartner p JOIN vertrag v USING (vertragnr) "
                            "WHERE v.einheitid IN (SELECT einheitid FROM einheit WHERE objektnr = ?) AND v.art <> 'L'",
                            (building,))
    ws.erp_execute(("DELETE FROM objekt WHERE objektnr = ?", (building,)))
    result = ws.run()
    portal = ws.portal()
    assert str(building) not in portal["buildings"]
    phantoms = {f.key for f in result.findings if f.code == "phantom_unit"}
    orphans = findings_of(result, "orphan_unit", "units")
    assert set(orphans) == units - phantoms | {str(u) for i in ws.manifest.cases["orphan_unit"] for u in i["einheitid"]}
    assert all(f.field == "building_id" and str(building) in f.message for k in units - phantoms for f in orphans[k])
    assert not units & set(portal["units"])
    for row in contracts:
        key = f"{row['vertragnr']}/{row['adressnr']}"
        assert not portal.occupancies_of_contract(row["vertragnr"])
        codes = {f.code for f in result.findings if f.entity == "occupancies" and f.key == key}
        assert codes & {"occupancy_excluded_unit", "contract_ended", "contract_future", "partnership_merged"}, key
    for person in {r["adressnr"] for r in contracts}:
        user = portal.portal_user_of(person)
        if user is None:
            assert {f.code for f in result.findings if f.entity == "users" and f.key == str(person)} & \
                {"user_without_occupancy", "pseudo_person"}
        else:                               # still a party elsewhere
            assert not {o["unit_id"] for o in portal.occupancies_of_user(user)} & units


def test_units_of_an_excluded_building_name_its_reason(ws):
    building = ws.in_scope_building()
    result = ws.run(ws.tenant(overrides={"entities": {"buildings": {"filters": [
        {"name": "other_mandant", "reason": "out_of_scope", "field": "Mandant", "not_in": [1, 2]},
        {"name": "sold", "reason": "sold_building", "field": "ObjektNr", "in": [building]}]}}}))
    units = {str(r["einheitid"]) for r in ws.erp_rows("SELECT einheitid FROM einheit WHERE objektnr = ?", (building,))}
    phantoms = {f.key for f in result.findings if f.code == "phantom_unit"}
    of_excluded = findings_of(result, "unit_of_excluded_building", "units")
    assert units - phantoms <= set(of_excluded)
    assert all("sold_building" in of_excluded[u][0].message for u in units - phantoms)
    assert not units & set(ws.portal()["units"])
    dropped = findings_of(result, "occupancy_excluded_unit", "occupancies")
    in_building = {f"{r['vertragnr']}/{r['adressnr']}" for r in ws.erp_rows(
        "SELECT p.vertragnr, p.adressnr FROM vertragpartner p JOIN vertrag v USING (vertragnr) "
        "WHERE v.einheitid IN (%s) AND v.art <> 'L'" % ",".join(units - phantoms))}
    window = {f.key for f in result.findings if f.code in ("contract_ended", "contract_future")}
    assert in_building - window <= set(dropped)


def test_occupancies_naming_a_missing_person_or_unit_are_dropped_and_the_rest_stays(ws):
    unit = ws.add_unit(ws.in_scope_building(), "Wohnung Kaiser")
    kaiser = ws.add_person("Kaiser", "Karl", "karl.kaiser@example.de", anrede="Herr")
    ghost_person = ws.next_key("adresse", "adressnr") + 1000
    v = ws.add_contract(unit, "M", "2022-02-01", None, [kaiser, ghost_person])
    ghost_unit = ws.next_key("einheit", "einheitid") + 1000
    lonely = ws.add_person("Lorenz", "Lina", "lina.lorenz@example.de")
    w = ws.add_contract(ghost_unit, "M", "2022-02-01", None, [lonely])
    result = ws.run()
    portal = ws.portal()
    [unknown_user] = findings_of(result, "occupancy_unknown_user", "occupancies")[f"{v}/{ghost_person}"]
    assert unknown_user.field == "user_id" and str(ghost_person) in unknown_user.message
    assert [o["user_id"] for o in portal.occupancies_of_contract(v)] == [str(kaiser)], "the real party stays"
    [unknown_unit] = findings_of(result, "occupancy_unknown_unit", "occupancies")[f"{w}/{lonely}"]
    assert unknown_unit.field == "unit_id" and str(ghost_unit) in unknown_unit.message
    assert portal.occupancies_of_contract(w) == []
    assert str(lonely) not in portal["users"]
    assert findings_of(result, "user_without_occupancy", "users")[str(lonely)]


def test_occupancies_of_an_excluded_person_name_the_reason(demo_run):
    (leer,) = demo_run.manifest.cases["pseudo_person"][0]["adressnr"]
    rows = demo_run.ws.erp_rows("SELECT p.vertragnr, v.art FROM vertragpartner p JOIN vertrag v USING (vertragnr) "
                                "WHERE p.adressnr = ?", (leer,))
    assert rows
    for r in rows:
        codes = demo_run.findings.codes("occupancies", f"{r['vertragnr']}/{leer}")
        # vacancy contracts are filtered first; any other contract of a pseudo person is dropped for the person
        assert codes == ({"vacancy_contract"} if r["art"] == "L" else {"occupancy_excluded_user"})


def test_users_without_occupancy_can_be_sent(ws, manifest):
    result = ws.run(ws.tenant(rules={"long_names": "truncate", "users_without_occupancy": "send"}))
    portal = ws.portal()
    for inst in manifest.cases["person_without_contract"]:
        (p,) = inst["adressnr"]
        assert str(p) in portal["users"] and portal.occupancies_of_user(str(p)) == []
    assert not [f for f in result.findings if f.code == "user_without_occupancy"]
    ended = manifest.cases["contract_ended_long_ago"][0]
    assert ws.portal().occupancies_of_contract(ended["vertragnr"][0]) == [], "the window still applies"
