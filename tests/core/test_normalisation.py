"""Phones, e-mails and names as the portal receives them: E.164 numbers, one trimmed lower-case login,
names of at most 70 characters. Each raw value is written into the ERP as a property manager types it;
the expected portal value and finding follow from the portal's rules (design: "The rules of the domain")."""
from __future__ import annotations

import pytest

PHONES = [  # raw ERP text -> E.164 in the portal (None: not a number, reported as phone_invalid but for a placeholder)
    ("0049(0)171 1234567", "+491711234567"),
    ("(030) 123 45-6", "+4930123456"),
    ("0176/1234567 (mobil)", "+491761234567"),
    ("+49 (0) 89 / 123 456-78", "+498912345678"),
    ("0221-3456789", "+492213456789"),
    ("+43 1 2345678", "+4312345678"),
    ("keine", None),
    ("siehe Ehemann", None),
    ("", None),
]

EMAILS = [  # raw ERP text -> login in the portal, findings on the person
    (" Nora.Normal@Example.DE ", "nora.normal@example.de", set()),
    ("erika.e@example.de; erika.privat@example.org", "erika.e@example.de", {"email_multiple"}),
    ("hans.h@example.de,hans.h@firma.example.org", "hans.h@example.de", {"email_multiple"}),
    ("otto.o@example.de (Büro)", "otto.o@example.de", {"email_annotated"}),
    ("Büro: paula.p@example.de", "paula.p@example.de", {"email_annotated"}),
    ("info@@brandt.example.de", None, {"email_invalid"}),
    ("klaus.k@gmx", None, {"email_invalid"}),
    ("kaputt@@example; gut.g@example.de", "gut.g@example.de", {"email_invalid"}),
    ("-", None, set()),
]


@pytest.fixture
def newcomers(ws):
    """Add one tenant per raw value, each in their own new flat; returns the run and the persons."""
    building = ws.in_scope_building()

    def add(rows: list[tuple[str, dict]]):
        people = []
        for i, (nachname, fields) in enumerate(rows):
            p = ws.add_person(nachname, fields.get("vorname", "Test"), fields.get("email"),
                              telefon=fields.get("telefon"))
            ws.add_contract(ws.add_unit(building, f"Wohnung {nachname}"), "M", "2020-01-01", None, [p])
            people.append(str(p))
        return people
    return add


def findings_by_person(result, people):
    out = {p: [] for p in people}
    for f in result.findings:
        if f.entity == "users" and f.key in out:
            out[f.key].append(f)
    return out


def test_phones_arrive_in_e164_and_garbage_is_reported(ws, newcomers):
    people = newcomers([(f"Telefon{i}", {"telefon": raw}) for i, (raw, _) in enumerate(PHONES)])
    result = ws.run()
    portal = ws.portal()
    found = findings_by_person(result, people)
    for p, (raw, expected) in zip(people, PHONES):
        assert portal["users"][p]["phone"] == expected, raw
        invalid = [f for f in found[p] if f.code == "phone_invalid"]
        if expected is None and raw.strip() and raw != "keine":      # 'keine' says there is none: an empty field
            assert [f.field for f in invalid] == ["phone"] and repr(raw) in invalid[0].message
        else:
            assert invalid == [], raw


def test_emails_become_one_trimmed_lower_case_login(ws, newcomers):
    people = newcomers([(f"Mail{i}", {"email": raw}) for i, (raw, _, _) in enumerate(EMAILS)])
    result = ws.run()
    portal = ws.portal()
    found = findings_by_person(result, people)
    for p, (raw, login, codes) in zip(people, EMAILS):
        assert portal["users"][p]["email"] == login, raw
        reported = {f.code for f in found[p] if f.code.startswith("email_")}
        assert reported == codes, raw
        assert all(f.field == "email" for f in found[p] if f.code.startswith("email_"))


def test_case_and_whitespace_variants_are_one_login_in_the_portal(ws, newcomers):
    variants = ["lena.lang@example.de", "Lena.Lang@Example.de", "  lena.lang@example.de\t"]
    people = newcomers([(f"Lang{i}", {"email": raw}) for i, raw in enumerate(variants)])
    ws.run(ws.tenant(dedup={"email": {"policy": "first_wins"}}))
    portal = ws.portal()
    assert portal.holders("lena.lang@example.de") == [people[0]], "one holder: same start, the lowest key"
    assert [portal["users"][p]["email"] for p in people[1:]] == [None, None]


# -- names ---------------------------------------------------------------------------------------
SEVENTY = "Anna-Lena Friederike Charlotte Wilhelmine Auguste Elisabeth Sophie Mar"      # 70 characters
CUT_AT_SPACE = "Maximilian Alexander Konstantin Friedrich Wilhelm Leopold Ferdinand X von Hohenberg"


def test_long_names_are_truncated_to_70_characters(ws, newcomers, manifest):
    assert len(SEVENTY) == 70 and len(CUT_AT_SPACE) > 70 and CUT_AT_SPACE[69] == " "
    exact, cut = newcomers([("Exakt", {"vorname": SEVENTY}), ("Schnitt", {"vorname": CUT_AT_SPACE})])
    result = ws.run()
    portal = ws.portal()
    assert portal["users"][exact]["first_name"] == SEVENTY
    assert portal["users"][cut]["first_name"] == CUT_AT_SPACE[:69], "cut at 70, without the trailing space"
    truncated = {f.key: f for f in result.findings if f.code == "name_truncated"}
    assert exact not in truncated and truncated[cut].field == "first_name"
    assert set(truncated) == {cut} | {str(i["adressnr"][0]) for i in manifest.cases["name_over_70"]}


def test_long_names_can_be_rejected(ws, newcomers, manifest):
    exact, cut = newcomers([("Exakt", {"vorname": SEVENTY}), ("Schnitt", {"vorname": CUT_AT_SPACE})])
    result = ws.run(ws.tenant(rules={"long_names": "reject", "users_without_occupancy": "skip"}))
    assert result.exit_code == 0
    portal = ws.portal()
    long_ones = {cut: "first_name"} | {str(i["adressnr"][0]): {"vorname": "first_name", "nachname": "last_name"}[i["field"]]
                                       for i in manifest.cases["name_over_70"]}
    rejected = {f.key: f for f in result.findings if f.code == "name_too_long"}
    assert {k: f.field for k, f in rejected.items()} == long_ones
    assert not [f for f in result.findings if f.code == "name_truncated"]
    assert exact in portal["users"], "exactly 70 characters is allowed"
    for key in long_ones:
        assert key not in portal["users"]
        for (v,) in ws.erp_rows("SELECT vertragnr FROM vertragpartner WHERE adressnr = ?", (key,)):
            codes = {f.code for f in result.findings if f.entity == "occupancies" and f.key == f"{v}/{key}"}
            assert codes == {"occupancy_excluded_user"} or codes & {"contract_ended", "contract_future"}, codes
    # counted and referred to under the code of their finding, as every other exclusion is
    assert result.summary["entities"]["users"]["excluded"]["name_too_long"] == len(long_ones)
    assert "invalid_record" not in result.summary["entities"]["users"]["excluded"]
    assert {f.message for f in result.findings if f.code == "occupancy_excluded_user"} == \
        {f"user {key} is excluded (name_too_long)" for key in long_ones}
