"""Run after run: an unchanged source makes zero writes, a portal edit is reverted and reported as drift,
a unit deleted in the ERP is archived with its occupancies, and the deletion guard holds back deletes
when an extract looks incomplete or a threshold trips (exit 6)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from engine.report import render_text


def occupied_unit(portal) -> str:
    """A unit of the portal with at least one occupancy, whose people also live elsewhere or not."""
    by_unit: dict[str, int] = {}
    for o in portal["occupancies"].values():
        by_unit[o["unit_id"]] = by_unit.get(o["unit_id"], 0) + 1
    return max(sorted(by_unit), key=lambda u: by_unit[u])


def archived(path, entity: str, external_id: str) -> bool:
    """The store's layout (engine/targets/_store_schema.py): a delete archives the row."""
    with sqlite3.connect(path) as con:
        row = con.execute(f"SELECT archived FROM {entity} WHERE external_id = ?", (external_id,)).fetchone()
    return row is not None and row[0] == 1


def test_a_second_run_with_an_unchanged_source_makes_zero_writes(ws):
    first = ws.run()
    assert first.summary["writes"] > 0
    second = ws.run()
    assert (second.exit_code, second.summary["writes"]) == (0, 0)
    for entity, c in second.summary["entities"].items():
        assert c["unchanged"] == c["desired"] == first.summary["entities"][entity]["desired"], entity
        assert c["create"] == c["update"] == c["delete"] == 0


def test_a_portal_edit_is_reverted_and_reported_as_drift(ws):
    ws.run()
    portal = ws.portal()
    user_id = next(u for u in sorted(portal["users"]) if "+" not in u)
    unit_id = sorted(portal["units"])[0]
    erp_last = ws.erp_rows("SELECT nachname FROM adresse WHERE adressnr = ?", (int(user_id),))[0][0].strip()
    erp_unit = ws.erp_rows("SELECT bezeichnung FROM einheit WHERE einheitid = ?", (int(unit_id),))[0][0].strip()
    assert portal["users"][user_id]["last_name"] == erp_last
    ws.edit_portal(("users", user_id, {"last_name": "Geändert im Portal"}), ("units", unit_id, {"name": "Umbenannt"}))

    done = ws.cli("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert "2 writes applied." in done.stdout
    assert "drift (edited in the portal, overwritten with the ERP's values):" in done.stdout
    assert "units: name 1" in done.stdout and "users: last_name 1" in done.stdout
    after = ws.portal()
    assert after["users"][user_id]["last_name"] == erp_last
    assert after["units"][unit_id]["name"] == erp_unit

    code, summary, err = ws.cli_json("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert (code, summary["writes"], summary["drift"]) == (0, 0, {}), err


def test_drift_names_entity_key_and_field(ws):
    ws.run()
    user_id = next(u for u in sorted(ws.portal()["users"]) if "+" not in u)
    ws.edit_portal(("users", user_id, {"last_name": "Geändert im Portal"}))
    second = ws.run()
    assert second.summary["drift"] == {"users": {"last_name": 1}}
    [drift] = [f for f in second.findings if f.code == "drift"]
    assert (drift.entity, drift.key) == ("users", user_id)
    assert "last_name" in drift.message and "Geändert im Portal" in drift.message
    assert ws.run().summary["writes"] == 0


def test_records_deleted_or_archived_in_the_portal_are_created_again_and_reported_as_drift(ws):
    ws.run()
    before = ws.portal()
    unit = sorted(before["units"])[0]
    user = next(u for u in sorted(before["users"]) if "+" not in u)
    with sqlite3.connect(ws.portal_path) as con:       # as a person would in the portal: archive, delete
        con.execute("UPDATE units SET archived = 1 WHERE external_id = ?", (unit,))
        con.execute("DELETE FROM users WHERE external_id = ?", (user,))

    planned = ws.cli("plan", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert planned.returncode == 0, planned.stderr
    assert "drift (edited in the portal; the run overwrites them with the ERP's values):" in planned.stdout
    assert "units: deleted or archived 1" in planned.stdout and "users: deleted or archived 1" in planned.stdout

    code, summary, err = ws.cli_json("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert code == 0, err
    assert summary["drift"] == {"units": {"(deleted)": 1}, "users": {"(deleted)": 1}}
    assert (summary["entities"]["units"]["create"], summary["entities"]["users"]["create"]) == (1, 1)
    after = ws.portal()
    assert after["units"][unit] == before["units"][unit] and after["users"][user] == before["users"][user]
    third = ws.run()
    assert (third.summary["writes"], third.summary["drift"]) == (0, {})


def test_a_record_the_engine_archived_that_comes_back_is_no_drift(ws):
    ws.run()
    unit = occupied_unit(ws.portal())
    row = ws.erp_rows("SELECT * FROM einheit WHERE einheitid = ?", (int(unit),))[0]
    ws.erp_execute(("DELETE FROM einheit WHERE einheitid = ?", (int(unit),)))
    assert ws.run().summary["entities"]["units"]["delete"] == 1
    ws.erp_execute((f"INSERT INTO einheit VALUES ({', '.join('?' * len(row))})", tuple(row)))
    back = ws.run()
    assert back.summary["entities"]["units"]["create"] == 1
    assert back.summary["drift"] == {} and not [f for f in back.findings if f.code == "drift"]


def test_the_summary_says_where_to_send_is_more_than_read_less_excluded(ws):
    """users: the portal users merged from partnerships are sent, their persons counted as excluded."""
    users = ws.run().summary["entities"]["users"]
    merged_persons = users["excluded"]["partnership_merged"]
    made = users["desired"] - (users["extracted"] - sum(users["excluded"].values()))
    assert 0 < made < merged_persons
    text = ws.cli("plan", str(ws.tenants["demo"]), "--date", "2026-06-01").stdout
    assert (f"  users: to send includes {made} portal users merged from partnerships; their {merged_persons} "
            "persons are counted as excluded (partnership_merged)") in text
    assert "occupancies: to send includes" not in text         # merged occupancies only leave


def test_a_change_in_the_erp_is_an_update_not_drift(ws):
    ws.run()
    user_id = next(u for u in sorted(ws.portal()["users"]) if "+" not in u)
    ws.erp_execute(("UPDATE adresse SET nachname = 'Neuname' WHERE adressnr = ?", (int(user_id),)))
    second = ws.run()
    assert second.summary["entities"]["users"]["update"] == 1 and second.summary["writes"] == 1
    assert second.summary["drift"] == {} and not [f for f in second.findings if f.code == "drift"]
    assert ws.portal()["users"][user_id]["last_name"] == "Neuname"


def test_a_unit_deleted_in_the_erp_is_archived_with_its_occupancies(ws):
    ws.run()
    before = ws.portal()
    unit = occupied_unit(before)
    occupancies = {i for i, o in before["occupancies"].items() if o["unit_id"] == unit}
    people = {before["occupancies"][i]["user_id"] for i in occupancies}
    lose_access = {u for u in people
                   if {o["unit_id"] for o in before.occupancies_of_user(u)} == {unit}}
    ws.erp_execute(("DELETE FROM einheit WHERE einheitid = ?", (int(unit),)))

    second = ws.run()
    assert second.exit_code == 0, second.summary["deletes_held"]
    counts = second.summary["entities"]
    assert (counts["units"]["delete"], counts["occupancies"]["delete"], counts["users"]["delete"]) == \
        (1, len(occupancies), len(lose_access))
    after = ws.portal()
    assert unit not in after["units"] and archived(ws.portal_path, "units", unit)
    assert not occupancies & set(after["occupancies"])
    assert all(archived(ws.portal_path, "occupancies", i) for i in occupancies)
    assert not lose_access & set(after["users"]), "people who lived only there lose access"
    assert (people - lose_access) <= set(after["users"])
    assert ws.run().summary["writes"] == 0


def test_an_emptied_unit_table_holds_every_delete_back(ws):
    ws.run()
    before = ws.portal()
    ws.erp_execute("DELETE FROM einheit")
    code, summary, err = ws.cli_json("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert code == 6, err
    assert summary["status"] == "deletes_held"
    assert any(r.startswith("units: the source returned no rows") for r in summary["deletes_held"])
    held = summary["entities"]
    assert held["units"]["held"] == len(before["units"]) and held["units"]["delete"] == 0
    assert held["occupancies"]["held"] == len(before["occupancies"])
    assert ws.portal().records == before.records, "nothing was deleted"
    text = ws.cli("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert text.returncode == 6 and "DELETES HELD BACK" in text.stdout and "--allow-deletes" in text.stdout

    code, summary, err = ws.cli_json("run", str(ws.tenants["demo"]), "--date", "2026-06-01", "--allow-deletes")
    assert code == 0, err
    assert summary["allow_deletes"] is True and summary["entities"]["units"]["delete"] == len(before["units"])
    after = ws.portal()
    assert (len(after["units"]), len(after["occupancies"])) == (0, 0)
    assert len(after["buildings"]) == len(before["buildings"])


def test_too_many_deletes_are_held_but_the_other_writes_go_ahead(ws):
    ws.run()
    before = ws.portal()
    units = sorted(before["units"])
    share = 0.10                                   # tenants/demo.yaml deletion.max_share
    victims = units[: int(share * len(units)) + 1]
    assert len(victims) <= 50, "below max_count: the share trips"
    ws.erp_execute(f"DELETE FROM einheit WHERE einheitid IN ({','.join(victims)})")
    user_id = next(u for u in sorted(before["users"]) if "+" not in u
                   and not {o["unit_id"] for o in before.occupancies_of_user(u)} & set(victims))
    ws.erp_execute(("UPDATE adresse SET vorname = 'Neu' WHERE adressnr = ?", (int(user_id),)))

    result = ws.run()
    assert result.exit_code == 6
    assert any(r.startswith(f"units: {len(victims)} deletes are") and "more than the limit of 10%" in r
               for r in result.summary["deletes_held"])
    assert result.summary["entities"]["units"]["held"] == len(victims)
    after = ws.portal()
    assert set(victims) <= set(after["units"]), "the deletes were held"
    assert after["users"][user_id]["first_name"] == "Neu", "the update was applied"
    assert [f.code for f in result.findings if f.code == "deletes_held"]
    held = result.summary["entities"]
    assert (held["users"]["held"], held["occupancies"]["held"]) > (0, 0), "their occupancies (and people) go too"
    assert not any(r.startswith(("users:", "occupancies:")) for r in result.summary["deletes_held"])
    text = render_text(result.summary, result.findings)
    assert "    - users, occupancies: held with them, not for a reason of their own" in text, \
        "the summary says why the deletes of users and occupancies are held too"

    released = ws.run(allow_deletes=True)
    assert released.exit_code == 0 and not set(victims) & set(ws.portal()["units"])


def test_a_user_whose_archiving_is_held_keeps_the_login(ws, tmp_path):
    """A third of the units vanish from the ERP: their contracts end, their persons would be
    archived, and the guard holds those deletes. A person sharing an address with one of them
    would win it tonight; it stays with the held user instead (cleared on it, the login would
    be gone, and would stay gone after the ERP is put right, the winner being sticky)."""
    import shutil
    ws.run()
    before = ws.portal()
    whole = tmp_path / "erp-whole.sqlite"
    shutil.copyfile(ws.erp, whole)
    ws.erp_execute("DELETE FROM einheit WHERE rowid % 3 = 0")
    result = ws.run()
    assert result.exit_code == 6, result.summary["deletes_held"]
    held = {c.external_id for c in result.prepared.plan.held if c.entity == "users"}
    after = ws.portal()
    assert held and held <= set(after["users"])
    assert [u for u in held if after["users"][u]["email"] != before["users"][u]["email"]] == []
    kept = [f for f in result.findings if f.code == "email_held"]
    assert kept, "the demo has persons who share an address with a person whose archiving is held"
    for f in kept:                                  # sent without the address (its ERP key is its external_id)
        assert "stays with user" in f.message and f.field == "email"
        assert after["users"][f.key]["email"] in (None, before["users"].get(f.key, {}).get("email")), f

    shutil.copyfile(whole, ws.erp)                  # the ERP put right
    again = ws.run()
    assert again.exit_code == 0
    now = ws.portal()
    assert {u: r["email"] for u, r in now["users"].items()} == {u: r["email"] for u, r in before["users"].items()}


HOLD_EVERY_DELETE = {"deletion": {"max_count": 0, "max_share": 1.0, "min_source_ratio": 0.0}}


@pytest.mark.parametrize("own", ["bernd@example.org", None])
def test_the_user_who_would_take_a_held_login_keeps_its_own(ws, own):
    """Anna's contract vanishes (her archiving is held), and Bernd's ERP record now gives her
    address. Bernd keeps the address he has in the portal (he is not sent without a login he
    has), or, having none, is not written at all: the plan's counts still add up."""
    tenant = ws.tenant(**HOLD_EVERY_DELETE)
    anna = ws.add_person("Albers", "Anna", "anna@example.org")
    bernd = ws.add_person("Berger", "Bernd", own)
    contract = ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung A"), "M", "2024-01-01", None, [anna])
    ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung B"), "M", "2024-01-01", None, [bernd])
    assert ws.run(tenant).exit_code == 0
    ws.erp_execute(("DELETE FROM vertragpartner WHERE vertragnr = ?", (contract,)),
                   ("UPDATE adresse SET email = ? WHERE adressnr = ?", ("anna@example.org", bernd)))
    planned = ws.plan(tenant)
    counts = planned.plan.counts()["users"]
    assert counts["held"] == 1
    assert counts["create"] + counts["update"] + counts["unchanged"] == len(planned.data["users"].records)
    result = ws.run(tenant)
    assert result.exit_code == 6
    users = ws.portal()["users"]
    assert (users[str(anna)]["email"], users[str(bernd)]["email"]) == ("anna@example.org", own)
    [held] = [f for f in result.findings if f.code == "email_held"]
    assert held.key == str(bernd) and f"stays with user {anna}" in held.message
    assert (f"with its address in the portal, '{own}'" if own else "without an address") in held.message


def test_quiet_prints_nothing_for_a_run_that_ends_ok_and_the_summary_otherwise(ws):
    """For a scheduler that mails whatever a job prints: a quiet run that ends ok prints
    nothing; one that needs attention (here: deletes held back, exit 6) prints its summary."""
    path = ws.tenant_file()
    done = ws.cli("run", str(path), "--date", "2026-06-01", "--quiet")
    assert done.returncode == 0 and done.stdout == "", done.stdout
    assert len(ws.portal()["units"]) > 0
    ws.erp_execute("DELETE FROM einheit")
    done = ws.cli("run", str(path), "--date", "2026-06-01", "-q")
    assert done.returncode == 6
    assert "DELETES HELD BACK" in done.stdout and "tenant demo" in done.stdout
    import json
    latest = json.loads(ws.cli("history", str(path), "--json").stdout)[0]        # and the history says why
    assert (latest["status"], latest["message"][:48]) == ("deletes_held", "deletes held back: units: the source returned no")


def test_max_count_and_a_shrunken_extract_trip_the_guard(ws):
    tenant = ws.tenant(deletion={"max_count": 3, "max_share": 1.0, "min_source_ratio": 0.5})
    ws.run(tenant)
    units = sorted(ws.portal()["units"])
    ws.erp_execute(f"DELETE FROM einheit WHERE einheitid IN ({','.join(units[:4])})")
    held = ws.run(tenant)
    assert held.exit_code == 6
    assert "units: 4 deletes exceed the limit of 3 per run" in held.summary["deletes_held"]

    rows = ws.erp_rows("SELECT count(*) FROM einheit")[0][0]
    state = ws.state()
    extracted_before = state.last_extracted("demo")["units"]          # the last successful run's extract
    state.close()
    keep = ws.erp_rows("SELECT einheitid FROM einheit ORDER BY einheitid LIMIT ?", (rows // 3,))
    ws.erp_execute(f"DELETE FROM einheit WHERE einheitid NOT IN ({','.join(str(r[0]) for r in keep)})")
    shrunk = ws.run(tenant)
    assert shrunk.exit_code == 6
    assert any(f"units: the source returned {rows // 3} rows, fewer than 50% of the {extracted_before}" in r
               for r in shrunk.summary["deletes_held"]), shrunk.summary["deletes_held"]


def test_the_guards_reasons_print_their_counts_as_the_summary_table_does():
    """A large tenant's held deletes: the reasons said '20003 deletes' and '18715 rows' under a
    summary table that prints 20,003."""
    from engine.config.model import Deletion
    from engine.plan import guard_deletes
    from engine.targets.base import Change
    deletes = {"units": [Change("units", "delete", str(i)) for i in range(20_003)]}
    shrunk = guard_deletes(deletes, {"units": 187_150}, {"units": 18_715}, {"units": 187_150},
                           Deletion(max_count=1_000, max_share=1.0, min_source_ratio=0.5), allow=False)
    assert shrunk == ["units: the source returned 18,715 rows, fewer than 50% of the 187,150 of the last successful "
                      "run (incomplete extract?)",
                      "units: 20,003 deletes exceed the limit of 1,000 per run"]
    share = guard_deletes(deletes, {"units": 187_150}, {"units": 167_147}, {"units": 187_150},
                          Deletion(max_count=50_000, max_share=0.1, min_source_ratio=0.5), allow=False)
    assert share == ["units: 20,003 deletes are 11% of 187,150 managed records, more than the limit of 10%"]


def test_the_guard_names_both_limits_and_a_share_just_over_its_limit_reads_as_over():
    """30 deletes of 288 are 10.4%: '10% ..., more than the limit of 10%' read as a contradiction;
    57 of 288 trip both max_count and max_share, and the reasons named only the first."""
    from engine.config.model import Deletion
    from engine.plan import guard_deletes
    from engine.targets.base import Change

    def reasons(n, policy):
        return guard_deletes({"units": [Change("units", "delete", str(i)) for i in range(n)]}, {"units": 288},
                             {"units": 288 - n}, {"units": 288}, policy, allow=False)
    assert reasons(30, Deletion(max_count=100, max_share=0.1, min_source_ratio=0.5)) == [
        "units: 30 deletes are 10.4% of 288 managed records, more than the limit of 10%"]
    assert reasons(57, Deletion(max_count=50, max_share=0.1, min_source_ratio=0.5)) == [
        "units: 57 deletes exceed the limit of 50 per run",
        "units: 57 deletes are 20% of 288 managed records, more than the limit of 10%"]


def test_a_failed_run_still_prints_a_summary_object_with_json(ws):
    """A scheduler reading `--json` learns why a run failed: status failed, the exit code, the
    error and what to do (docs/summary.md), for a run stopped by the dedup policy `fail` and for
    a plan whose ERP file is missing; a successful run's summary has no such field."""
    from engine.errors import ExitCode
    path = ws.tenant_file(dedup={"email": {"policy": "fail", "fallback": None}})
    code, summary, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == ExitCode.DEDUP_FAILED, err
    assert summary is not None, "nothing on standard output"
    assert (summary["status"], summary["exit_code"], summary["mode"], summary["tenant"]) == \
        ("failed", 8, "run", "demo")
    assert "shared by several persons" in summary["error"]["message"] and summary["error"]["hint"]
    assert summary["error"]["message"] in err

    missing = ws.tenant_file("gone", source_url=f"sqlite:///{ws.root / 'no-such-erp.sqlite'}")
    code, summary, err = ws.cli_json("plan", str(missing), "--no-out")
    assert code == ExitCode.SOURCE and summary["status"] == "failed" and summary["exit_code"] == 4, err
    assert summary["mode"] == "plan" and "no-such-erp.sqlite" in summary["error"]["message"]

    code, summary, err = ws.cli_json("run", "no-such-tenant", "--date", "2026-06-01")
    assert code == 3 and summary["tenant"] == "no-such-tenant", err       # as given: no file to read the id from

    code, summary, err = ws.cli_json("run", str(ws.tenant_file()), "--date", "2026-06-01")
    assert code == 0 and summary["status"] == "ok" and "exit_code" not in summary, err
    timings = summary["timings"]          # a run's time includes writing to the portal
    assert set(timings) == {"extract", "transform", "plan", "apply", "total"} and timings["apply"] > 0
    assert timings["total"] >= timings["extract"] + timings["transform"] + timings["plan"] + timings["apply"] - 0.01


def test_plan_does_not_create_the_local_portal_store(ws):
    """`plan` writes nothing to the target: a local store that does not exist yet reads as empty
    (everything would be created) and is still missing afterwards; the first run creates it."""
    path = ws.tenant_file()
    assert not ws.portal_path.exists()
    code, summary, err = ws.cli_json("plan", str(path), "--no-out", "--date", "2026-06-01")
    assert code == 0, err
    assert summary["writes"] > 0 and summary["writes"] == sum(e["create"] for e in summary["entities"].values())
    assert not ws.portal_path.exists(), "plan created the portal store"
    code, summary_run, err = ws.cli_json("run", str(path), "--date", "2026-06-01")
    assert code == 0 and summary_run["writes"] == summary["writes"] and ws.portal_path.exists(), err


def test_the_plan_file_says_when_it_was_made_and_the_report_opens_with_its_umlauts(ws):
    """The plan file names its tenant, when it was made and the run date it was made for; the
    findings CSV starts with a byte order mark, which Excel needs to read UTF-8 (umlauts) right.
    Both replace the previous file whole: no temporary file is left beside them."""
    import csv
    import datetime as dt
    import json
    path = ws.tenant_file()
    out, report = ws.root / "out" / "plan.json", ws.root / "out" / "findings.csv"
    code, summary, err = ws.cli_json("plan", str(path), "--out", str(out), "--findings", str(report),
                                     "--date", "2026-06-01")
    assert code == 0, err
    plan = json.loads(out.read_text(encoding="utf-8"))
    assert (plan["tenant"], plan["run_date"]) == ("demo", "2026-06-01")
    made = dt.datetime.fromisoformat(plan["created_at"])
    assert abs((dt.datetime.now(dt.timezone.utc) - made).total_seconds()) < 600
    assert plan["counts"]["units"]["create"] == summary["entities"]["units"]["create"]
    raw = report.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert rows and set(rows[0]) == {"severity", "code", "entity", "erp_key", "field", "message", "what_to_fix"}
    assert any("ü" in r["message"] or "ß" in r["message"] or "ä" in r["message"] for r in rows)
    assert sorted(p.name for p in out.parent.iterdir()) == ["findings.csv", "plan.json"]


def test_a_tenant_file_elsewhere_finds_its_mapping_with_mapping_dir(ws):
    """The tenant commands take --mapping-dir as validate does (docs/config.md): a tenant file
    kept outside a tenants/ folder next to mappings/ is planned with it, and without it the
    error names the folder it looked in."""
    import shutil
    elsewhere = ws.root / "elsewhere" / "kunden"
    elsewhere.mkdir(parents=True)
    moved = shutil.copy(ws.tenant_file(), elsewhere / "demo.yaml")
    code, _, err = ws.cli_json("plan", str(moved), "--no-out")
    assert code == 3 and "mapping 'domus-sql' not found: no domus-sql.yaml in elsewhere/mappings/" in err
    assert "--mapping-dir" in err
    code, summary, err = ws.cli_json("plan", str(moved), "--no-out", "--mapping-dir", str(ws.root / "mappings"))
    assert code == 0 and summary["status"] == "ok", err


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("below", ["portal.sqlite", "deeper/portal.sqlite"])
def test_a_local_store_that_cannot_be_created_fails_plan_and_run_with_exit_5(ws, command, below):
    """A target path below a regular file: plan (which creates nothing) and run (which would
    create the store) both stop with the target's exit code and say which tenant, which store,
    what is in the way and what to do; no traceback, and the file in the way is left alone."""
    blocker = ws.root / "not-a-folder"
    blocker.write_text("x")
    store = blocker / below
    path = ws.tenant_file(target={"path": str(store)})
    code, summary, err = ws.cli_json(command, str(path), *(["--no-out"] if command == "plan" else []))
    assert (code, summary["status"], summary["exit_code"]) == (5, "failed", 5), err
    assert f"idwell-sync {command}: error: tenant 'demo': cannot create the local portal store {store}: " \
           f"{blocker} is a file, not a folder\n" in err
    hint = f"move {blocker} out of the way, or change target.path in the tenant file"
    assert f"what to do: {hint}" in err and summary["error"]["hint"] == hint
    assert "Traceback" not in err and "internal error" not in err
    assert blocker.read_text() == "x"
    if command == "run":
        state = ws.state()
        try:
            assert state.runs("demo")[0].status == "failed"
        finally:
            state.close()


def test_a_report_path_that_is_a_link_replaces_the_file_it_names_and_keeps_its_permissions(tmp_path):
    """The findings CSV written to a link into a share: the shared file gets the new report
    (the link stays a link), with the permissions it was given."""
    from engine.findings import Finding
    from engine.findings_report import write_findings_csv
    share = tmp_path / "share" / "acme.csv"
    share.parent.mkdir()
    share.write_text("old", encoding="utf-8")
    share.chmod(0o640)
    link = tmp_path / "report.csv"
    link.symlink_to(share)
    write_findings_csv([Finding("phone_invalid", "users", "1000019", "'keine' is not a phone number")], link)
    assert link.is_symlink() and "keine" in share.read_text(encoding="utf-8-sig")
    assert share.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in share.parent.iterdir()) == ["acme.csv"]


def test_a_state_store_that_fails_at_the_end_of_a_run_with_deletes_held_is_told(ws, monkeypatch):
    """Deletes held back are not a failure of the run: a state store that cannot record its end
    then fails the run (exit 10), as after a run that went through, instead of a warning."""
    from engine.errors import StateError
    from engine.state import StateStore
    ws.run()
    ws.erp_execute("DELETE FROM einheit")

    def broken(self, run_id, **kwargs):
        raise StateError("tenant 'demo': cannot record the end of the run in the state store: disk full")
    monkeypatch.setattr(StateStore, "finish_run", broken)
    with pytest.raises(StateError, match="disk full"):
        ws.run()


def test_refused_records_do_not_hide_deletes_held_back_in_the_same_run(ws):
    """Exit 9 takes precedence over 6; the history and status still say that deletes wait."""
    from engine.targets.local import LocalStore
    ws.run()
    before = ws.portal()
    units = sorted(before["units"])
    victims = units[: int(0.10 * len(units)) + 1]               # over tenants/demo.yaml's max_share
    ws.erp_execute(f"DELETE FROM einheit WHERE einheitid IN ({','.join(victims)})")
    user_id = next(u for u in sorted(before["users"]) if "+" not in u
                   and not {o["unit_id"] for o in before.occupancies_of_user(u)} & set(victims))
    ws.erp_execute(("UPDATE adresse SET email = 'vergeben@example.de' WHERE adressnr = ?", (int(user_id),)))
    store = LocalStore(ws.portal_path)
    store.add_manual_user(last_name="Von Hand", email="vergeben@example.de")     # made by hand in the portal
    store.close()

    result = ws.run()
    assert result.exit_code == 9 and result.summary["status"] == "rejected"
    assert result.summary["deletes_held"]
    [last] = json.loads(ws.cli("history", "demo", "--json", "--limit", "1").stdout)
    assert last["status"] == "rejected" and last["message"].startswith("deletes held back: units: ")
    status = ws.cli("status", "--json", "--tenants-dir", str(ws.root / "tenants"))
    [entry] = [e for e in json.loads(status.stdout) if e["tenant"] == "demo"]
    assert entry["verdict"] == "rejected"
    assert entry["message"].startswith("the portal refused 1 record; the next run sends it again; "
                                       "deletes held back: units: ")


def test_one_retry_reads_once(ws):
    """The summary's retry line for a single request asked again says so in words."""
    summary = dict(ws.run().summary, retries={"requests": 1, "waited_s": 0.5, "by_reason": {"503": 1}})
    assert "the import API was asked again once (503 1), 0.5 s waiting" in render_text(summary, [])
    summary["retries"] = {"requests": 12, "waited_s": 3.0, "by_reason": {"429": 12}}
    assert "the import API was asked again 12 times (429 12), 3.0 s waiting" in render_text(summary, [])


def test_the_erp_apis_retries_have_a_line_before_the_import_apis_and_an_sql_source_none(ws):
    """An SQL source retries nothing: its summary's source_retries is null and there is no line.
    An API source's retries come first (the extract comes before the apply), in the same words."""
    summary = ws.run().summary
    assert summary["source_retries"] is None
    assert "asked again" not in render_text(summary, [])
    summary.update(source_retries={"requests": 1, "waited_s": 0.4, "by_reason": {"timeout": 1}},
                   retries={"requests": 2, "waited_s": 1.0, "by_reason": {"429 rate_limited": 2}})
    lines = [line for line in render_text(summary, []).splitlines() if "asked again" in line]
    assert lines == ["  the ERP's API was asked again once (timeout 1), 0.4 s waiting: the ERP's server or the "
                     "network was throttling or failing",
                     "  the import API was asked again 2 times (429 rate_limited 2), 1.0 s waiting: the portal or "
                     "the network was throttling or failing"]


def test_large_figures_in_the_summary_table_keep_their_columns_apart(ws):
    """A tenant of size M or L has six-digit counts in columns sized for the demo; each figure
    must stay readable on its own (they ran together as '2918,715' in the held column)."""
    summary = ws.run().summary
    units = summary["entities"]["units"]
    units.update(extracted=1_234_567, desired=1_200_000, create=215_001, update=99_999, delete=0,
                 unchanged=2_900_000, held=18_715, rejected=1_000_000)
    table = [line for line in render_text(summary, []).splitlines() if line.startswith("  units ")]
    assert table[0].split() == ["units", "1,234,567", f"{sum(units['excluded'].values()):,}", "1,200,000", "|",
                                "215,001", "99,999", "0", "2,900,000", "18,715", "1,000,000"]
    lines = render_text(summary, []).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  entity"))
    assert len({len(line) for line in lines[head:head + 6]}) == 1, "header, rule and rows are equally wide"
