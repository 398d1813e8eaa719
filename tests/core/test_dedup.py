"""E-mail dedup policies on the demo data: who holds a shared login in the portal, who is sent without
one, what is merged, what stops the run; and the stability of the winner across nights."""
from __future__ import annotations

from collections import defaultdict

import pytest

from engine.errors import DedupFailed, ExitCode
from engine.expr import normalize_email

ROLE_RANK = {"owner": 0, "tenant": 1}


def policy(name: str, **more) -> dict:
    return {"dedup": {"email": {"policy": name, **more}}}


def rank(portal, user: str) -> tuple:
    """The declared order (role: owner first, then the earliest start, then the lowest key) over the
    occupancies the portal holds for the user."""
    occ = portal.occupancies_of_user(user)
    assert occ, f"user {user} has no occupancy"
    return (min(ROLE_RANK.get(o["role"], 9) for o in occ), min(o["start_date"] for o in occ), user)


def shared_groups(ws, portal) -> dict[str, list[str]]:
    """login -> the portal users (sent separately) whose ERP e-mail field gives that login."""
    groups: dict[str, list[str]] = defaultdict(list)
    for row in ws.erp_rows("SELECT adressnr, email FROM adresse WHERE email IS NOT NULL"):
        address = normalize_email(row["email"])
        if address and str(row["adressnr"]) in portal["users"]:
            groups[address].append(str(row["adressnr"]))
    return {a: sorted(ms) for a, ms in groups.items() if len(ms) > 1}


def messages(findings, code: str, key: str) -> list[str]:
    return [f.message for f in findings if f.code == code and f.entity == "users" and f.key == key]


@pytest.fixture
def order_cases(ws):
    """Persons added to the ERP whose shared addresses pin each step of the declared order."""
    unit = lambda name: ws.add_unit(ws.in_scope_building(), name)  # noqa: E731
    early_tenant = ws.add_person("Albers", "Anna", "reihenfolge@example.de")
    late_owner = ws.add_person("Brandt", "Bernd", "Reihenfolge@Example.de", anrede="Herr")
    early_owner = ws.add_person("Claasen", "Clara", " reihenfolge@example.de")
    ws.add_contract(unit("Wohnung Albers"), "M", "2001-01-01", None, [early_tenant])
    ws.add_contract(unit("Wohnung Brandt"), "E", "2015-01-01", None, [late_owner])
    ws.add_contract(unit("Wohnung Claasen"), "E", "2010-01-01", None, [early_owner])
    low_key = ws.add_person("Dietz", "Dora", "gleichstand@example.de")
    high_key = ws.add_person("Ernst", "Emil", "gleichstand@example.de", anrede="Herr")
    ws.add_contract(unit("Wohnung Ernst"), "M", "2012-03-01", None, [high_key])
    ws.add_contract(unit("Wohnung Dietz"), "M", "2012-03-01", None, [low_key])
    return {"reihenfolge@example.de": (str(early_owner), [str(early_tenant), str(late_owner)]),
            "gleichstand@example.de": (str(low_key), [str(high_key)])}


# -- first_wins ------------------------------------------------------------------------------
def test_first_wins_owner_before_tenant_then_earliest_start_then_lowest_key(ws, order_cases):
    result = ws.run(ws.tenant(**policy("first_wins")))
    assert result.exit_code == 0
    portal = ws.portal()
    for address, (winner, losers) in order_cases.items():
        assert portal.holders(address) == [winner], address
        for loser in losers:
            assert portal["users"][loser]["email"] is None, "the loser is in the portal, without e-mail"
            assert any(f"kept by {winner}" in m for m in messages(result.findings, "email_shared", loser))


def test_first_wins_on_the_demo_data(ws, manifest):
    result = ws.run(ws.tenant(**policy("first_wins")))
    portal = ws.portal()
    assert not [u for u in portal["users"] if "+" in u], "first_wins merges nobody"
    assert not [f for f in result.findings if f.code == "partnership_merged"]
    groups = shared_groups(ws, portal)
    couples = {normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (i["adressnr"][0],))[0][0])
               for i in manifest.cases["couple_shared_email"]}
    assert couples & set(groups), "the demo's couples share their address under first_wins"
    for address, members in groups.items():
        winner = min(members, key=lambda u: rank(portal, u))
        assert portal.holders(address) == [winner], address
        for m in members:
            if m != winner:
                assert portal["users"][m]["email"] is None
                assert [f"kept by {winner}" in x for x in messages(result.findings, "email_shared", m)] == [True]


# -- none_wins -------------------------------------------------------------------------------
def test_none_wins_nobody_keeps_a_shared_address(ws, order_cases):
    result = ws.run(ws.tenant(**policy("none_wins")))
    assert result.exit_code == 0
    portal = ws.portal()
    groups = shared_groups(ws, portal)
    assert set(order_cases) <= set(groups)
    for address, members in groups.items():
        assert portal.holders(address) == [], address
        for m in members:
            assert portal["users"][m]["email"] is None
            assert any("kept by nobody" in x for x in messages(result.findings, "email_shared", m)), m
    assert not [u for u in portal["users"] if "+" in u]


# -- merge_partnership -----------------------------------------------------------------------
def test_merge_partnership_makes_the_couple_one_user_with_both_units(ws, manifest):
    result = ws.run(ws.tenant())
    assert result.exit_code == 0
    case = manifest.cases["couple_shared_email_and_parking"][0]
    a, b = case["adressnr"]
    flat, parking = case["vertragnr"]
    erp = {r["adressnr"]: r for r in ws.erp_rows("SELECT * FROM adresse WHERE adressnr IN (?, ?)", (a, b))}
    assert erp[a]["nachname"] == erp[b]["nachname"] and erp[a]["email"] == erp[b]["email"]
    merged_id = f"{min(a, b)}+{max(a, b)}"
    portal = ws.portal()
    user = portal["users"][merged_id]
    assert str(a) not in portal["users"] and str(b) not in portal["users"]
    first = " und ".join(erp[p]["vorname"] for p in sorted((a, b)))   # same role and start: lower key first
    assert (user["first_name"], user["last_name"]) == (first, erp[a]["nachname"])   # "Hans und Grete Müller"
    assert user["email"] == normalize_email(erp[a]["email"])
    assert user["salutation"] == "family"
    units = {ws.erp_rows("SELECT einheitid FROM vertrag WHERE vertragnr = ?", (v,))[0][0]: v for v in (flat, parking)}
    occ = portal.occupancies_of_user(merged_id)
    assert sorted(o["unit_id"] for o in occ) == sorted(str(u) for u in units), "flat and parking space, once each"
    assert {o["external_id"].split("-")[0] for o in occ} == {str(flat), str(parking)}
    for p in (a, b):
        assert [f for f in result.findings if f.code == "partnership_merged" and f.key == str(p)]


def test_the_merged_user_id_is_deterministic(ws, manifest):
    first = ws.run(ws.tenant()).summary
    again = ws.run(ws.tenant()).summary
    assert again["writes"] == 0, "a rerun leaves the merged users alone"
    other_portal = ws.root / "other-portal.sqlite"
    fresh = ws.plan(ws.tenant("demo", portal=other_portal), fresh_state=True, portal=other_portal)
    merged = {c.external_id for c in fresh.plan.changes if c.entity == "users" and "+" in c.external_id}
    assert merged == {u for u in ws.portal()["users"] if "+" in u}, "a fresh store gets the same ids"
    assert first["entities"]["users"]["create"] >= len(merged) > 0
    for i in merged:
        keys = i.split("+")
        assert keys == sorted(keys), "members in key order"


def test_the_joiner_is_configurable_and_different_last_names_are_kept_whole(ws, manifest):
    unit = ws.add_unit(ws.in_scope_building(), "Wohnung Berg/Tal")
    anna = ws.add_person("Berg", "Anna", "berg.tal@example.de")
    tom = ws.add_person("Tal", "Tom", "Berg.Tal@example.de", anrede="Herr")
    ws.add_contract(unit, "M", "2019-05-01", None, [anna, tom])
    ws.run(ws.tenant(**policy("merge_partnership", joiner=" & ")))
    portal = ws.portal()
    user = portal["users"][f"{anna}+{tom}"]
    assert (user["first_name"], user["last_name"]) == (None, "Anna Berg & Tom Tal")
    assert user["email"] == "berg.tal@example.de"
    hans = manifest.cases["couple_shared_email"][0]["adressnr"][0]
    couple = ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (hans,))[0][0]
    merged = portal.portal_user_of(hans)
    assert " & " in (portal["users"][merged]["first_name"] or "")
    assert portal["users"][merged]["email"] == normalize_email(couple)


def test_what_is_still_shared_after_merging_falls_back(ws, manifest):
    unit = lambda name: ws.add_unit(ws.in_scope_building(), name)  # noqa: E731
    p1 = ws.add_person("Vogt", "Paula", "vogt.familie@example.de")
    p2 = ws.add_person("Vogt", "Peter", "vogt.familie@example.de", anrede="Herr")
    ws.add_contract(unit("Wohnung Vogt"), "M", "2015-01-01", None, [p1, p2])
    owner = ws.add_person("Vogt", "Otto", "vogt.familie@example.de", anrede="Herr")
    ws.add_contract(unit("Wohnung Otto Vogt"), "E", "2020-01-01", None, [owner])
    unrelated = [i["adressnr"] for i in manifest.cases["email_shared_unrelated"]]

    result = ws.run(ws.tenant())                                   # fallback first_wins
    portal = ws.portal()
    merged = f"{p1}+{p2}"
    assert portal["users"][merged]["first_name"] == "Paula und Peter"
    assert portal.holders("vogt.familie@example.de") == [str(owner)], "the owner outranks the merged tenants"
    assert portal["users"][merged]["email"] is None
    assert any(f.code == "email_shared" and set(f.key.split("+")) == {str(p1), str(p2)} for f in result.findings)
    for a, b in unrelated:                                         # groups spanning contracts: first by order
        users = [portal.portal_user_of(p) for p in (a, b)]
        address = normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (a,))[0][0])
        assert portal.holders(address) == [min(users, key=lambda u: rank(portal, u))]


def test_merge_partnership_with_fallback_none_wins(ws, manifest):
    ws.run(ws.tenant(**policy("merge_partnership", fallback="none_wins")))
    portal = ws.portal()
    hans, grete = manifest.cases["couple_shared_email"][0]["adressnr"]
    couple_email = normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (hans,))[0][0])
    assert portal.holders(couple_email) == [f"{hans}+{grete}"], "couples are still merged"
    for a, b in (i["adressnr"] for i in manifest.cases["email_shared_unrelated"]):
        address = normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (a,))[0][0])
        assert portal.holders(address) == []
        assert portal["users"][portal.portal_user_of(a)]["email"] is None
        assert portal["users"][portal.portal_user_of(b)]["email"] is None


# -- fail ------------------------------------------------------------------------------------
def test_fail_stops_before_any_write_and_lists_the_groups(ws, manifest):
    ws.run(ws.tenant("probe", portal=ws.root / "probe.sqlite", **policy("first_wins")))
    groups = shared_groups(ws, ws.portal(ws.root / "probe.sqlite"))
    assert len(groups) > 1

    path = ws.tenant_file(**policy("fail"))
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == ExitCode.DEDUP_FAILED == 8, done.stderr
    [error] = [line for line in done.stderr.splitlines() if line.startswith("idwell-sync run: error: ")]
    assert error.startswith(f"idwell-sync run: error: tenant 'demo': {len(groups)} e-mail addresses are shared"), \
        error                   # named: a scheduler's mail holds the lines of many tenants
    assert "nothing was written" in done.stderr
    for address in sorted(groups)[:20]:                            # the message shows the first 20 groups
        line = next((ln for ln in done.stderr.splitlines() if ln.strip().startswith(address + ":")), None)
        assert line is not None, f"group {address} is not listed"
        assert sorted(k.strip() for k in line.split(":", 1)[1].split(",")) == groups[address]
    if len(groups) > 20:
        assert f"and {len(groups) - 20} more groups" in done.stderr
    portal = ws.portal()
    assert all(len(portal[e]) == 0 for e in portal.records), "nothing reached the portal"


def test_fail_stops_plan_too(ws):
    with pytest.raises(DedupFailed) as err:
        ws.plan(ws.tenant(**policy("fail")))
    assert err.value.exit_code == 8


# -- stable across nights --------------------------------------------------------------------
def test_the_winner_keeps_the_address_when_a_better_candidate_and_unrelated_people_appear(ws, manifest):
    tenant = ws.tenant(**policy("first_wins"))
    a, b = manifest.cases["email_shared_unrelated"][0]["adressnr"]
    address = normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (a,))[0][0])
    assert ws.run(tenant).exit_code == 0
    before = ws.portal()
    (winner,) = before.holders(address)
    winner_rank = rank(before, winner)
    assert winner_rank[0] == ROLE_RANK["owner"], "the case's winner is an owner"

    # the next day: an unrelated person moves in, and a new owner with an earlier start shares the address
    building = ws.in_scope_building()
    newcomer = ws.add_person("Neumann", "Nina", "nina.neumann@example.de")
    ws.add_contract(ws.add_unit(building, "Wohnung Neumann"), "M", "2026-05-15", None, [newcomer])
    challenger = ws.add_person("Zeller", "Zora", address.upper())
    earlier = "1970-01-01"
    assert earlier < winner_rank[1]
    ws.add_contract(ws.add_unit(building, "Wohnung Zeller"), "E", earlier, None, [challenger])

    second = ws.run(tenant)
    assert second.exit_code == 0
    after = ws.portal()
    assert after.holders(address) == [winner], "the sticky winner keeps the login"
    assert after["users"][str(challenger)]["email"] is None
    assert any(f"kept by {winner}" in m for m in messages(second.findings, "email_shared", str(challenger)))
    assert after["users"][str(newcomer)]["email"] == "nina.neumann@example.de"
    assert after["users"][winner] == before["users"][winner]
    touched = {(c.entity, c.action) for c in second.prepared.plan.changes}
    assert touched == {("units", "create"), ("users", "create"), ("occupancies", "create")}, \
        "only the newcomers are written; nobody else's record changes"
    assert {c.external_id for c in second.prepared.plan.changes if c.entity == "users"} == {str(newcomer), str(challenger)}

    # without the engine's memory the declared order alone would pick the challenger
    fresh = ws.root / "fresh-portal.sqlite"
    prepared = ws.plan(ws.tenant("demo", portal=fresh, **policy("first_wins")), fresh_state=True, portal=fresh)
    holder = [c.external_id for c in prepared.plan.changes if c.entity == "users" and c.record.get("email") == address]
    assert holder == [str(challenger)]


def test_when_the_winner_no_longer_shares_the_address_its_new_holder_is_named_with_the_change(ws, manifest):
    """The winner moves out (its contracts end long ago): the address goes to the next by order, and
    the others' email_shared says whose login it was until now."""
    tenant = ws.tenant(**policy("first_wins"))
    a, b = manifest.cases["email_shared_unrelated"][0]["adressnr"]
    address = normalize_email(ws.erp_rows("SELECT email FROM adresse WHERE adressnr = ?", (a,))[0][0])
    ws.run(tenant)
    (winner,) = ws.portal().holders(address)
    challenger = ws.add_person("Zeller", "Zora", address.upper())
    ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung Zeller"), "E", "1970-01-01", None, [challenger])
    ws.run(tenant)                                                  # the winner keeps it (sticky)
    ws.erp_execute(("UPDATE vertrag SET ende = '2001-01-01' WHERE vertragnr IN "
                    "(SELECT vertragnr FROM vertragpartner WHERE adressnr = ?)", (int(winner),)))
    third = ws.run(tenant, allow_deletes=True)
    assert ws.portal().holders(address) == [str(challenger)]
    other = str(b if str(a) == winner else a)
    said = messages(third.findings, "email_shared", other)
    assert any(f"kept by {challenger}, until now the login of portal user '{winner}';" in m
               for m in said), said


# -- phone numbers -----------------------------------------------------------------------------
def test_phone_uniqueness_keeps_a_shared_number_with_the_first_by_order(ws, manifest):
    result = ws.run(ws.tenant(dedup={"email": {"policy": "first_wins"}, "phone": {"unique": True}}))
    portal = ws.portal()
    shown = 0
    for case in manifest.cases["phone_shared"]:
        a, b = (str(p) for p in case["adressnr"])
        if a not in portal["users"] or b not in portal["users"]:
            continue
        winner = min((a, b), key=lambda u: rank(portal, u))
        loser = b if winner == a else a
        number = portal["users"][winner]["phone"]
        assert number and number.startswith("+")
        assert portal["users"][loser]["phone"] is None
        found = [f for f in result.findings if f.code == "phone_shared" and f.key == loser]
        assert [f.field for f in found] == ["phone"] and f"kept by {winner}" in found[0].message
        shown += 1
    assert shown


def test_a_rerun_does_not_look_up_who_holds_a_merged_couples_address(ws, manifest, monkeypatch):
    """Who holds an address in the portal (a read of the state store per member) matters only
    for a group that first_wins decides; a couple merged into one user needs no winner. A size-L
    rerun spent half a second asking about every merged couple."""
    from engine.state import StateStore
    tenant = ws.tenant(**policy("merge_partnership", fallback="first_wins"))
    ws.run(tenant)
    asked: list[str] = []
    last_written = StateStore.last_written

    def spy(self, tenant_id, entity, ids):
        if entity == "users":
            asked.extend(ids)
        return last_written(self, tenant_id, entity, ids)
    monkeypatch.setattr(StateStore, "last_written", spy)
    unit = ws.add_unit(ws.in_scope_building(), "Wohnung Kranz")        # a group that forms tonight
    a, b = (ws.add_person("Kranz", first, "kranz@example.de") for first in ("Karl", "Klara"))
    ws.add_contract(unit, "M", "2020-01-01", None, [a])
    ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung Klara Kranz"), "M", "2021-01-01", None, [b])
    ws.plan(tenant)
    hans, grete = manifest.cases["couple_shared_email"][0]["adressnr"]
    assert {str(a), str(b)} <= set(asked), "the new group's members are looked up"
    assert not {str(hans), str(grete)} & set(asked), "the merged couple is not"


def test_a_partnership_is_not_merged_onto_an_erp_records_id():
    """Persons 0 and 1 share e3 and a contract, but their merged id '0+1' is an ERP record's
    (sharing e2 with person 2): they are sent apart and the ERP record is kept; the winners
    remembered hold their addresses in the records sent, with and without the holders lookup."""
    from engine.config.model import EmailDedup
    from engine.dedup import dedup_emails
    from engine.entity_data import EntityData, Rec

    def user(external_id: str, email: str, last: str) -> Rec:
        return Rec("k" + external_id, {"external_id": external_id, "email": email, "first_name": "A", "last_name": last,
                                       "salutation": "mr", "phone": None, "mobile": None, "title": None})
    users = EntityData("users", records={"0": user("0", "e3", "X"), "1": user("1", "e3", "X"),
                                         "2": user("2", "e2", "Y"), "0+1": user("0+1", "e2", "Z")})
    occ = EntityData("occupancies", records={
        f"o{k}": Rec(f"ok{k}", {"external_id": f"o{k}", "user_id": m, "unit_id": "u", "role": "tenant",
                                "start_date": "2020-01-01" if m == "2" else "2021-01-01", "end_date": None}, c)
        for k, (m, c) in enumerate([("0", "c1"), ("1", "c1"), ("2", "c2"), ("0+1", "c3")])})
    for holders in (None, lambda ids: {}):
        u = EntityData("users", records={k: Rec(r.key, dict(r.data)) for k, r in users.records.items()})
        o = EntityData("occupancies", records={k: Rec(r.key, dict(r.data), r.contract) for k, r in occ.records.items()})
        findings = []
        winners = dedup_emails(u, o, EmailDedup(policy="merge_partnership", fallback="first_wins"), {}, findings,
                               holders)
        assert set(u.records) == {"0", "1", "2", "0+1"}, "nobody replaced, nobody dropped"
        assert winners == {"e2": "2", "e3": "0"}
        assert {email: u.records[winner].data["email"] for email, winner in winners.items()} == \
            {"e2": "e2", "e3": "e3"}, "each winner keeps its address"
        assert [f.key for f in findings if f.code == "partnership_not_merged"] == ["k0", "k1"]
