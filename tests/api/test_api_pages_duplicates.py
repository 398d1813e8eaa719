"""The same external_id on two pages of one reading of an endpoint paged by position: one ERP
record that moved on while the pages were read (a record added before it pushed it onto the next
page), or two ERP records with one key, which the run must report (`duplicate_key`). A record
that also changed meanwhile comes with other values on the later page, as a second record with
the same key would: reported as a duplicate, it told the property manager to make a key unique
that was unique. A real duplicate whose second record moved back onto a page read already (a
record removed before it) came only once in the first reading, and not at all from the second:
not reported that night. The second reading tells the two apart: a record that moved comes once
there, two records with one key come twice.

Against the Cloud Connect stand-in (a real HTTP server on 127.0.0.1), run as the scheduler runs
it (`idwell-sync run`, a process of its own), into the local portal store."""
from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from cloud_connect import CloudConnect
from test_api_pages_moved import (PARTIES, SIZE, _first_run, _moving_tenant, _occupancy, _parties, _portal,
                                  _remove_while_paging)
from test_api_retries_reported import _cli
from test_api_source import KEY

pytestmark = pytest.mark.parametrize("erp", ["copy"], indirect=True)     # each test changes its ERP (conftest.py)


def _last_of_a_page(rows: list[tuple], portal: set[str]) -> tuple[int, tuple, tuple]:
    """(page, its last record, a record before it on the page): both their contract's only party
    and in the portal; the next page begins with another contract."""
    parties = Counter(row[0] for row in rows)
    for page in range(1, len(rows) // SIZE):
        last = rows[page * SIZE - 1]
        if parties[last[0]] == 1 and _occupancy(last) in portal:
            earlier = next(row for row in rows[(page - 1) * SIZE:page * SIZE - 1]
                           if parties[row[0]] == 1 and _occupancy(row) in portal)
            return page, last, earlier
    raise AssertionError("the demo ERP has no such record")


def _erp(erp: Path, *statements: tuple[str, tuple]) -> None:
    con = sqlite3.connect(erp)
    with con:
        for sql, args in statements:
            con.execute(sql, args)
    con.close()


def _end_date(folder: Path, external_id: str) -> str | None:
    from engine.targets.local import LocalStore
    store = LocalStore(folder / "moving-portal.sqlite")
    try:
        return next(r for r in store.read("occupancies") if r["external_id"] == external_id).get("end_date")
    finally:
        store.close()


def test_a_record_changed_while_it_moves_onto_the_next_page_is_one_record_not_a_duplicate(erp, tmp_path):
    """A party is added to a contract on a page, and the page's last contract gets an end date,
    both before the next page is read: that contract's party comes again on the next page, with
    its new end date. It is one record, not a duplicate key: no finding; it keeps the values of the page
    it came on first, and the next run brings the end date."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        _first_run(cc, tmp_path, tenant)
        page, moved, earlier = _last_of_a_page(_parties(erp), _portal(tmp_path, "occupancies"))
        old_end = _end_date(tmp_path, _occupancy(moved))
        changed: list[str] = []

        def before(path: str, query: dict) -> None:
            if path == PARTIES and query["page"] == str(page + 1) and not changed:
                _erp(erp, ("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 9)",
                           (earlier[0], moved[1])),
                     ("UPDATE vertrag SET ende = '2030-06-30' WHERE vertragnr = ?", (moved[0],)))
                changed.append(path)
        cc.before = before
        proc = _cli(tmp_path, "run", str(tenant), "--json")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert "duplicate_key" not in summary["findings"], "the moved contract's key is unique in the ERP"
        assert summary["entities"]["occupancies"]["create"] == 1, "the added party"
        assert summary["entities"]["occupancies"]["delete"] == 0
        assert _end_date(tmp_path, _occupancy(moved)) == old_end, "as the page it came on first had it"
        assert (f"occupancies: 1 record from {PARTIES} came again on a later page (key {moved[0]}/{moved[1]})"
                in proc.stderr)
        assert "1 with other values" in proc.stderr

        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    assert _end_date(tmp_path, _occupancy(moved)) == "2030-06-30", "the next run brings the change"
    assert "duplicate_key" not in json.loads(proc.stdout)["findings"]


def test_a_real_duplicate_key_across_a_page_end_is_reported_also_when_a_record_before_it_is_removed(erp, tmp_path):
    """The ERP lists a contract's party twice, the last record of a page and the first of the next:
    two records with one key, reported every night (the two come alike, as a record that moved
    on would, but the second reading has them twice too). On a night when a contract before them
    is removed before the next page is read, the second moves back onto the page read already and
    the first reading has the key once: the second reading has it twice on one page, and the run
    reports it."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        _first_run(cc, tmp_path, tenant)
        page, doubled, removed = _last_of_a_page(_parties(erp), _portal(tmp_path, "occupancies"))
        _erp(erp, ("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 9)", doubled[:2]))
        assert _parties(erp)[page * SIZE - 1:page * SIZE + 1] == [doubled, doubled]
        proc = _cli(tmp_path, "run", str(tenant), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["findings"].get("duplicate_key") == 1
        assert "came again" not in proc.stderr
        before = _portal(tmp_path, "occupancies")

        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["findings"].get("duplicate_key") == 1, "reported that night too"
    assert summary["entities"]["occupancies"]["delete"] == 0
    assert _portal(tmp_path, "occupancies") == before


def test_a_duplicate_key_whose_first_record_a_removal_moves_back_is_reported_that_night(erp, tmp_path):
    """The ERP lists a contract's party twice, the first two records of a page. A contract before
    them is removed before that page is read: the first of the two moves back onto the page read
    already, the first reading has the key once, and the second reading has it on two pages, as
    a record that moved on while the second reading read it would. The duplicate was reported the
    next night; the third reading of those two pages has it twice, and the run reports it."""
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _moving_tenant(tmp_path, cc)
        _first_run(cc, tmp_path, tenant)
        rows, portal = _parties(erp), _portal(tmp_path, "occupancies")
        parties = Counter(row[0] for row in rows)
        page, doubled = next((p, rows[p * SIZE]) for p in range(1, len(rows) // SIZE)
                             if _occupancy(rows[p * SIZE]) in portal and rows[p * SIZE - 1][0] != rows[p * SIZE][0])
        removed = next(row for row in rows[(page - 1) * SIZE:page * SIZE] if parties[row[0]] == 1)
        _erp(erp, ("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, 9)", doubled[:2]))
        assert _parties(erp)[page * SIZE:page * SIZE + 2] == [doubled, doubled]
        _remove_while_paging(cc, erp, page, removed[0])
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["findings"].get("duplicate_key") == 1, "reported that night"
    assert "came again" not in proc.stderr
