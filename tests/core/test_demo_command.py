"""The README's demo command on a fresh directory: `idwell-sync demo` generates the demo ERP, syncs it into
the local portal store and prints a summary in which the hard cases show up with the right counts;
running it again reports zero writes."""
from __future__ import annotations

import json
import shutil

import pytest

from engine.demo import Manifest

from conftest import MAPPINGS, REPO, Workspace


@pytest.fixture(scope="module")
def first_demo(demo_dir):
    done = demo_dir.cli("demo", "--json")
    assert done.returncode == 0, done.stderr
    manifest = Manifest.load(demo_dir.erp.with_name("erp.sqlite.manifest.json"))
    return json.loads(done.stdout), manifest


def parties(ws, contracts) -> int:
    if not contracts:
        return 0
    return ws.erp_rows(f"SELECT count(*) FROM vertragpartner WHERE vertragnr IN ({','.join(map(str, contracts))})")[0][0]


def test_the_demo_summary_counts_the_hard_cases(demo_dir, first_demo):
    summary, m = first_demo
    assert summary["status"] == "ok" and summary["writes"] > 0
    found = summary["findings"]
    keys = lambda code, kind: set(m.keys(code, kind))  # noqa: E731
    phantoms = keys("phantom_by_type", "einheitid") | keys("phantom_by_flag", "einheitid") | \
        keys("phantom_by_name", "einheitid")
    excluded_objects_units = keys("test_object", "einheitid") | keys("out_of_scope_object", "einheitid")
    ended = keys("contract_ended_long_ago", "vertragnr") | keys("contract_ended_beyond_grace_edge", "vertragnr")
    future = keys("contract_future_beyond_window_edge", "vertragnr") | keys("contract_future_beyond_window", "vertragnr")
    # phone garbage is reported, a placeholder ('keine', '-', '0') is an empty field: the demo has both
    reported_garbage = [c for c in m.cases["phone_garbage"] if c["raw"] not in ("keine", "-", "0")]
    assert 0 < len(reported_garbage) < len(m.cases["phone_garbage"])
    expected = {
        "phantom_unit": len(phantoms),
        "test_object": len(keys("test_object", "objektnr")),
        "out_of_scope": len(keys("out_of_scope_object", "objektnr")),
        "orphan_unit": len(keys("orphan_unit", "einheitid")),
        "unit_of_excluded_building": len(excluded_objects_units - phantoms),
        "pseudo_person": len(keys("pseudo_person", "adressnr")),
        "vacancy_contract": parties(demo_dir, keys("vacancy_contract", "vertragnr")),
        "contract_ended": parties(demo_dir, ended),
        "contract_future": parties(demo_dir, future),
        "occupancy_unknown_unit": parties(demo_dir, keys("contract_unknown_unit", "vertragnr")),
        "occupancy_unknown_user": len(m.cases["party_unknown_person"]),
        "name_truncated": len(m.cases["name_over_70"]),
        "phone_invalid": len(reported_garbage),
        "email_annotated": len(m.cases["email_annotated"]),
        "code_not_in_table": len({case["raw"].strip().lower() for case in m.cases["salutation_not_in_table"]}),
    }
    assert {code: found.get(code, 0) for code in expected} == expected
    for code in ("email_invalid", "email_multiple", "email_shared", "partnership_merged",
                 "occupancy_excluded_unit", "user_without_occupancy"):
        assert found.get(code, 0) > 0, code
    assert "rejected" not in found and "invalid_record" not in found


def test_the_demo_json_has_the_closing_table(first_demo):
    """`demo --json` lists what the run made of each hard case, as the text's closing table."""
    summary, m = first_demo
    cases = {c["case"]: c for c in summary["hard_cases"]}
    assert set(cases) == set(m.cases)
    assert all(c["instances"] == len(m.cases[name]) for name, c in cases.items())
    for phantom in ("phantom_by_type", "phantom_by_flag", "phantom_by_name"):      # not sent; their objects are
        units = cases[phantom]["in_portal"]["units"]
        assert (units["present"], units["of"]) == (0, len(set(m.keys(phantom, "einheitid"))))
        assert cases[phantom]["findings"] == {"phantom_unit": len(m.cases[phantom])}
    couples = cases["couple_shared_email"]
    users = couples["in_portal"]["users"]
    assert users["present"] == users["of"] == users["merged"] == 2 * users["merged_users"] == 2 * couples["instances"]
    garbage = cases["phone_garbage"]
    assert garbage["findings"]["phone_invalid"] + garbage["without_finding"] == garbage["instances"]
    assert garbage["without_finding"] == sum(c["raw"] in ("keine", "-", "0") for c in m.cases["phone_garbage"])


def test_the_second_demo_run_reports_zero_writes(demo_dir, first_demo):
    done = demo_dir.cli("demo")
    assert done.returncode == 0, done.stderr
    assert "  0 writes applied." in done.stdout.splitlines()
    assert "tenant demo: run ok (reference date 2026-06-01)" in done.stdout
    for line in ("phantom_unit", "orphan_unit", "contract_ended", "partnership_merged", "phone_invalid"):
        assert line in done.stdout, f"the text summary lists {line}"
    assert (demo_dir.root / "var" / "demo" / "findings.csv").is_file()


def test_the_demo_and_run_demo_share_one_history_and_fresh_forgets_it(demo_dir, first_demo):
    """`idwell-sync demo` keeps its state where `idwell-sync run demo` does (one history, one
    lock, one memory of what was written); `demo --fresh` starts the demo tenant over there,
    leaving nothing of it behind."""
    done = demo_dir.cli("run", "demo")
    assert done.returncode == 0, done.stderr
    assert "  0 writes applied." in done.stdout.splitlines(), "the run sees what the demo wrote"
    history = json.loads(demo_dir.cli("history", "demo", "--json").stdout)
    assert len(history) >= 2 and {r["status"] for r in history} == {"ok"}
    assert not (demo_dir.root / "var" / "demo" / "state.sqlite").exists()
    done = demo_dir.cli("demo", "--fresh", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["writes"] > 1000
    history = json.loads(demo_dir.cli("history", "demo", "--json").stdout)
    assert len(history) == 1


def test_demo_with_another_seed_generates_that_erp_instead_of_reusing_the_old_one(tmp_path):
    """`idwell-sync demo --seed N` (or `--size`) after a demo of another seed used to run the old
    ERP without a word: the options took effect only when no ERP was there yet. Now an ERP whose
    manifest names another size or seed is generated anew, with its portal store and state."""
    shutil.copytree(REPO / "tenants", tmp_path / "tenants")
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    ws = Workspace(tmp_path, tmp_path / "var" / "demo" / "erp.sqlite", None)
    manifest_path = ws.erp.with_name("erp.sqlite.manifest.json")
    assert ws.cli("demo", "--json").returncode == 0
    assert Manifest.load(manifest_path).seed == 42
    done = ws.cli("demo", "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr
    assert "generating it anew" in done.stderr
    assert Manifest.load(manifest_path).seed == 7
    assert json.loads(done.stdout)["writes"] > 1000, "a new portal store, filled from the new ERP"
    again = ws.cli("demo", "--seed", "7", "--json")       # the same seed: the ERP is kept
    assert again.returncode == 0 and "anew" not in again.stderr
    assert json.loads(again.stdout)["writes"] == 0
    plain = ws.cli("demo", "--json")                      # no --size/--seed: whatever ERP is there
    assert plain.returncode == 0 and json.loads(plain.stdout)["writes"] == 0
    assert Manifest.load(manifest_path).seed == 7


def test_demo_fresh_forgets_the_writes_a_killed_run_left_unconfirmed(tmp_path, monkeypatch):
    """`demo --fresh` forgot the demo tenant's runs, e-mail winners and what the engine last wrote,
    but not the writes a killed run left pending: the fresh run, into an empty portal store,
    counted them as `settled` (writes an earlier run left unconfirmed, sent again), and such a
    value could still be taken for the engine's own write. Now nothing of them is left: no
    `settled`, nothing pending in `status`."""
    from engine.state import StateStore
    from killed_runs import kill_while_applying
    shutil.copytree(REPO / "tenants", tmp_path / "tenants")
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    ws = Workspace(tmp_path, tmp_path / "var" / "demo" / "erp.sqlite", None)
    tenant, url = tmp_path / "tenants" / "demo.yaml", f"sqlite:///{tmp_path / 'var' / 'state.sqlite'}"
    with tenant.open("a", encoding="utf-8") as fh:          # the store `demo` uses, named for the killed run
        fh.write(f"state_url: {url}\n")
    assert ws.cli("demo", "--json").returncode == 0
    ws.erp_execute("UPDATE adresse SET nachname = nachname || ' I'")
    monkeypatch.chdir(tmp_path)                             # the demo tenant's paths are relative to it
    kill_while_applying(tenant)
    store = StateStore(url)
    try:
        assert store.pending_ids("demo", "users"), "the killed run noted its updates ahead"
    finally:
        store.close()
    done = ws.cli("demo", "--fresh", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["writes"] > 1000 and summary["settled"] is None
    [run] = json.loads(ws.cli("history", "demo", "--json").stdout)
    assert run["settled"] is None and run["unconfirmed"] == 0
    [entry] = json.loads(ws.cli("status", "--json").stdout)
    assert (entry["verdict"], entry["pending_writes"]) == ("ok", None)
    store = StateStore(url)
    try:
        assert [store.pending_ids("demo", e) for e in ("buildings", "units", "users", "occupancies")] == [set()] * 4
    finally:
        store.close()
