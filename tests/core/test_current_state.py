"""The portal's current state is read while the source is extracted (engine.current): a large local
store by another process that packs its rows, any other target in a thread. Whichever way it is
read, the run sees the same records and plans the same changes, and a reader that fails falls
back to reading in the foreground."""
from __future__ import annotations

import select
import time

import pytest

from engine import contract, normalize
from engine.current import CurrentState, Packed, as_rows, pack_rows
from engine.errors import TargetError
from engine.plan import plan_to_json
from engine.targets import local
from engine.targets.local import LocalStore

ENTITIES = ("buildings", "units", "users", "occupancies")


@pytest.fixture
def background_always(monkeypatch):
    """Every local store counts as large: read by the background process."""
    monkeypatch.setattr(local, "READ_IN_BACKGROUND_FROM", 0)


def foreground(path) -> dict:
    store = LocalStore(path)
    try:
        return {e: as_rows(e, store.read(e)) for e in ENTITIES}
    finally:
        store.close()


def test_a_large_store_is_read_by_another_process_with_the_same_records(ws, background_always):
    ws.run()
    expected = foreground(ws.portal_path)
    assert all(expected.values())
    store = LocalStore(ws.portal_path)
    current = CurrentState(store)
    try:
        assert current._process is not None            # really read elsewhere, not in this process
        got = {e: current.read(e) for e in ENTITIES}
        for entity, packed in got.items():
            assert isinstance(packed, Packed)
            rows = expected[entity]
            assert list(packed.index) == list(rows)    # insertion order, as the store lists them
            assert list(packed.index.values()) == pack_rows(rows.values())
            assert packed.rows() == rows               # and in full where asked for
            some = list(rows)[1::3]
            assert list(packed.rows(set(some))) == some   # only those, still in the store's order
    finally:
        current.close()
        store.close()
    at = contract.fields("users").index("email")
    assert got["users"].emails == [row[at] for row in expected["users"].values()]


def test_a_reader_process_told_to_wait_reads_when_started(ws, background_always):
    """With engine.parallel's second process the run lets the reader read once the users are in."""
    ws.run()
    expected = foreground(ws.portal_path)
    store = LocalStore(ws.portal_path)
    current = CurrentState(store, process_later=True)
    try:
        assert current._process is not None and current._process.poll() is None
        time.sleep(1)
        assert not select.select([current._process.stdout], [], [], 0)[0]   # nothing read before start()
        current.start()
        assert {e: current.read(e).rows() for e in ENTITIES} == expected
    finally:
        current.close()
        store.close()


def test_a_small_store_is_read_in_the_foreground(ws):
    ws.run()
    store = LocalStore(ws.portal_path)
    assert store.row_reader() is None
    store.close()


def test_rerun_drift_and_deletes_are_the_same_with_the_background_reader(ws, background_always):
    first = ws.run()
    assert first.summary["writes"] > 0
    assert ws.run().summary["writes"] == 0
    user_id = next(u for u in sorted(ws.portal()["users"]) if "+" not in u)
    ws.edit_portal(("users", user_id, {"last_name": "Geändert im Portal"}))
    third = ws.run()
    assert third.summary["drift"] == {"users": {"last_name": 1}}
    assert ws.run().summary["writes"] == 0


@pytest.mark.parametrize("packed", ["as the records become final", "only when compared"])
def test_changes_deletes_and_drift_are_planned_alike_from_packed_rows_and_from_rows(ws, monkeypatch, packed):
    """The background reader's packed rows and the foreground's rows give the same plan, change
    for change, after the ERP and the portal both changed: an update, a delete, a create, a
    moved e-mail, a portal edit; whether the run packed its records as they became final (on
    both processes, engine.parallel) or packs them all when it compares."""
    ws.run()
    users = ws.portal()["users"]
    plain = sorted(u for u in users if "+" not in u and users[u]["email"])
    ws.erp_execute(("UPDATE adresse SET nachname = 'Umbenannt' WHERE adressnr = ?", (int(plain[0]),)),
                   ("UPDATE adresse SET email = ? WHERE adressnr = ?", (users[plain[1]]["email"], int(plain[2]))),
                   ("UPDATE adresse SET email = NULL WHERE adressnr = ?", (int(plain[1]),)),
                   ("DELETE FROM vertragpartner WHERE adressnr = ?", (int(plain[3]),)))
    ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung Neu"), "M", "2024-01-01", None,
                    [ws.add_person("Neu", "Nina", "nina.neu@example.org")])
    ws.edit_portal(("users", plain[4], {"first_name": "Im Portal geändert"}))
    tenant = ws.tenant(deletion={"max_count": 1000, "max_share": 1.0})
    here = ws.plan(tenant)
    from_rows = plan_to_json(here.plan)
    monkeypatch.setattr(local, "READ_IN_BACKGROUND_FROM", 0)
    if packed == "only when compared":
        monkeypatch.setattr(normalize, "_packed", lambda *a: None)
    prepared = ws.plan(tenant)
    assert plan_to_json(prepared.plan) == from_rows
    known = {e: len(d.packed_rows) for e, d in prepared.data.items()}
    if packed == "only when compared":
        assert not any(known.values())
    else:
        assert all(known[e] >= len(prepared.data[e].records) - 5 for e in known), known
    assert [(f.code, f.entity, f.key, f.message) for f in prepared.findings] == \
        [(f.code, f.entity, f.key, f.message) for f in here.findings]          # findings in the same order
    assert any(f.code == "drift" for f in prepared.findings)
    counts = from_rows["counts"]
    assert counts["users"]["create"] == 1 and counts["users"]["update"] >= 3 and counts["users"]["delete"] >= 1
    assert from_rows["drift"] == {"users": {"first_name": 1}}
    released = [c for c in from_rows["changes"] if c["entity"] == "users" and c["external_id"] == plain[1]]
    assert released[0]["changed"]["email"]["to"] is None       # the address is cleared before it moves


def test_a_value_that_cannot_be_packed_is_compared_as_a_row():
    """A date left in a record (an expression without to_date) cannot be packed: the diff then
    reads the portal's rows in full and compares them as they are, with the same result."""
    import datetime as dt
    from engine.entity_data import Rec
    from engine.plan import compare_packed, diff_entity
    names = contract.fields("occupancies")
    portal = {"o1": ("o1", "u1", "n1", "tenant", "2024-01-01", None),
              "o2": ("o2", "u2", "n2", "owner", "2023-05-01", None)}
    packed = Packed("occupancies", list(portal), pack_rows(portal.values()), None,
                    lambda entity, only: [r for i, r in portal.items() if only is None or i in only])
    desired = {"o1": Rec("1/1", dict(zip(names, portal["o1"]))),
               "o2": Rec("2/2", dict(zip(names, ("o2", "u2", "n2", "owner", dt.date(2023, 5, 2), None))))}
    assert compare_packed("occupancies", desired, packed) is None
    upserts, deletes, unchanged, _ = diff_entity("occupancies", desired, packed, lambda ids: {}, [])
    assert unchanged == 1 and not deletes
    assert [(c.action, c.external_id, c.changed) for c in upserts] == [("update", "o2", ("start_date",))]


@pytest.mark.parametrize("how", ["by id, several queries", "all rows read, the wanted kept"])
def test_records_read_by_external_id_come_in_the_stores_order(ws, monkeypatch, how):
    from engine.targets import _store_portal
    ws.run()
    expected = foreground(ws.portal_path)["users"]
    monkeypatch.setattr(_store_portal, "_IDS_PER_QUERY", 7)
    if how.startswith("all"):
        monkeypatch.setattr(_store_portal, "_READ_ALL_FROM", 10)
    wanted = list(expected)[::-1][::3]                # asked for in another order
    store = LocalStore(ws.portal_path)
    try:
        got = store.read_rows("users", wanted)
    finally:
        store.close()
    assert got == [row for i, row in expected.items() if i in set(wanted)]


class BrokenReader(LocalStore):
    """The background reader names a store that does not exist: it fails at once."""

    def row_reader(self):
        return ["engine.targets._dump_rows", str(self.path.parent / "no-such-store.sqlite")]


def test_a_failing_background_reader_falls_back_to_the_foreground(ws):
    ws.run()
    expected = foreground(ws.portal_path)
    store = BrokenReader(ws.portal_path)
    current = CurrentState(store)
    try:
        assert {e: current.read(e) for e in ENTITIES} == expected
    finally:
        current.close()
        store.close()


class Unreachable:
    """A target whose listing fails, read in a thread (it has no row_reader)."""
    name = "unreachable"

    def read(self, entity):
        raise TargetError(f"listing {entity} failed: connection refused", hint="check the portal's URL")
        yield


def test_an_error_of_a_target_read_in_a_thread_reaches_the_run():
    current = CurrentState(Unreachable())
    try:
        with pytest.raises(TargetError, match="listing buildings failed"):
            current.read("buildings")
    finally:
        current.close()
