"""A contract removed in the ERP while a run reads an endpoint paged by position (page_number,
offset, or next-page links that count pages) moves the records after it back by one place: the
first record of the next page becomes the last of a page read already, and the first reading of
the pages does not have it. Taken for deleted, its occupancy (and a resident without another one)
was archived in the portal until the next night. The second reading of the pages (the
paginator's `verify`, on by default) finds it.

Against the Cloud Connect stand-in (a real HTTP server on 127.0.0.1) whose ERP loses a contract
between two pages, run as the scheduler runs it (`idwell-sync run`, a process of its own), into
the local portal store."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml

from cloud_connect import QUERIES, CloudConnect
from engine.state import StateStore
from engine.targets.local import LocalStore
from test_api_retries_reported import _cli
from test_api_source import KEY, _tenant

SIZE = 100                  # the tenant's page_size
PARTIES = "/contracts/parties"


pytestmark = pytest.mark.parametrize("erp", ["copy"], indirect=True)     # each test changes its ERP (conftest.py)


def _moving_tenant(folder: Path, cc: CloudConnect, overrides: dict | None = None) -> Path:
    path = _tenant(folder, "moving", {"type": "api", "base_url": cc.url, "page_size": SIZE,
                                      "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                   "domus-api", "client")
    if overrides:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["overrides"]["entities"].update(overrides)
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _portal(folder: Path, entity: str) -> set[str]:
    store = LocalStore(folder / "moving-portal.sqlite")
    try:
        return {r["external_id"] for r in store.read(entity)}
    finally:
        store.close()


def _parties(erp: Path) -> list[tuple]:
    """The records of /contracts/parties in the order of its pages."""
    con = sqlite3.connect(erp)
    try:
        return con.execute(QUERIES[PARTIES][0]).fetchall()
    finally:
        con.close()


def _pages(erp: Path) -> list[str]:
    """The requests that read /contracts/parties once: every page, and the empty one after them."""
    return [f"page={n}" for n in range(1, -(-len(_parties(erp)) // SIZE) + 2)]


def _occupancy(row: tuple) -> str:
    return f"{row[0]}-{row[1]}"


def _contract_before_a_page_end(rows: list[tuple], portal: set[str]) -> tuple[int, tuple, tuple]:
    """(page, a contract's only party on that page, the first record of the next page), both in
    the portal: removing the contract moves that record onto the page."""
    parties = Counter(row[0] for row in rows)
    for page in range(1, len(rows) // SIZE + 1):
        first_next = rows[page * SIZE]
        if _occupancy(first_next) not in portal:
            continue
        for row in rows[(page - 1) * SIZE:page * SIZE]:
            if parties[row[0]] == 1 and _occupancy(row) in portal:
                return page, row, first_next
    raise AssertionError("the demo ERP has no such contract")


def _remove_while_paging(cc: CloudConnect, erp: Path, page: int, contract: int) -> None:
    """The contract is removed from the ERP just before the first request for page `page + 1`."""
    removed: list[int] = []

    def before(path: str, query: dict) -> None:
        if path == PARTIES and query.get("page", "1") == str(page + 1) and not removed:
            con = sqlite3.connect(erp)
            with con:
                con.execute("DELETE FROM vertragpartner WHERE vertragnr = ?", (contract,))
                con.execute("DELETE FROM vertrag WHERE vertragnr = ?", (contract,))
            con.close()
            removed.append(contract)
    cc.before = before


def _first_run(cc: CloudConnect, folder: Path, tenant: Path) -> list[str]:
    """The portal as the ERP has it: an ERP that does not change reports nothing. Returns the
    requests for /contracts/parties, as `page=N`."""
    asked: list[str] = []
    cc.before = lambda path, query: asked.append(f"page={query.get('page', 1)}") if path == PARTIES else None
    proc = _cli(folder, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["entities"]["occupancies"]["create"] > 400
    assert summary["source_recovered"] is None
    assert "second reading" not in proc.stderr and "came again" not in proc.stderr
    return asked


def _recorded(folder: Path) -> dict:
    """The summary of the tenant's last run, as the run history has it."""
    state = StateStore(f"sqlite:///{folder / 'state.sqlite'}")
    try:
        return state.runs("moving")[0].summary
    finally:
        state.close()


def test_a_contract_removed_while_its_pages_are_read_does_not_archive_the_one_after_it(erp, tmp_path):
    """The removed contract was read before it was removed (its page came first): the next run
    archives it. The one that moved back onto its page was missed by the first reading: it
    stays in the portal, and the run says so."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        pages = _pages(erp)
        assert _first_run(cc, tmp_path, tenant) == pages + pages, "read to the empty page, twice"
        before, residents = _portal(tmp_path, "occupancies"), _portal(tmp_path, "users")
        page, removed, moved = _contract_before_a_page_end(_parties(erp), before)
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant))
        assert proc.returncode == 0, proc.stderr
        assert _portal(tmp_path, "occupancies") == before, "nothing is archived: the moved contract still exists"
        assert _portal(tmp_path, "users") == residents, "its resident keeps the login"
        summary = _recorded(tmp_path)
        assert summary["entities"]["occupancies"]["delete"] == 0
        assert summary["source_recovered"] == {"occupancies": 1}
        assert ("  the second reading of the ERP's pages found records the first had missed (occupancies 1): "
                "records were removed in the ERP while the pages were read" in proc.stdout)
        assert (f"tenant 'moving': occupancies: the second reading of {PARTIES} found 1 record that the first "
                f"had missed (key {moved[0]}/{moved[1]}): records were removed in the ERP while the pages were "
                "read" in proc.stderr)

        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    after = _portal(tmp_path, "occupancies")
    assert before - after == {_occupancy(removed)}, "the next run archives the removed contract, and only it"
    assert residents - _portal(tmp_path, "users") <= {str(removed[1])}
    assert str(moved[1]) in _portal(tmp_path, "users")
    assert json.loads(proc.stdout)["source_recovered"] is None
    assert "second reading" not in proc.stderr


def test_next_page_links_that_count_pages_are_read_twice_as_page_numbers_are(erp, tmp_path):
    """An API paged by `link_header` whose links name the next page by its number (`?page=3`)
    moves as page numbers do: the links are read a second time, and the contract that moved back
    onto a page read already is not archived."""
    with CloudConnect(str(erp), KEY, links=True) as cc:
        tenant = _moving_tenant(tmp_path, cc, {"occupancies": {"paginator": {"type": "link_header"}}})
        links = [f"page={n}" for n in range(1, len(_parties(erp)) // SIZE + 2)]      # the last one is short
        assert _first_run(cc, tmp_path, tenant) == links + links
        before = _portal(tmp_path, "occupancies")
        page, removed, moved = _contract_before_a_page_end(_parties(erp), before)
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _portal(tmp_path, "occupancies") == before, "nothing is archived: the moved contract still exists"
    assert json.loads(proc.stdout)["source_recovered"] == {"occupancies": 1}
    assert f"found 1 record that the first had missed (key {moved[0]}/{moved[1]})" in proc.stderr


def test_verify_false_reads_the_pages_once_and_leaves_the_gap(erp, tmp_path):
    """`paginator: {verify: false}` (for an API that serves a snapshot) reads each page once; a
    contract removed meanwhile then hides the one after it, which is archived until the next run."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc, {"occupancies": {"paginator": {"type": "page_number", "verify": False}}})
        pages = _pages(erp)
        assert _first_run(cc, tmp_path, tenant) == pages
        before = _portal(tmp_path, "occupancies")
        page, removed, moved = _contract_before_a_page_end(_parties(erp), before)
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant), "--json")
        assert proc.returncode == 0, proc.stderr
        assert before - _portal(tmp_path, "occupancies") == {_occupancy(moved)}
        assert json.loads(proc.stdout)["source_recovered"] is None
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    assert before - _portal(tmp_path, "occupancies") == {_occupancy(removed)}, "the next run brings it back"


def test_a_plan_during_which_a_contract_is_removed_plans_no_archive_and_says_why(erp, tmp_path):
    """`plan` reads the pages as a run does: the moved contract is planned as it is, and the text
    says so as a plan (nothing is synced by a plan)."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        _first_run(cc, tmp_path, tenant)
        page, removed, _ = _contract_before_a_page_end(_parties(erp), _portal(tmp_path, "occupancies"))
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "plan", str(tenant))
    assert proc.returncode == 0, proc.stderr
    assert ("(occupancies 1): records were removed in the ERP while the pages were read; they are planned as "
            "synced, not archived" in proc.stdout)
    assert "0 writes planned" in proc.stdout


def test_the_second_reading_finds_a_party_whose_contract_the_first_read_for_another(erp, tmp_path):
    """The records are the portal's by their external_id; the mapping's `key` only names the ERP
    record in findings, and may name less of it (here the contract, whose parties are records of
    their own). A party that moved back onto a page read already is found by the second reading
    although the first read its contract's other party: it is not archived."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc, {"occupancies": {"key": "contractNumber"}})
        _first_run(cc, tmp_path, tenant)
        before, users = _portal(tmp_path, "occupancies"), _portal(tmp_path, "users")
        rows = _parties(erp)
        last = next(rows[p * SIZE - 1] for p in range(1, len(rows) // SIZE + 1)
                    if _occupancy(rows[p * SIZE - 1]) in before and rows[p * SIZE][0] != rows[p * SIZE - 1][0])
        other = min(int(u) for u in users if u.isdigit() and int(u) > last[1])
        con = sqlite3.connect(erp)          # the contract gets a second party: the first of the next page
        with con:
            con.execute("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 9)",
                        (last[0], other))
        con.close()
        assert _cli(tmp_path, "run", str(tenant)).returncode == 0
        before, rows = _portal(tmp_path, "occupancies"), _parties(erp)
        page = rows.index(last) // SIZE + 1
        moved = rows[page * SIZE]
        assert moved[:2] == (last[0], other) and _occupancy(moved) in before
        removed = next(row for row in rows[(page - 1) * SIZE:page * SIZE - 1] if row[0] != last[0])
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _occupancy(moved) in _portal(tmp_path, "occupancies"), "the moved party is not archived"
    summary = json.loads(proc.stdout)
    assert summary["entities"]["occupancies"]["delete"] == 0
    assert summary["source_recovered"]["occupancies"] >= 1
