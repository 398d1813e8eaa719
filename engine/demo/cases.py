"""The showcase: every hard case of the domain at least once, written by hand, in every size.

Fixed objects, units, persons and contracts (no randomness), generated before the random bulk, so
the first keys of every size are the same showcase. Each case is recorded in the manifest; the
contract-window codes are recorded by the builder from the dates. See docs/demo-erp.md.
"""
from __future__ import annotations

import datetime as dt

from engine.demo.builder import Builder
from engine.demo.manifest import FUTURE_DAYS, GRACE_DAYS, REFERENCE_DATE
from engine.demo.people import People

REF = REFERENCE_DATE
GRACE_EDGE = REF - dt.timedelta(days=GRACE_DAYS)       # 2026-05-02: the last end date still in the window
FUTURE_EDGE = REF + dt.timedelta(days=FUTURE_DAYS)     # 2026-07-31: the last start date still in the window
_DAY = dt.timedelta(days=1)
D = dt.date

# (raw phone, expected E.164 or None for garbage)
PHONES = {
    "intl_with_trunk_zero": ("0049(0)171 1234567", "+491711234567"),
    "berlin_grouped": ("(030) 123 45-6", "+4930123456"),
    "mobile_annotated": ("0176/1234567 (mobil)", "+491761234567"),
    "munich_mixed": ("+49 (0) 89 / 123 456-78", "+498912345678"),
    "garbage_keine": ("keine", None),
    "garbage_see_husband": ("siehe Ehemann", None),
}


class Showcase:
    def __init__(self, b: Builder, people: People):
        self.b, self.m, self.people = b, b.manifest, people

    def person(self, nachname, vorname=None, anrede=None, email=None, home=None, **fields) -> int:
        for part in (email or "").replace(",", ";").split(";"):
            address = part.split("(")[0].strip()
            if "@" in address:
                self.b.claim_email(address)
        home = home or (None, None, None)
        return self.b.person(nachname, vorname, anrede, email=email, strasse=home[0], plz=home[1], ort=home[2],
                             **fields)

    def run(self) -> None:
        b, m = self.b, self.m
        # -- object A: a WEG in Dresden (postal code with a leading zero) -------------------------
        home_a = ("Große Brüdergasse 7", "01067", "Dresden")
        a = b.objekt(1, "WEG Große Brüdergasse 7", "Große Brüdergasse", "7", "01067", "Dresden", "DE", "WEG")
        a1 = b.einheit(a, "001", "Wohnung 1 EG links", 1, False, "EG", "74.30")
        a2 = b.einheit(a, "002", "Wohnung 2 EG rechts", 1, False, "EG", "61.05")
        a3 = b.einheit(a, "003", "Wohnung 3 1. OG", 1, False, "1. OG", "88.00")
        a4 = b.einheit(a, "004", "Laden EG", 2, False, "EG", "120.00")
        a5 = b.einheit(a, "005", "Wohnung 5 DG", 1, False, "DG", "54.70")
        p1 = b.einheit(a, "010", "TG-Stellplatz 1", 3, False, "UG", "12.50")
        k1 = b.einheit(a, "011", "Kellerraum 1", 4, False, "KG", "6.20")
        for code, typcode, fiktiv, name, nr in (
                ("phantom_by_name", 5, False, "Allgemeinfläche", "090"),
                ("phantom_by_name", 5, False, "Abrechnungseinheit Heizung", "091"),
                ("phantom_by_name", 5, False, "Dummy 999", "999"),
                ("phantom_by_type", 90, False, "Umlageeinheit Wasser", "092"),
                ("phantom_by_type", 91, False, "Zählerplatz", "093"),
                ("phantom_by_type", 99, False, "Heizzentrale", "094"),
                ("phantom_by_flag", 1, True, "Fiktive Einheit Hausgeld", "095")):
            m.add(code, einheitid=[b.einheit(a, nr, name, typcode, fiktiv, None, None)], objektnr=[a])

        # a couple sharing one e-mail, parties of the flat's contract and of a parking space contract
        hans = self.person("Müller", "Hans", "Herr", "hans.mueller@web.de", home_a, telefon="0351 4567890")
        grete = self.person("Müller", "Grete", "Frau", "hans.mueller@web.de", home_a, telefon="0351 4567890")
        v_flat = b.contract(a1, "E", D(2004, 3, 1), None, [hans, grete])
        v_park = b.contract(p1, "E", D(2004, 3, 1), None, [hans, grete])
        m.add("couple_shared_email", adressnr=[hans, grete], vertragnr=[v_flat])
        m.add("couple_shared_email_and_parking", adressnr=[hans, grete], vertragnr=[v_flat, v_park])
        m.add("phone_shared", adressnr=[hans, grete], field="telefon")
        # a couple whose shared e-mail differs only in case
        joerg = self.person("Weiß", "Jörg", "Herrn", "joerg.weiss@gmx.de", home_a)
        baerbel = self.person("Weiß", "Bärbel", "Frau", "Joerg.Weiss@GMX.de", home_a)
        v = b.contract(a2, "E", D(2011, 7, 15), None, [joerg, baerbel])
        m.add("couple_shared_email", adressnr=[joerg, baerbel], vertragnr=[v])
        m.add("email_case_variant", adressnr=[joerg, baerbel], raw=["joerg.weiss@gmx.de", "Joerg.Weiss@GMX.de"])
        # one person owning units in two objects; the flat here is let: owner and tenant in one unit
        juergen = self.person("Größmann", "Jürgen", "Herrn Dr.", "j.groessmann@t-online.de",
                              ("Münchner Straße 3", "80331", "München"), titel=None)
        soeren = self.person("Çelik", "Sören", "Herr", "soeren.celik@gmail.com", home_a, mobil="0151 23456789")
        e3 = b.contract(a3, "E", D(1998, 1, 1), None, [juergen])
        t3 = b.contract(a3, "M", D(2019, 9, 1), None, [soeren])
        m.add("owner_and_tenant_same_unit", einheitid=[a3], vertragnr=[e3, t3])
        # a company as owner, with a name over 70 characters; its tenant has a first name over 70
        gmbh = self.person("Grundstücksgesellschaft Müller-Lüdenscheidt Wohnen und Gewerbe GmbH & Co. KG",
                           None, "Firma", "verwaltung@mueller-luedenscheidt.de", ("Königsallee 1", "40212",
                                                                                   "Düsseldorf"))
        baker = self.person("Bäckerei Süß GmbH", None, "Firma", "info@baeckerei-suess.de", home_a,
                            telefon="0351 2345678")
        b.contract(a4, "E", D(2001, 5, 1), None, [gmbh])
        b.contract(a4, "M", D(2015, 2, 1), None, [baker])
        long_first = self.person("von Hohenzollern-Sigmaringen",
                                 "Maria-Magdalena Friederike Charlotte Wilhelmine Auguste Elisabeth Sophie",
                                 "Frau", "mm.hohenzollern@posteo.de", home_a)
        b.contract(a5, "E", D(2020, 11, 1), None, [long_first])
        b.contract(k1, "E", D(2020, 11, 1), None, [long_first])
        for p in (gmbh, baker):
            m.add("company_person", adressnr=[p])
        m.add("name_over_70", adressnr=[gmbh], field="nachname", length=76)
        m.add("name_over_70", adressnr=[long_first], field="vorname", length=72)
        m.add("umlaut_names", adressnr=[hans, grete, joerg, baerbel, juergen, soeren, baker], objektnr=[a])

        self.object_b(a, juergen)

    def object_b(self, a: int, juergen: int) -> None:
        """Object B (WEG, München, Mandant 2): e-mail field formats, phones, one owner of two objects."""
        b, m = self.b, self.m
        home_b = ("Münchner Straße 3", "80331", "München")
        o_b = b.objekt(2, "WEG Münchner Straße 3", "Münchner Straße", "3", "80331", "München", "DE", "WEG")
        bu = [b.einheit(o_b, f"{i:03d}", f"Wohnung {i}", 1, False, "EG" if i < 3 else f"{(i - 1) // 2}. OG",
                        f"{60 + i}.50") for i in range(1, 7)]
        b.contract(bu[0], "E", D(2008, 4, 1), None, [juergen])
        m.add("owner_multiple_objects", adressnr=[juergen], objektnr=[a, o_b])
        max_ = self.person("Mustermann", "Max", "Herr", "max@web.de (Büro)", home_b)
        m.add("email_annotated", adressnr=[max_], raw="max@web.de (Büro)", expected="max@web.de")
        anna = self.person("Schmidt", "Anna", "Frau", "anna.schmidt@gmx.de; a.schmidt@schmidt-partner.de", home_b)
        m.add("email_multiple_semicolon", adressnr=[anna], raw="anna.schmidt@gmx.de; a.schmidt@schmidt-partner.de",
              expected="anna.schmidt@gmx.de")
        peter = self.person("Müller", "Peter", "Herr", "mueller(at)web.de, peter.mueller@t-online.de", home_b)
        m.add("email_multiple_comma", adressnr=[peter], raw="mueller(at)web.de, peter.mueller@t-online.de",
              expected="peter.mueller@t-online.de")
        karin = self.person("Fischer", "Karin", "Frau", "k.fischer@gmx.de,karin.fischer@web.de", home_b)
        m.add("email_multiple_comma", adressnr=[karin], raw="k.fischer@gmx.de,karin.fischer@web.de",
              expected="k.fischer@gmx.de")
        invalid = []
        for vorname, nachname, anrede, raw in (("Hans", "Meier", "Herr", "hans.meier@web"),
                                               ("Gisela", "Krämer", "Frau", "keine"),
                                               ("Uwe", "Brandt", "Herr", "info@@brandt-immobilien.de")):
            p = self.person(nachname, vorname, anrede, raw, home_b)
            m.add("email_invalid", adressnr=[p], raw=raw)
            invalid.append(p)
        b.contract(bu[1], "E", D(2012, 6, 1), None, [max_])
        e2 = b.contract(bu[2], "E", D(2016, 1, 1), None, [anna])
        t2 = b.contract(bu[2], "M", D(2021, 3, 1), None, [peter])
        b.contract(bu[3], "M", D(2018, 8, 1), None, [karin, invalid[0]])
        e4 = b.contract(bu[4], "E", D(1999, 10, 1), None, invalid[1:])
        # phone formats as people type them, and garbage
        ph = PHONES
        kaethe = self.person("Köhler", "Käthe", "Frau", "kaethe.koehler@freenet.de", home_b,
                             telefon=ph["intl_with_trunk_zero"][0], mobil=ph["mobile_annotated"][0])
        walter = self.person("Otto", "Walter", "Herr", None, home_b, telefon=ph["berlin_grouped"][0],
                             mobil=ph["munich_mixed"][0])
        olga = self.person("Nowak", "Olga", "Frau", "olga.nowak@mail.de", home_b,
                           telefon=ph["garbage_keine"][0], mobil=ph["garbage_see_husband"][0])
        t4 = b.contract(bu[4], "M", D(2017, 4, 1), None, [walter, olga])
        # a parent owns here and shares the e-mail with a child renting in object C
        parent = self.person("Schubert", "Wolfgang", "Herr", "familie.schubert@t-online.de",
                             ("Schillerstraße 40", "01069", "Dresden"))
        e5 = b.contract(bu[5], "E", D(2003, 2, 1), None, [parent])
        t5 = b.contract(bu[5], "M", D(2022, 5, 1), None, [kaethe])
        for u, e, t in ((bu[2], e2, t2), (bu[4], e4, t4), (bu[5], e5, t5)):
            m.add("owner_and_tenant_same_unit", einheitid=[u], vertragnr=[e, t])
        for p, field, case in ((kaethe, "telefon", "intl_with_trunk_zero"), (kaethe, "mobil", "mobile_annotated"),
                               (walter, "telefon", "berlin_grouped"), (walter, "mobil", "munich_mixed")):
            m.add("phone_german_format", adressnr=[p], field=field, raw=ph[case][0], expected=ph[case][1])
        for field, case in (("telefon", "garbage_keine"), ("mobil", "garbage_see_husband")):
            m.add("phone_garbage", adressnr=[olga], field=field, raw=ph[case][0], expected=None)
        m.add("umlaut_names", adressnr=[kaethe, invalid[1]], objektnr=[o_b])
        self.object_c(parent)
        self.strays()

    def object_c(self, parent: int) -> None:
        """Object C (rental, Köln): vacancies, the contract window with its exact edges, e-mails shared
        across contracts, couples kept as one address, a contract naming a missing person."""
        b, m = self.b, self.m
        home = ("Eichendorffstraße 5", "50667", "Köln")
        c = b.objekt(1, "MFH Eichendorffstraße 5, Köln", "Eichendorffstraße", "5", "50667", "Köln", " de", "MIET")
        cu = [b.einheit(c, f"{i:02d}", f"Whg. {i}", 1, False, None, f"{45 + i}.00") for i in range(1, 17)]
        leer = self.people.leerstand(1)
        nn = self.person("N. N.")
        m.add("pseudo_person", adressnr=[nn])

        def vacancy(u: int, person: int, beginn: dt.date, ende: dt.date | None) -> None:
            m.add("vacancy_contract", vertragnr=[b.contract(u, "L", beginn, ende, [person])], einheitid=[u],
                  adressnr=[person])

        def tenant(vorname: str, nachname: str, email: str | None = None, anrede: str = "Frau") -> int:
            return self.person(nachname, vorname, anrede, email, home)

        vacancy(cu[0], leer, D(2025, 10, 1), None)
        vacancy(cu[1], nn, D(2025, 11, 15), None)
        # ended long ago, then a current tenant
        b.contract(cu[2], "M", D(2012, 1, 1), D(2019, 3, 31), [tenant("Renate", "Lehmann", "renate.lehmann@web.de")])
        b.contract(cu[2], "M", D(2019, 5, 1), None, [tenant("Doris", "Vogt", "doris.vogt@web.de")])
        # ended within the grace period, on its edge, one day beyond; each followed by a vacancy
        for u, ende, (vn, nn_) in ((cu[3], D(2026, 5, 20), ("Petra", "Sauer")), (cu[4], GRACE_EDGE, ("Ingrid", "Pohl")),
                                   (cu[5], GRACE_EDGE - _DAY, ("Heike", "Engel"))):
            b.contract(u, "M", D(2016, 8, 1), ende, [tenant(vn, nn_, f"{vn.lower()}.{nn_.lower()}@gmx.de")])
            vacancy(u, leer, ende + _DAY, None)
        # future move-ins: within the window, on its edge, one day beyond, far beyond
        for u, start, (vn, nn_) in ((cu[6], D(2026, 7, 1), ("Lea", "Jung")), (cu[7], FUTURE_EDGE, ("Mia", "Roth")),
                                    (cu[8], FUTURE_EDGE + _DAY, ("Emma", "Haas")),
                                    (cu[9], D(2027, 1, 1), ("Lisa", "Kuhn"))):
            vacancy(u, leer, D(2026, 1, 1), start - _DAY)
            b.contract(u, "M", start, None, [tenant(vn, nn_, f"{vn.lower()}.{nn_.lower()}@posteo.de")])
        # notice given: the tenant moves out after the reference date, the successor moves in the day after
        leaving = REF + dt.timedelta(days=20)
        old = b.contract(cu[15], "M", D(2018, 4, 1), leaving, [tenant("Monika", "Brandt", "monika.brandt@gmx.net")])
        felix = tenant("Felix", "Wagner", "felix.wagner@web.de", "Herr Dipl.-Ing.")       # a salutation no table knows
        new = b.contract(cu[15], "M", leaving + _DAY, None, [felix])
        m.add("salutation_not_in_table", adressnr=[felix], field="anrede", raw="Herr Dipl.-Ing.")
        m.add("tenant_change", einheitid=[cu[15]], vertragnr=[old, new])
        child = tenant("Julia", "Schubert", "familie.schubert@t-online.de")
        b.contract(cu[10], "M", D(2020, 2, 1), None, [child])
        m.add("email_shared_unrelated", adressnr=[parent, child])
        # two tenants of different flats whose e-mail differs only in surrounding whitespace
        ute = tenant("Ute", "Vogel", " ute.vogel@web.de")
        bernd = tenant("Bernd", "Vogel", "ute.vogel@web.de ", "Herr")
        b.contract(cu[11], "M", D(2014, 9, 1), None, [ute])
        missing = b.missing_key("adressnr")
        v = b.contract(cu[12], "M", D(2023, 4, 1), None, [bernd, missing])
        m.add("email_whitespace_variant", adressnr=[ute, bernd], raw=[" ute.vogel@web.de", "ute.vogel@web.de "])
        m.add("email_shared_unrelated", adressnr=[ute, bernd])
        m.add("party_unknown_person", vertragnr=[v], adressnr=[missing])
        # couples kept as one address record
        eheleute = self.person("Schröder", "Hans und Grete", "Eheleute", "schroeder.koeln@arcor.de", home)
        fam = self.person("Öztürk", None, "Fam.", None, home, telefon="0221 3456789", sprache="DE")
        b.contract(cu[13], "M", D(2010, 10, 1), None, [eheleute])
        b.contract(cu[14], "M", D(2024, 6, 1), None, [fam])
        m.add("couple_as_one_address", adressnr=[eheleute])
        m.add("couple_as_one_address", adressnr=[fam])
        m.add("umlaut_names", adressnr=[eheleute, fam], objektnr=[c])

    def strays(self) -> None:
        """The orphan unit, a contract on a missing unit, a test object, an object of Mandant 3, persons
        with no contract at all."""
        b, m = self.b, self.m
        missing_o = b.missing_key("objektnr")
        orphan = b.einheit(missing_o, "001", "Wohnung 1", 1, False, "EG", "58.00")
        gerhard = self.person("Winkler", "Gerhard", "Herr", "g.winkler@gmx.net", ("Hauptstraße 4", "04103", "Leipzig"))
        v = b.contract(orphan, "M", D(2013, 1, 1), None, [gerhard])
        m.add("orphan_unit", einheitid=[orphan], objektnr=[missing_o], vertragnr=[v], adressnr=[gerhard])
        lars = self.person("Frank", "Lars", "Herr", "lars.frank@outlook.de", ("Ringstraße 9", "28195", "Bremen"))
        missing_u = b.missing_key("einheitid")
        v = b.contract(missing_u, "M", D(2021, 1, 1), None, [lars])
        m.add("contract_unknown_unit", vertragnr=[v], einheitid=[missing_u], adressnr=[lars])

        t = b.objekt(1, "Testobjekt Schulung", "Musterstraße", "1", "12345", "Musterstadt", "DE", "MIET", test=True)
        tu = [b.einheit(t, f"{i:03d}", f"Testwohnung {i}", 1, False, "EG", "50.00") for i in (1, 2)]
        erika = self.person("Mustermann", "Erika", "Frau", "erika@mustermann.de", ("Musterstraße 1", "12345",
                                                                                    "Musterstadt"))
        b.contract(tu[0], "M", D(2020, 1, 1), None, [erika])
        m.add("test_object", objektnr=[t], einheitid=tu)

        x = b.objekt(3, "WEG Fröbelstraße 1", "Fröbelstraße", "1", "04109", "Leipzig", "DE", "WEG")
        xu = [b.einheit(x, f"{i:03d}", f"Wohnung {i}", 1, False, "EG", "70.00") for i in (1, 2)]
        helga = self.person("Lorenz", "Helga", "Frau", "helga.lorenz@web.de", ("Fröbelstraße 1", "04109", "Leipzig"))
        for u in xu:
            b.contract(u, "E", D(2009, 9, 1), None, [helga])
        m.add("out_of_scope_object", objektnr=[x], einheitid=xu)

        kh = self.person("Straßburger", "Karl-Heinz", "Herrn", "kh.strassburger@web.de",
                         ("Schloßstraße 2", "12163", "Berlin"))
        elektro = self.person("Elektro Weiß GmbH", None, "Firma", "info@elektro-weiss.de",
                              ("Güterstraße 8", "70173", "Stuttgart"), telefon="0711 2345678")
        m.add("person_without_contract", adressnr=[kh])
        m.add("person_without_contract", adressnr=[elektro])
        m.add("company_person", adressnr=[elektro])
        m.add("umlaut_names", adressnr=[kh, elektro])
