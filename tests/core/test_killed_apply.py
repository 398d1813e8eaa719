"""Runs killed with kill -9 while they apply, night after night: each noted its writes ahead and
recorded nothing else. Whichever of those writes the portal holds, the next complete run must not
report it as an edit made in the portal (drift), nor miss an edit a person made; until it has run,
`status` says that the portal may hold writes the engine has not confirmed."""
from __future__ import annotations

import json

from conftest import Findings
from killed_runs import kill_while_applying


def test_a_value_a_killed_run_wrote_is_no_drift_after_another_killed_run_noted_a_newer_one(ws):
    """The first killed run's update landed; the ERP changed the record again; the second killed
    run noted the newer value and was killed before sending it. The portal holds the first run's
    value: the engine's own, not an edit. A person's edit of another such record is drift."""
    tenant = ws.tenant_file()
    assert ws.run().exit_code == 0
    kept, edited = [u for u in ws.portal()["users"] if "+" not in u][:2]     # persons with a user of their own
    rename = "UPDATE adresse SET nachname = nachname || ? WHERE adressnr IN (?, ?)"
    ws.erp_execute((rename, (" I", kept, edited)))
    kill_while_applying(tenant, [f"users:{kept}", f"users:{edited}"])        # the portal wrote both
    ws.erp_execute((rename, ("I", kept, edited)))
    kill_while_applying(tenant)                                              # noted them again, sent nothing
    ws.edit_portal(("users", edited, {"last_name": "Edited in the portal"}))
    night = ws.run()
    assert night.exit_code == 0
    assert Findings(night.findings).keys("drift") == {edited}
    assert night.summary["drift"] == {"users": {"last_name": 1}}
    assert night.summary["entities"]["users"]["update"] == 2
    assert ws.portal()["users"][kept]["last_name"].endswith(" II")
    quiet = ws.run()                                                         # all settled
    assert quiet.summary["writes"] == 0 and quiet.summary["settled"] is None


def test_a_record_a_killed_run_created_keeps_its_drift_check_after_another_killed_run_noted_an_update(ws):
    """The first killed run created two units; the ERP renamed them; the second killed run noted
    the updates and was killed before sending them. The portal can hold only what the engine
    sent of them: a person's edit of one is drift, the other is not."""
    tenant = ws.tenant_file()
    assert ws.run().exit_code == 0
    building = ws.in_scope_building()
    kept, edited = str(ws.add_unit(building, "Wohnung A")), str(ws.add_unit(building, "Wohnung B"))
    kill_while_applying(tenant, [f"units:{kept}", f"units:{edited}"])        # the portal created both
    ws.erp_execute(("UPDATE einheit SET bezeichnung = bezeichnung || ' (neu)' WHERE einheitid IN (?, ?)",
                    (kept, edited)))
    kill_while_applying(tenant)                                              # noted the updates, sent nothing
    ws.edit_portal(("units", edited, {"name": "renamed in the portal"}))
    night = ws.run()
    assert night.exit_code == 0
    assert Findings(night.findings).keys("drift") == {edited}
    assert night.summary["drift"] == {"units": {"name": 1}}
    units = ws.portal()["units"]
    assert (units[kept]["name"], units[edited]["name"]) == ("Wohnung A (neu)", "Wohnung B (neu)")


HOLD_EVERY_DELETE = {"deletion": {"max_count": 0, "max_share": 1.0, "min_source_ratio": 0.0}}


def test_a_user_who_keeps_its_login_while_an_archiving_is_held_is_settled_as_the_portal_holds_it(ws):
    """A killed run's update of Bernd landed. Then Anna's contract vanishes (her archiving is
    held) and Bernd's ERP record gives her address: the next run keeps his own (keep_held_logins)
    and sends nothing for him. What it settles his pending write as is what the portal holds, not
    his ERP record with Anna's address: the runs after, the deletes held or applied, find no drift
    in his address."""
    tenant = ws.tenant(**HOLD_EVERY_DELETE)
    building = ws.in_scope_building()
    anna = ws.add_person("Albers", "Anna", "anna@example.org")
    bernd = ws.add_person("Berger", "Bernd", "bernd@example.org", telefon="030 1111")
    contract = ws.add_contract(ws.add_unit(building, "Wohnung A"), "M", "2024-01-01", None, [anna])
    ws.add_contract(ws.add_unit(building, "Wohnung B"), "M", "2024-01-01", None, [bernd])
    assert ws.run(tenant).exit_code == 0
    ws.erp_execute(("UPDATE adresse SET telefon = '030 2222' WHERE adressnr = ?", (bernd,)))
    kill_while_applying(ws.tenants["demo"], [f"users:{bernd}"])                # the portal wrote it
    ws.erp_execute(("DELETE FROM vertragpartner WHERE vertragnr = ?", (contract,)),
                   ("UPDATE adresse SET email = ? WHERE adressnr = ?", ("anna@example.org", bernd)))
    held = ws.run(tenant)
    assert held.exit_code == 6 and held.summary["entities"]["users"]["update"] == 0
    assert held.summary["settled"] == {"users": {"landed": 1, "sent_again": 0, "refused": 0, "gone": 0}}
    again = ws.run(tenant)
    assert again.exit_code == 6 and again.summary["drift"] == {}
    assert Findings(again.findings).keys("email_held") == {str(bernd)}
    released = ws.run(tenant, allow_deletes=True)
    assert released.exit_code == 0 and released.summary["drift"] == {}
    assert ws.portal()["users"][str(bernd)]["email"] == "anna@example.org"


def test_a_write_a_killed_run_left_stays_the_engines_while_the_next_runs_are_refused_or_held(ws):
    """The killed runs' updates of Anna and Bernd landed. The next run could not settle them: the
    portal refused Bernd's next write (his new address is a portal user's login) and the deletion
    guard held Anna's archiving. They are in the portal as the killed run wrote them; when the ERP
    changes them again, the run after finds the engine's writes there, not edits."""
    from engine.targets.local import LocalStore
    tenant = ws.tenant(**HOLD_EVERY_DELETE)
    building = ws.in_scope_building()
    anna = ws.add_person("Albers", "Anna", "anna@example.org", telefon="030 1111")
    bernd = ws.add_person("Berger", "Bernd", "bernd@example.org", telefon="030 1111")
    contract = ws.add_contract(ws.add_unit(building, "Wohnung A"), "M", "2024-01-01", None, [anna])
    ws.add_contract(ws.add_unit(building, "Wohnung B"), "M", "2024-01-01", None, [bernd])
    assert ws.run(tenant).exit_code == 0
    phone = "UPDATE adresse SET telefon = ? WHERE adressnr IN (?, ?)"
    ws.erp_execute((phone, ("030 2222", anna, bernd)))
    kill_while_applying(ws.tenants["demo"], [f"users:{anna}", f"users:{bernd}"])     # the portal wrote both
    store = LocalStore(ws.portal_path)
    store.add_manual_user(first_name="Carla", last_name="Cramer", email="carla@example.org")
    store.close()
    ws.erp_execute(("UPDATE adresse SET email = 'carla@example.org' WHERE adressnr = ?", (bernd,)),
                   ("DELETE FROM vertragpartner WHERE vertragnr = ?", (contract,)))
    unsettled = ws.run(tenant)
    assert unsettled.exit_code == 9 and Findings(unsettled.findings).keys("rejected") == {str(bernd)}
    assert unsettled.summary["entities"]["users"]["held"] == 1
    assert unsettled.summary["settled"] == {"users": {"landed": 0, "sent_again": 0, "refused": 1, "gone": 1}}
    ws.erp_execute(("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 1)", (contract, anna)),
                   ("UPDATE adresse SET email = 'bernd@example.org' WHERE adressnr = ?", (bernd,)),
                   (phone, ("030 3333", anna, bernd)))
    night = ws.run(tenant)
    assert night.exit_code == 0 and night.summary["entities"]["users"]["update"] == 2
    assert night.summary["drift"] == {}, [f.message for f in night.findings if f.code == "drift"]
    assert night.summary["settled"] == {"users": {"landed": 0, "sent_again": 2, "refused": 0, "gone": 0}}
    assert ws.run(tenant).summary["settled"] is None


UNREACHABLE = "postgresql+psycopg://sync@127.0.0.1:1/erp"       # nothing listens on port 1: connection refused
LEFT_OPEN = ("writes left unconfirmed (pending in the state store): the portal may or may not have made them; the "
             "next complete run checks them and sends again what the portal did not make, or archives a record the "
             "ERP no longer has once the deletion guard lets it")


def demo_status(ws) -> tuple[list[str], dict]:
    """The lines of `status` under the demo tenant's line (its notes), and its `status --json` object."""
    folder = str(ws.root / "tenants")
    lines = ws.cli("status", "--tenants-dir", folder).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["demo"])
    notes = [line.strip() for line in lines[at + 1:] if line.startswith("      ")]
    [entry] = json.loads(ws.cli("status", "--json", "--tenants-dir", folder).stdout)
    return notes, entry


def test_status_shows_the_writes_a_killed_run_left_open_also_after_a_run_that_could_not_reach_the_erp(ws):
    """A run killed with kill -9 while it applies never closes its history row: status showed it
    `unfinished` without a word of its writes. The next night's run cannot reach the ERP and
    fails before it sends anything: status showed `failed`, the ERP's error, nothing more. The
    portal may hold any of the killed run's writes (here one landed), which the engine has not
    confirmed: status says how many the state store holds pending, until a complete run settles
    them."""
    tenant = ws.tenant_file()
    assert ws.run().exit_code == 0
    people = [u for u in ws.portal()["users"] if "+" not in u][:5]       # persons with a user of their own
    ws.erp_execute(*[("UPDATE adresse SET nachname = nachname || ' I' WHERE adressnr = ?", (p,)) for p in people])
    planned = [c.external_id for c in ws.plan().plan.changes]
    assert set(planned) <= set(people) and len(planned) > 1, planned
    kill_while_applying(tenant, [f"users:{planned[0]}"])
    notes, entry = demo_status(ws)
    assert (entry["verdict"], entry["last_run"]["status"], entry["last_run"]["unconfirmed"]) == \
        ("failed", "running", None)
    assert notes == [f"{len(planned)} {LEFT_OPEN}"] and entry["pending_writes"] == len(planned)
    ws.tenant_file(source_url=UNREACHABLE)
    failed = ws.cli("run", "demo")
    assert failed.returncode == 4 and "(unreachable)" in failed.stderr, failed.stderr
    notes, entry = demo_status(ws)
    assert (entry["verdict"], entry["last_run"]["status"], entry["last_run"]["writes"]) == ("failed", "failed", None)
    assert "(unreachable)" in entry["message"]
    assert notes == [f"{len(planned)} {LEFT_OPEN}"] and entry["pending_writes"] == len(planned)
    ws.tenant_file()
    night = ws.run()
    assert night.exit_code == 0
    assert night.summary["settled"] == {"users": {"landed": 1, "sent_again": len(planned) - 1, "refused": 0, "gone": 0}}
    notes, entry = demo_status(ws)
    assert (entry["verdict"], notes, entry["pending_writes"]) == ("ok", [], None)


def test_status_says_a_write_left_pending_while_its_archiving_is_held_is_archived_not_sent_again(ws):
    """A killed run's update of Anna landed. Her contract vanishes: the next run would archive her,
    the deletion guard holds that back, and her write stays pending (the portal holds the killed
    run's value). A run that cannot reach the ERP comes after: status counted her write among
    those the next run "sends again", which it does not: it archives her once the guard lets it."""
    tenant = ws.tenant(**HOLD_EVERY_DELETE)
    anna = ws.add_person("Albers", "Anna", "anna@example.org", telefon="030 1111")
    contract = ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung A"), "M", "2024-01-01", None, [anna])
    assert ws.run(tenant).exit_code == 0
    ws.erp_execute(("UPDATE adresse SET telefon = '030 2222' WHERE adressnr = ?", (anna,)))
    kill_while_applying(ws.tenants["demo"], [f"users:{anna}"])                 # the portal wrote it
    ws.erp_execute(("DELETE FROM vertragpartner WHERE vertragnr = ?", (contract,)))
    held = ws.run(tenant)
    assert held.exit_code == 6 and held.summary["entities"]["users"]["held"] == 1
    assert held.summary["settled"] == {"users": {"landed": 0, "sent_again": 0, "refused": 0, "gone": 1}}
    ws.tenant_file(source_url=UNREACHABLE, **HOLD_EVERY_DELETE)
    assert ws.cli("run", "demo").returncode == 4
    notes, entry = demo_status(ws)
    assert entry["verdict"] == "failed" and entry["pending_writes"] == 1
    assert notes == ["1 write left unconfirmed (pending in the state store): the portal may or may not have made it; "
                     "the next complete run checks it and sends again what the portal did not make, or archives a "
                     "record the ERP no longer has once the deletion guard lets it"]
    ws.tenant_file(**HOLD_EVERY_DELETE)
    released = ws.run(tenant, allow_deletes=True)
    assert released.exit_code == 0 and released.summary["entities"]["users"]["delete"] == 1
    assert str(anna) not in ws.portal()["users"]
    notes, entry = demo_status(ws)
    assert (entry["verdict"], notes, entry["pending_writes"]) == ("ok", [], None)


def test_a_write_the_portal_refused_is_not_left_unconfirmed_when_no_run_left_it_so(ws):
    """No run was killed or stopped: the portal refused Bernd's write (his new address is a portal
    user's login). It answered, so nothing of his is unconfirmed: the next run does not report
    his write as one an earlier run left unconfirmed (settled)."""
    from engine.targets.local import LocalStore
    tenant = ws.tenant()
    building = ws.in_scope_building()
    bernd = ws.add_person("Berger", "Bernd", "bernd@example.org", telefon="030 1111")
    ws.add_contract(ws.add_unit(building, "Wohnung B"), "M", "2024-01-01", None, [bernd])
    assert ws.run(tenant).exit_code == 0
    store = LocalStore(ws.portal_path)
    store.add_manual_user(first_name="Carla", last_name="Cramer", email="carla@example.org")
    store.close()
    ws.erp_execute(("UPDATE adresse SET email = 'carla@example.org' WHERE adressnr = ?", (bernd,)))
    refused = ws.run(tenant)
    assert refused.exit_code == 9 and Findings(refused.findings).keys("rejected") == {str(bernd)}
    assert refused.summary["settled"] is None
    again = ws.run(tenant)
    assert again.exit_code == 9 and Findings(again.findings).keys("rejected") == {str(bernd)}
    assert again.summary["settled"] is None, again.summary["settled"]
