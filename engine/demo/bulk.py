"""The random bulk of the demo ERP: objects with their units and contracts, then persons without any.

One object at a time (so size L streams): WEG objects (owners' associations: an owner contract per
unit, some units let to a tenant as well) and MIET objects (rental: tenant contracts, vacancies,
history). Parking spaces go with a flat's owners or tenants. Shares of the hard cases are realistic;
every instance is recorded in the manifest (see docs/demo-erp.md).
"""
from __future__ import annotations

import datetime as dt
from random import Random

from engine.demo import names as N
from engine.demo.builder import FIRST_UNIT, Builder
from engine.demo.manifest import REFERENCE_DATE
from engine.demo.people import People

REF = REFERENCE_DATE
_D = dt.timedelta
OWNER_FROM, TENANT_FROM, LAST_START = dt.date(1985, 1, 1), dt.date(1998, 1, 1), dt.date(2026, 3, 31)
_OWNER_KINDS = ((0.43, "single"), (0.86, "couple"), (0.92, "couple_one"), (0.96, "company"), (1.0, "shared_flat"))
_TENANT_KINDS = ((0.55, "single"), (0.91, "couple"), (0.95, "couple_one"), (0.98, "shared_flat"), (1.0, "company"))
_PHANTOMS = (
    ("phantom_by_type", 90, False, "Umlageeinheit Wasser"), ("phantom_by_type", 91, False, "Zählerplatz"),
    ("phantom_by_type", 99, False, "Heizzentrale"), ("phantom_by_flag", 5, True, "Fiktive Einheit Hausgeld"),
    ("phantom_by_flag", 1, True, "Sammelposition Nebenkosten"), ("phantom_by_name", 5, False, "Allgemeinfläche"),
    ("phantom_by_name", 5, False, "Abrechnungseinheit Heizung"), ("phantom_by_name", 5, False, "Dummy 999"),
)


class Dice(Random):
    """A seeded Random whose integer draws are a multiplication, not rejection sampling: the
    generator draws millions of them, and `Random.randrange` would be a third of its time."""

    def randrange(self, start: int, stop: int | None = None) -> int:
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))

    def randint(self, a: int, b: int) -> int:
        return a + int(self.random() * (b - a + 1))


def _kind(r: Random, table) -> str:
    x = r.random()
    for bound, kind in table:
        if x < bound:
            return kind
    return table[-1][1]


class Bulk:
    def __init__(self, b: Builder, rng: Random):
        self.b, self.r, self.m = b, rng, b.manifest
        self.people = People(b, rng)
        self._orphans = 0
        self._o, self._mandant = 0, 1       # the object being generated

    def run(self, unit_target: int, person_target: int) -> None:
        while self.b.units_made < unit_target:
            self.objekt()
        while self.b.persons_made < person_target:
            self.unattached()

    # -- helpers -----------------------------------------------------------------------------------
    def day(self, start: dt.date, end: dt.date) -> dt.date:
        return start + _D(self.r.randrange(max((end - start).days, 0) + 1))

    def random_home(self) -> tuple:
        r = self.r
        city, lo, hi, area = N.CITIES[r.randrange(len(N.CITIES))]
        street = N.STREETS[r.randrange(len(N.STREETS))]
        return f"{street} {r.randint(1, 120)}", f"{r.randint(lo, hi):05d}", city, area

    def area(self, lo: int, hi: int) -> str:
        v = self.r.randrange(lo * 100, hi * 100)
        return f"{v // 100}.{v % 100:02d}"

    # -- objects and units -------------------------------------------------------------------------
    def objekt(self) -> None:
        r, b = self.r, self.b
        test = r.random() < 0.005
        mandant = 3 if r.random() < 0.05 else (2 if r.random() < 0.27 else 1)
        city, lo, hi, area = N.CITIES[r.randrange(len(N.CITIES))]
        plz = f"{r.randint(lo, hi):05d}"
        street = N.STREETS[r.randrange(len(N.STREETS))]
        hausnr = f"{r.randint(1, 120)}{N.HOUSE_SUFFIX[r.randrange(len(N.HOUSE_SUFFIX))]}"
        weg = r.random() < 0.6
        name = f"WEG {street} {hausnr}" if weg else f"MFH {street} {hausnr}, {city}"
        if test:
            name = f"Testobjekt Schulung {street}"
        x = r.random()
        land = "DE" if x < 0.95 else (None if x < 0.98 else " de")
        o = b.objekt(mandant, name, street, hausnr, plz, city, land, "WEG" if weg else "MIET", test=test)
        self._o, self._mandant = o, mandant
        live = mandant != 3 and not test
        home = (f"{street} {hausnr}", plz, city, area)
        first_unit = b.units_made
        self.units(o, weg, home, live)
        if test or mandant == 3:
            units = list(range(first_unit + FIRST_UNIT, b.units_made + FIRST_UNIT))
            self.m.add("test_object" if test else "out_of_scope_object", objektnr=[o], einheitid=units)
        if live and r.random() < 0.002:
            self.orphan(home)

    def units(self, o: int, weg: bool, home: tuple, live: bool) -> None:
        r, b = self.r, self.b
        x = r.random()
        flats = r.randint(3, 8) if x < 0.3 else r.randint(8, 24) if x < 0.75 else r.randint(24, 60) if x < 0.95 \
            else r.randint(60, 120)
        width = 4 if r.random() < 0.1 else 3
        per_floor = r.randint(2, 4)
        owners: list[tuple] = []     # (vertragnr, parties, shared e-mail, beginn) of the flats' contracts
        tenants: list[tuple] = []
        n = 0
        for i in range(flats):
            n += 1
            floor = N.FLOORS[min(i // per_floor, len(N.FLOORS) - 1)]
            side = N.SIDES[i % per_floor % len(N.SIDES)]
            label = (f"Wohnung {n}", f"{floor} {side}".strip(), f"Whg. {n}", f"ETW Nr. {n}")[r.randrange(4)]
            u = b.einheit(o, f"{n:0{width}d}", label, 1, False, floor, self.area(28, 140))
            self.flat(u, o, weg, home, live, owners, tenants, commercial=False)
        for _ in range(r.randint(1, 3) if r.random() < 0.25 else 0):
            n += 1
            label = ("Laden EG", "Büro", "Praxis", "Gewerbeeinheit")[r.randrange(4)]
            u = b.einheit(o, f"{n:0{width}d}", label, 2, False, "EG", self.area(40, 300))
            self.flat(u, o, weg, home, live, owners, tenants, commercial=True)
        if r.random() < 0.45:
            kind = ("TG-Stellplatz", "Stellplatz", "Garage")[r.randrange(3)]
            for k in range(max(1, int(flats * r.uniform(0.3, 1.0)))):
                n += 1
                u = b.einheit(o, f"{n:0{width}d}", f"{kind} {k + 1}", 3, False, "UG" if kind[0] == "T" else None,
                              "12.50" if r.random() < 0.5 else None)
                self.extra(u, weg, home, live, owners, tenants, 0.0)
        if r.random() < 0.1:
            for k in range(r.randint(2, 6)):
                n += 1
                u = b.einheit(o, f"{n:0{width}d}", f"Kellerraum {k + 1}", 4, False, "KG", self.area(5, 15))
                self.extra(u, weg, home, live, owners, tenants, 0.5)
        if r.random() < 0.05:
            n += 1
            b.einheit(o, f"{n:0{width}d}", ("Hausmeisterraum", "Fahrradraum")[r.randrange(2)], 5, False, "EG", None)
        if r.random() < 0.25:
            code, typcode, fiktiv, label = _PHANTOMS[r.randrange(len(_PHANTOMS))]
            n += 1
            u = b.einheit(o, f"{n:0{width}d}", label, typcode, fiktiv, None, None)
            self.m.add(code, einheitid=[u], objektnr=[o])

    def orphan(self, home: tuple) -> None:
        """A unit whose object was deleted from the ERP, still let."""
        self._orphans += 1
        missing = 990_000 + self._orphans
        u = self.b.einheit(missing, "001", "Wohnung 1", 1, False, "EG", self.area(30, 90))
        parties, _ = self.people.household("single", home, False)
        v = self.b.contract(u, "M", self.day(TENANT_FROM, LAST_START), None, parties)
        self.m.add("orphan_unit", einheitid=[u], objektnr=[missing], vertragnr=[v], adressnr=parties)

    # -- contracts ---------------------------------------------------------------------------------
    def household(self, kinds, home: tuple, live: bool, commercial: bool) -> tuple[list[int], bool]:
        kind = "company" if commercial and self.r.random() < 0.85 else _kind(self.r, kinds)
        return self.people.household(kind, home, live)

    def owner(self, u: int, o: int, home: tuple, live: bool, commercial: bool) -> tuple:
        r, b, pool = self.r, self.b, self.people.owner_pool
        beginn = self.day(OWNER_FROM, dt.date(2025, 12, 31))
        if live and pool and r.random() < 0.04:
            p, earlier = pool[r.randrange(len(pool))]
            parties, shared = [p], False
            if earlier != o:
                self.m.add("owner_multiple_objects", adressnr=[p], objektnr=[earlier, o])
        else:
            parties, shared = self.household(_OWNER_KINDS, home, live, commercial)
            if live and len(parties) == 1 and r.random() < 0.3:
                pool.append((parties[0], o))
        if r.random() < 0.2 and beginn > dt.date(1990, 1, 1):      # bought from a previous owner
            before, _ = self.household(_OWNER_KINDS, self.random_home(), False, commercial)
            b.contract(u, "E", self.day(dt.date(1975, 1, 1), beginn - _D(400)), beginn - _D(1), before)
        v = self.sign(u, "E", beginn, None, parties, shared)
        return v, parties, shared, beginn

    def tenant(self, u: int, home: tuple, live: bool, commercial: bool, since: dt.date) -> tuple | None:
        """The current tenant contract with history and, sometimes, a successor already signed."""
        r, b = self.r, self.b
        beginn = self.day(max(since, TENANT_FROM), LAST_START)
        earlier = beginn
        x = r.random()
        for _ in range(0 if x < 0.3 else 1 if x < 0.6 else 2 if x < 0.85 else 3):
            ende = earlier - _D(1 + r.randrange(60))
            start = ende - _D(180 + r.randrange(10 * 365))
            if start < since:
                break
            before, _ = self.household(_TENANT_KINDS, home, False, commercial)
            b.contract(u, "M", start, ende, before)
            earlier = start
        change = live and r.random() < 0.02
        ende = REF + _D(r.randint(1, 45)) if change else None
        parties, shared = self.household(_TENANT_KINDS, home, live, commercial)
        v = self.sign(u, "M", beginn, ende, parties, shared)
        if change:
            w = self.sign(u, "M", ende + _D(1), None, *self.household(_TENANT_KINDS, home, live, commercial))
            self.m.add("tenant_change", einheitid=[u], vertragnr=[v, w])
        return (v, parties, shared, beginn) if ende is None else None

    def sign(self, u: int, art: str, beginn: dt.date, ende: dt.date | None, parties: list[int],
             shared: bool) -> int:
        """A contract; parties sharing one e-mail are recorded as a couple of that contract."""
        v = self.b.contract(u, art, beginn, ende, parties)
        if shared:
            self.m.add("couple_shared_email", adressnr=parties, vertragnr=[v])
        return v

    def vacancy(self, u: int, beginn: dt.date, ende: dt.date | None) -> None:
        p = self.people.leerstand(self._mandant)
        v = self.b.contract(u, "L", beginn, ende, [p])
        self.m.add("vacancy_contract", vertragnr=[v], einheitid=[u], adressnr=[p])

    def flat(self, u, o, weg, home, live, owners, tenants, commercial: bool) -> None:
        r = self.r
        if weg:
            let = r.random() < (0.7 if commercial else 0.35)
            owner_home = self.random_home() if let else home
            e = self.owner(u, o, owner_home, live, commercial)
            if not commercial:
                owners.append(e)
            if let:
                t = self.tenant(u, home, live, commercial, e[3])
                if t:
                    tenants.append(t)
                    self.m.add("owner_and_tenant_same_unit", einheitid=[u], vertragnr=[e[0], t[0]])
            return
        x = r.random()
        if x < 0.04 or (commercial and x < 0.1):
            self.vacancy(u, self.day(dt.date(2024, 1, 1), LAST_START), None)
        elif x < 0.05:
            return                                                     # empty, being renovated
        elif x < 0.06:                                                 # moved out within the grace period
            ende = REF - _D(r.randint(1, 29))
            self.sign(u, "M", self.day(TENANT_FROM, dt.date(2024, 12, 31)), ende,
                      *self.household(_TENANT_KINDS, home, live, commercial))
            self.vacancy(u, ende + _D(1), None)
        elif x < 0.07:                                                 # vacant, next tenant signed
            start = REF + _D(r.randint(75, 200) if x < 0.065 else r.randint(1, 59))
            self.vacancy(u, self.day(dt.date(2025, 1, 1), LAST_START), start - _D(1))
            self.sign(u, "M", start, None,
                      *self.household(_TENANT_KINDS, home, live and start < REF + _D(60), commercial))
        else:
            t = self.tenant(u, home, live, commercial, TENANT_FROM)
            if t and not commercial:
                tenants.append(t)

    def extra(self, u, weg, home, live, owners, tenants, empty: float) -> None:
        """A parking space or storage room: with a flat's owners or tenants, or separately."""
        r, b = self.r, self.b
        if r.random() < empty:
            return
        pool = owners if weg else tenants
        if pool and r.random() < (0.7 if weg else 0.65):
            v, parties, shared, beginn = pool[r.randrange(len(pool))]
            if not weg and len(parties) > 1 and r.random() < 0.5:
                parties = parties[:1]
            start = beginn if weg else min(beginn + _D(r.randrange(400)), LAST_START)
            w = b.contract(u, "E" if weg else "M", start, None, parties)
            if shared and len(parties) > 1:
                self.m.add("couple_shared_email_and_parking", adressnr=parties, vertragnr=[v, w])
        elif weg:
            self.owner(u, self._o, self.random_home(), live, False)

    def unattached(self) -> None:
        """A person with no contract at all: a former prospect, a craftsman, a service provider."""
        home = self.random_home()
        if self.r.random() < 0.25:
            p = self.people.company(home, False)
        else:
            p = self.people.individual(home, False)
        self.m.add("person_without_contract", adressnr=[p])
