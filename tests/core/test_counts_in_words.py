"""A count of one reads as one in what the commands print: `1 write applied.`, not `1 writes`."""
from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("n, noun, plural, text", [
    (0, "write", None, "0 writes"), (1, "write", None, "1 write"), (2, "write", None, "2 writes"),
    (1_204, "record", None, "1,204 records"), (1, "e-mail address", "e-mail addresses", "1 e-mail address"),
    (3, "e-mail address", "e-mail addresses", "3 e-mail addresses")])
def test_counted(n, noun, plural, text):
    from engine.plural import counted
    assert counted(n, noun, plural) == text


def test_a_run_with_one_write_says_one_write(ws):
    ws.run()
    user_id = next(u for u in sorted(ws.portal()["users"]) if "+" not in u)
    ws.edit_portal(("users", user_id, {"last_name": "Geändert im Portal"}))
    done = ws.cli("run", str(ws.tenants["demo"]), "--date", "2026-06-01")
    assert done.returncode == 0, done.stderr
    assert "  1 write applied." in done.stdout.splitlines()
    again = ws.cli("plan", str(ws.tenants["demo"]), "--date", "2026-06-01", "--out", str(ws.root / "plan.json"))
    assert "  0 writes planned." in again.stdout.splitlines()


def test_a_tenant_id_with_no_file_names_how_many_files_there_are(ws):
    ws.tenant_file("demo")
    done = ws.cli("run", "nonexist")
    assert done.returncode == 3 and "(1 tenant file is there)" in done.stderr, done.stderr
    ws.tenant_file("other")
    done = ws.cli("run", "nonexist")
    assert "(2 tenant files are there)" in done.stderr, done.stderr


def test_status_of_a_run_whose_portal_refused_one_record(ws):
    from engine.targets.local import LocalStore
    ws.run()
    user_id = next(u for u in sorted(ws.portal()["users"]) if "+" not in u)
    ws.erp_execute(("UPDATE adresse SET email = 'vergeben@example.de' WHERE adressnr = ?", (int(user_id),)))
    store = LocalStore(ws.portal_path)
    store.add_manual_user(last_name="Von Hand", email="vergeben@example.de")
    store.close()
    assert ws.cli("run", str(ws.tenants["demo"]), "--date", "2026-06-01").returncode == 9
    status = ws.cli("status", "--json", "--tenants-dir", str(ws.root / "tenants"))
    [entry] = [e for e in json.loads(status.stdout) if e["tenant"] == "demo"]
    assert entry["message"].startswith("the portal refused 1 record; the next run sends it again")
