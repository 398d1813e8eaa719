"""Persons of the random bulk: households with realistic names, e-mails and phones, and their hard cases.

`People.household(kind, home, live)` makes the parties of one contract. Person-level hard cases
(shared, multiple, annotated and invalid e-mails, phone garbage, long names) are only given to
`live` households: persons with a current contract on a real unit of an in-scope object, so every
listed instance reaches the engine's e-mail and phone steps. Every plain e-mail address is unique
(compared lower case): only the recorded cases share one.
"""
from __future__ import annotations

from collections import deque
from random import Random

from engine.demo import names as N
from engine.demo.builder import Builder

_ASCII = {name: N.ascii_part(name) for name in N.MALE + N.FEMALE + N.LAST}
_ANNOTATIONS = ("Büro", "privat", "nur Notfall", "Tochter", "geschäftlich")
# (rate per live person) of the e-mail hard cases
RATE_MULTI_SEMICOLON, RATE_MULTI_COMMA, RATE_ANNOTATED, RATE_INVALID = 0.008, 0.005, 0.005, 0.012
RATE_SHARED_UNRELATED, RATE_PHONE_GARBAGE = 0.004, 0.01
RATE_COUPLE_SHARES_EMAIL = 0.22
# subscriber numbers the showcase uses (cases.py); the bulk never hands them out
_SHOWCASE_NUMBERS = frozenset({"4567890", "2345678", "3456789", "23456789"})


class People:
    def __init__(self, b: Builder, rng: Random):
        self.b, self.rng, self.m = b, rng, b.manifest
        self.unrelated_pool: deque[tuple[int, str]] = deque(maxlen=64)   # (adressnr, address) to share
        self.owner_pool: deque[tuple[int, int]] = deque(maxlen=256)      # (adressnr, objektnr) of live owners
        self.pseudo: dict[int, int] = {}                                # mandant -> 'Leerstand' person
        self._numbers = {d: [0, rng.randrange(8 * 10 ** (d - 1))] for d in (6, 7, 8)}  # digits -> [count, offset]

    # -- fields ------------------------------------------------------------------------------------
    def _unique(self, local: str, domain: str) -> str:
        address = f"{local}@{domain}"
        while not self.b.claim_email(address):
            address = f"{local}{self.rng.randrange(2, 999)}@{domain}"
        return address

    def plain_email(self, vorname: str, nachname: str) -> str:
        r = self.rng
        v, n = _ASCII.get(vorname) or N.ascii_part(vorname), _ASCII.get(nachname) or N.ascii_part(nachname)
        pattern = r.randrange(8)
        local = (f"{v}.{n}", f"{v}.{n}", f"{v[0]}.{n}", f"{n}.{v}", f"{v}{n}", f"{v}_{n}",
                 f"{v}.{n}{r.randrange(50, 100)}", f"{n}{r.randrange(1, 99)}")[pattern]
        address = self._unique(local, N.DOMAINS[r.randrange(len(N.DOMAINS))])
        x = r.random()
        if x < 0.04:            # typed with capitals; unique all the same
            return address[0].upper() + address[1:]
        return address

    def _email_field(self, vorname: str, nachname: str, live: bool) -> tuple[str | None, tuple | None]:
        """(field value, pending manifest case) for one individual."""
        r = self.rng
        if r.random() > 0.75:
            return None, None
        address = self.plain_email(vorname, nachname)
        if not live:
            return address, None
        x = r.random()
        if x < RATE_MULTI_SEMICOLON:
            second = self._unique(f"{N.ascii_part(nachname)}.{N.ascii_part(vorname)[0]}", N.DOMAINS[r.randrange(3)])
            return f"{address}; {second}", ("email_multiple_semicolon", address)
        x -= RATE_MULTI_SEMICOLON
        if x < RATE_MULTI_COMMA:
            second = self._unique(N.ascii_part(vorname), N.DOMAINS[r.randrange(len(N.DOMAINS))])
            return f"{address},{second}", ("email_multiple_comma", address)
        x -= RATE_MULTI_COMMA
        if x < RATE_ANNOTATED:
            return f"{address} ({_ANNOTATIONS[r.randrange(len(_ANNOTATIONS))]})", ("email_annotated", address)
        x -= RATE_ANNOTATED
        if x < RATE_INVALID:
            local, _, domain = address.partition("@")
            garbage = (f"{local}@{domain.rsplit('.', 1)[0]}", f"{local}(at){domain}", f"{local}@@{domain}",
                       f"{local}.{domain}", "keine", "k.A.")[r.randrange(6)]
            return garbage, ("email_invalid", None)
        x -= RATE_INVALID
        if x < RATE_SHARED_UNRELATED and self.unrelated_pool:
            other, shared = self.unrelated_pool.popleft()
            if r.random() < 0.25:
                return shared.title(), ("email_shared_unrelated", other)
            return shared, ("email_shared_unrelated", other)
        return address, None

    def _subscriber(self, digits: int) -> str:
        """A subscriber number of `digits` digits that no other person has (a permutation of a counter)."""
        state = self._numbers[digits]
        while True:
            state[0] += 1
            n = str(2 * 10 ** (digits - 1) + (state[0] * 4_731_917 + state[1]) % (8 * 10 ** (digits - 1)))
            if n not in _SHOWCASE_NUMBERS:
                return n

    def _landline(self, area: str) -> str:
        r = self.rng
        n = self._subscriber({3: 8, 4: 7}.get(len(area), 6))
        return N.LANDLINE_FORMATS[r.randrange(len(N.LANDLINE_FORMATS))].format(a=area, a1=area[1:], n=n)

    def _mobile(self) -> str:
        r = self.rng
        prefix = N.MOBILE_PREFIXES[r.randrange(len(N.MOBILE_PREFIXES))]
        n = self._subscriber(8 if prefix.startswith("015") else 7)
        return N.MOBILE_FORMATS[r.randrange(len(N.MOBILE_FORMATS))].format(a=prefix, a1=prefix[1:], n=n,
                                                                           n3=n[:3], n4=n[3:])

    def _salutation(self, male: bool) -> tuple[str | None, str | None]:
        x = self.rng.random()
        if x < 0.02:
            return None, None
        if x < 0.05:
            return ("Herrn Dr." if male else "Frau Dr."), None
        if x < 0.08:
            return ("Herr" if male else "Frau"), ("Dr." if x < 0.075 else "Prof. Dr.")
        if male and x < 0.25:
            return "Herrn", None
        return ("Herr" if male else "Frau"), None

    # -- persons -----------------------------------------------------------------------------------
    def individual(self, home: tuple, live: bool, male: bool | None = None, nachname: str | None = None,
                   email: str | None | bool = True, telefon: str | None | bool = True) -> int:
        """One person; `email`/`telefon` True = generate, None = none, a string = use it."""
        r = self.rng
        male = r.random() < 0.5 if male is None else male
        pool = N.MALE if male else N.FEMALE
        vorname = pool[r.randrange(len(pool))]
        nachname = nachname or N.LAST[r.randrange(len(N.LAST))]
        anrede, titel = self._salutation(male)
        case, poolable, garbage = None, email is True, None
        if email is True:
            email, case = self._email_field(vorname, nachname, live)
        if telefon is True:
            telefon = self._landline(home[3]) if r.random() < 0.55 else None
            if live and r.random() < RATE_PHONE_GARBAGE:
                garbage = telefon = N.PHONE_GARBAGE[r.randrange(len(N.PHONE_GARBAGE))]
        mobil = self._mobile() if r.random() < 0.6 else None
        sprache = N.LANGUAGES[r.randrange(len(N.LANGUAGES))]
        nr = self.b.person(nachname, vorname, anrede, titel, email, telefon, mobil, sprache, *home[:3])
        if garbage is not None:
            self.m.add("phone_garbage", adressnr=[nr], field="telefon", raw=garbage, expected=None)
        if case:
            code, extra = case
            if code == "email_shared_unrelated":
                self.m.add(code, adressnr=[extra, nr])
                if email != email.lower():
                    self.m.add("email_case_variant", adressnr=[extra, nr], raw=[email.lower(), email])
            elif code == "email_invalid":
                self.m.add(code, adressnr=[nr], raw=email)
            else:
                self.m.add(code, adressnr=[nr], raw=email, expected=extra)
        elif poolable and live and email:
            self.unrelated_pool.append((nr, email))
        return nr

    def company(self, home: tuple, live: bool, long_name: bool = False) -> int:
        r = self.rng
        owner = N.LAST[r.randrange(len(N.LAST))]
        stem = N.COMPANY_STEMS[r.randrange(len(N.COMPANY_STEMS))]
        form = N.COMPANY_FORMS[r.randrange(len(N.COMPANY_FORMS))]
        name = f"{stem} {owner} {form}"
        if long_name:
            partner = N.LAST[r.randrange(len(N.LAST))]
            name = f"{stem} {owner} & {partner} Grundstücks- und Vermögensverwaltungsgesellschaft {form}"
            if len(name) <= 70:
                name = name.replace("Grundstücks-", "Grundstücks-, Beteiligungs-")
        slug = N.ascii_part(f"{stem}-{owner}").replace("-", "")
        email = self._unique(("info", "kontakt", "verwaltung", "buero")[r.randrange(4)], f"{slug}.de") \
            if r.random() < 0.85 else None
        nr = self.b.person(name, None, "Firma", None, email, self._landline(home[3]), None, "de", *home[:3])
        self.m.add("company_person", adressnr=[nr])
        if len(name) > 70:
            self.m.add("name_over_70", adressnr=[nr], field="nachname", length=len(name))
        return nr

    def couple_as_one(self, home: tuple) -> int:
        r = self.rng
        nachname = N.LAST[r.randrange(len(N.LAST))]
        vorname = f"{N.MALE[r.randrange(len(N.MALE))]} und {N.FEMALE[r.randrange(len(N.FEMALE))]}" \
            if r.random() < 0.6 else None
        anrede = ("Eheleute", "Eheleute", "Fam.", "Familie")[r.randrange(4)]
        email = self.plain_email("Familie", nachname) if r.random() < 0.6 else None
        nr = self.b.person(nachname, vorname, anrede, None, email, self._landline(home[3]), None, "de", *home[:3])
        self.m.add("couple_as_one_address", adressnr=[nr])
        return nr

    def couple(self, home: tuple, live: bool) -> tuple[list[int], bool]:
        """Two persons of one household; (parties, whether they share one e-mail)."""
        r = self.rng
        nachname = N.LAST[r.randrange(len(N.LAST))]
        second_name = nachname if r.random() < 0.75 else None
        landline = self._landline(home[3]) if r.random() < 0.6 else None
        if not (live and r.random() < RATE_COUPLE_SHARES_EMAIL):
            same_phone = live and landline is not None and r.random() < 0.7
            a = self.individual(home, live, True, nachname, telefon=landline)
            b = self.individual(home, live, False, second_name, telefon=landline if same_phone else True)
            if same_phone:
                self.m.add("phone_shared", adressnr=[a, b], field="telefon")
            return [a, b], False
        address = self.plain_email(N.MALE[r.randrange(len(N.MALE))], nachname).lower()
        x = r.random()
        variant, code = address, None
        if x < 0.10:
            variant, code = address.title(), "email_case_variant"
        elif x < 0.15:
            variant, code = f" {address} ", "email_whitespace_variant"
        a = self.individual(home, live, True, nachname, email=address, telefon=landline)
        b = self.individual(home, live, False, second_name, email=variant, telefon=landline)
        if code:
            self.m.add(code, adressnr=[a, b], raw=[address, variant])
        if landline:
            self.m.add("phone_shared", adressnr=[a, b], field="telefon")
        return [a, b], True

    def household(self, kind: str, home: tuple, live: bool) -> tuple[list[int], bool]:
        """The parties of one contract: kind single, couple, couple_one, shared_flat (three), company."""
        if kind == "couple":
            return self.couple(home, live)
        if kind == "couple_one":
            return [self.couple_as_one(home)], False
        if kind == "company":
            return [self.company(home, live, long_name=live and self.rng.random() < 0.03)], False
        if kind == "shared_flat":
            return [self.individual(home, live) for _ in range(3)], False
        return [self.individual(home, live)], False

    def leerstand(self, mandant: int) -> int:
        """The vacancy pseudo person of a Mandant (one address record, as DOMUS installations keep it)."""
        if mandant not in self.pseudo:
            self.pseudo[mandant] = nr = self.b.person("Leerstand", None, None, None, None, None, None, None)
            self.m.add("pseudo_person", adressnr=[nr])
        return self.pseudo[mandant]
