"""Progress on a terminal: what a person watching `idwell-sync run` sees while a long phase runs.

The live line is rewritten in place ("\\r", clear line); each phase ends with one line of its
count and time. The tests read the stream a terminal would show, for the run with a second
process and without it (IDWELL_SYNC_PARALLEL=0).
"""
from __future__ import annotations

import io
import re

from engine.pipeline import prepare
from engine.progress import Progress
from engine.targets.local import LocalStore

from conftest import RUN_DATE


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def screens(self) -> list[str]:
        """Every state of the line, in order (each write after a carriage return)."""
        return [s.replace("\x1b[2K", "") for s in re.split(r"[\r\n]", self.getvalue()) if s.strip("\x1b[2K")]


def plan_on_terminal(ws, monkeypatch, parallel: bool) -> tuple[Terminal, object]:
    monkeypatch.setenv("IDWELL_SYNC_PARALLEL", "1" if parallel else "0")
    terminal = Terminal()
    tenant = ws.tenant()
    target, state = LocalStore(ws.portal_path), ws.state()
    progress = Progress(stream=terminal)
    monkeypatch.setattr(progress, "_show", lambda force=False: Progress._show(progress, True))   # every redraw
    try:
        prepared = prepare(tenant, target, state, run_date=RUN_DATE, progress=progress)
    finally:
        target.close()
        state.close()
    return terminal, prepared


def test_the_contracts_records_are_counted_while_they_are_made(ws, monkeypatch):
    """With a second process, the contracts' records are made once every row is read (the
    users' gate is sent in between): the live line goes on counting through that second pass,
    up to the rows read, instead of standing still at the count of rows. (In one process the
    gate is known before the persons are read, and the contracts are mapped as they are read.)"""
    terminal, prepared = plan_on_terminal(ws, monkeypatch, parallel=True)
    rows = prepared.data["occupancies"].extracted
    screens = terminal.screens()
    made = [int(m.group(1).replace(",", "")) for s in screens
            if (m := re.fullmatch(rf"extract occupancies: {rows:,}, mapped ([\d,]+)/{rows:,}", s))]
    assert made, f"no live line counts the contracts' records: {screens}"
    assert made[0] == 0 and made == sorted(made) and made[-1] == rows
    finished = [s for s in screens if s.startswith("extract occupancies: ") and " in " in s]
    assert finished == [f"extract occupancies: {rows:,} in {finished[0].split(' in ')[1]}"]
    assert "mapped" not in finished[0]        # the phase's own line reports the rows read, as before


def test_every_phase_ends_with_its_count(ws, monkeypatch):
    """Each phase a terminal shows ends with a line of what it did: the extracts (here or in the
    second process), the users' records coming in, resolving and the portal's reads."""
    terminal, prepared = plan_on_terminal(ws, monkeypatch, parallel=True)
    ended = [s for s in terminal.screens() if re.search(r" in \d+\.\ds", s)]
    users = prepared.data["users"].extracted
    assert any(s.startswith(f"extract users (second process): {users:,} in ") for s in ended), ended
    assert any(s.startswith("resolve, dedup: ") for s in ended), ended
    assert [s.split(":")[0] for s in ended if s.startswith("read portal")] == \
        [f"read portal {e}" for e in ("buildings", "units", "users", "occupancies")]
