"""The row builder: allocates ERP keys, buffers rows per table and hands full batches to a sink.

Both the showcase cases (cases.py) and the random bulk (bulk.py) write through one `Builder`, so keys
are allocated in one sequence and the row counts are exact. Key ranges differ per table, so a key
used in the wrong place (a contract number as a person key) never matches by accident:
objects 1000-8999 then 10000 up (9000-9999 is the test-object range), units from 100001, persons
from 1000001, contracts from 5000001.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable, Sequence

from engine.demo.manifest import FUTURE_DAYS, GRACE_DAYS, REFERENCE_DATE, Manifest
from engine.demo.schema import TABLES

FIRST_OBJECT, FIRST_UNIT, FIRST_PERSON, FIRST_CONTRACT = 1000, 100001, 1000001, 5000001
TEST_OBJECTS = range(9000, 10000)
_DAY = dt.timedelta(days=1)
_GRACE_EDGE = REFERENCE_DATE - GRACE_DAYS * _DAY        # the last end date still inside the window
_FUTURE_EDGE = REFERENCE_DATE + FUTURE_DAYS * _DAY      # the last start date still inside the window


def window_case(beginn: dt.date | None, ende: dt.date | None) -> str | None:
    """The contract-window code of an owner or tenant contract, None if it is active on the reference date."""
    if ende is not None and ende < REFERENCE_DATE:
        if ende > _GRACE_EDGE:
            return "contract_ended_in_grace"
        if ende == _GRACE_EDGE:
            return "contract_ended_grace_edge"
        if ende == _GRACE_EDGE - _DAY:
            return "contract_ended_beyond_grace_edge"
        return "contract_ended_long_ago"
    if beginn is not None and beginn > REFERENCE_DATE:
        if beginn < _FUTURE_EDGE:
            return "contract_future_in_window"
        if beginn == _FUTURE_EDGE:
            return "contract_future_window_edge"
        if beginn == _FUTURE_EDGE + _DAY:
            return "contract_future_beyond_window_edge"
        return "contract_future_beyond_window"
    return None


def iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()


class Builder:
    def __init__(self, sink, manifest: Manifest, batch: int = 50_000,
                 progress: Callable[[str, int, int], None] | None = None, unit_target: int = 0):
        self.sink = sink
        self.manifest = manifest
        self.batch = batch
        self.progress = progress
        self.unit_target = unit_target
        self.buffers: dict[str, list[tuple]] = {t: [] for t in TABLES}
        self.counts = dict.fromkeys(TABLES, 0)
        self._objekt, self._unit = FIRST_OBJECT, FIRST_UNIT
        self._person, self._contract = FIRST_PERSON, FIRST_CONTRACT
        self._test_objekt = TEST_OBJECTS.start
        self.emails: set[str] = set()      # every address in use, lower case, so that only cases share

    @property
    def units_made(self) -> int:
        return self._unit - FIRST_UNIT

    @property
    def persons_made(self) -> int:
        return self._person - FIRST_PERSON

    # -- keys --------------------------------------------------------------------------------------
    def next_objektnr(self, test: bool = False) -> int:
        if test:
            self._test_objekt += 1
            return self._test_objekt - 1
        if self._objekt in TEST_OBJECTS:
            self._objekt = TEST_OBJECTS.stop
        self._objekt += 1
        return self._objekt - 1

    def missing_key(self, kind: str) -> int:
        """A key of `kind` that no row will ever have (for orphans and dangling references)."""
        return {"objektnr": 999_999, "einheitid": 99_999_999, "adressnr": 999_999_999}[kind]

    # -- rows --------------------------------------------------------------------------------------
    def _emit(self, table: str, row: tuple) -> None:
        buf = self.buffers[table]
        buf.append(row)
        if len(buf) >= self.batch:
            self.flush(table)

    def flush(self, table: str) -> None:
        rows = self.buffers[table]
        if rows:
            self.sink.write(table, rows)
            self.counts[table] += len(rows)
            self.buffers[table] = []
            if table == "einheit" and self.progress:
                self.progress("units", self.counts[table], self.unit_target)

    def finish(self) -> None:
        for table in TABLES:
            self.flush(table)
        self.manifest.counts = dict(self.counts)

    def objekt(self, mandant: int, bezeichnung: str, strasse: str, hausnr: str, plz: str, ort: str,
               land: str | None = "DE", art: str = "WEG", *, test: bool = False, nr: int | None = None) -> int:
        nr = nr if nr is not None else self.next_objektnr(test)
        self._emit("objekt", (nr, mandant, bezeichnung, strasse, hausnr, plz, ort, land, art))
        return nr

    def einheit(self, objektnr: int, einheitnr: str, bezeichnung: str, typcode: int = 1, fiktiv: bool = False,
                etage: str | None = None, flaeche: str | None = None) -> int:
        uid = self._unit
        self._unit += 1
        self._emit("einheit", (uid, objektnr, einheitnr, bezeichnung, typcode, fiktiv, etage, flaeche))
        return uid

    def person(self, nachname: str, vorname: str | None = None, anrede: str | None = None,
               titel: str | None = None, email: str | None = None, telefon: str | None = None,
               mobil: str | None = None, sprache: str | None = "de", strasse: str | None = None,
               plz: str | None = None, ort: str | None = None) -> int:
        nr = self._person
        self._person += 1
        self._emit("adresse", (nr, anrede, titel, vorname, nachname, email, telefon, mobil, sprache,
                               strasse, plz, ort))
        return nr

    def contract(self, einheitid: int, art: str, beginn: dt.date | None, ende: dt.date | None,
                 parties: Sequence[int]) -> int:
        nr = self._contract
        self._contract += 1
        self._emit("vertrag", (nr, einheitid, art, iso(beginn), iso(ende)))
        for position, adressnr in enumerate(parties, 1):
            self._emit("vertragpartner", (nr, adressnr, position))
        if art != "L":
            code = window_case(beginn, ende)
            if code:
                self.manifest.add(code, vertragnr=[nr], einheitid=[einheitid], adressnr=list(parties))
        return nr

    def claim_email(self, address: str) -> bool:
        """Reserve an address (compared lower case); False if someone already has it."""
        key = address.strip().lower()
        if key in self.emails:
            return False
        self.emails.add(key)
        return True
