"""The portal's current state is read while the source is extracted (engine.current): a large local
store by another process, any other target in a thread. Whichever way it is read, the run sees the
same records, and a reader that fails falls back to reading in the foreground."""
from __future__ import annotations

import pytest

from engine.current import CurrentState, as_rows
from engine.errors import TargetError
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
        got = {e: current.rows(e) for e in ENTITIES}
    finally:
        current.close()
        store.close()
    assert got == expected
    assert list(got["users"]) == list(expected["users"])   # insertion order, as the store lists them


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
        assert {e: current.rows(e) for e in ENTITIES} == expected
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
            current.rows("buildings")
    finally:
        current.close()
