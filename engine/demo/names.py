"""Name pools for the demo ERP: German first and last names, streets, cities, e-mail domains, phones.

Plain tuples, read by the generator with a seeded `random.Random`. The pools carry umlauts, ß and a
few names from Germany's larger immigrant communities, as a real address master does.
"""
from __future__ import annotations

MALE = (
    "Peter", "Michael", "Thomas", "Andreas", "Wolfgang", "Klaus", "Jürgen", "Günter", "Stefan",
    "Christian", "Uwe", "Werner", "Horst", "Frank", "Dieter", "Manfred", "Gerhard", "Hans", "Bernd",
    "Torsten", "Matthias", "Helmut", "Walter", "Heinz", "Martin", "Jörg", "Sven", "Rainer", "Ralf",
    "Markus", "Alexander", "Sebastian", "Tobias", "Jan", "Daniel", "Florian", "Lukas", "Felix", "Jonas",
    "Maximilian", "Björn", "Sören", "Kai", "Dirk", "Volker", "Karl-Heinz", "Hans-Jürgen", "Lars",
    "Mehmet", "Mustafa", "Ali", "Ahmet", "Piotr", "Tomasz", "Dimitrios", "Giuseppe", "Ivan", "Noah",
)
FEMALE = (
    "Ursula", "Monika", "Petra", "Elisabeth", "Sabine", "Renate", "Helga", "Karin", "Brigitte",
    "Ingrid", "Erika", "Andrea", "Gisela", "Claudia", "Susanne", "Gabriele", "Christa", "Christine",
    "Hildegard", "Anna", "Birgit", "Barbara", "Stefanie", "Julia", "Katharina", "Nicole", "Sandra",
    "Anja", "Martina", "Heike", "Jutta", "Doris", "Bärbel", "Jördis", "Lea", "Lena", "Laura", "Sophie",
    "Marie", "Hannah", "Mia", "Emma", "Lisa", "Sarah", "Annegret", "Marlies", "Käthe", "Grete",
    "Ayşe", "Fatma", "Elif", "Zeynep", "Agnieszka", "Katarzyna", "Maria", "Olga", "Irina", "Ewa",
)
LAST = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner",
    "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler", "Herrmann",
    "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang", "Scholz", "Möller",
    "Weiß", "Jung", "Hahn", "Schubert", "Vogel", "Friedrich", "Keller", "Günther", "Frank", "Berger",
    "Winkler", "Roth", "Beck", "Lorenz", "Baumann", "Franke", "Albrecht", "Schuster", "Simon",
    "Ludwig", "Böhm", "Winter", "Kraus", "Martin", "Schumacher", "Krämer", "Vogt", "Stein", "Jäger",
    "Otto", "Sommer", "Groß", "Seidel", "Heinrich", "Brandt", "Haas", "Schreiber", "Graf", "Schulte",
    "Dietrich", "Ziegler", "Kuhn", "Kühn", "Pohl", "Engel", "Horn", "Busch", "Bergmann", "Thomas",
    "Voigt", "Sauer", "Arnold", "Wolff", "Pfeiffer", "Großmann", "Süß", "Blöß", "Straßburger",
    "von Bülow", "de Vries", "Yılmaz", "Kaya", "Demir", "Şahin", "Çelik", "Öztürk", "Nowak",
    "Kowalski", "Wiśniewski", "Popescu", "Papadopoulos", "Rossi", "Ivanović", "Nguyen",
)
COMPANY_STEMS = (
    "Immobilien", "Grundbesitz", "Hausverwaltung", "Bäckerei", "Zahnarztpraxis", "Physiotherapie",
    "Steuerberatung", "Apotheke", "Friseursalon", "Blumenhaus", "Versicherungsbüro", "Architekturbüro",
    "Kanzlei", "Elektro", "Sanitär", "Gaststätte", "Kiosk", "Optik", "Fahrschule", "Ingenieurbüro",
)
COMPANY_FORMS = ("GmbH", "GmbH & Co. KG", "GbR", "e.K.", "KG", "UG (haftungsbeschränkt)", "AG", "OHG")

# (city, lowest postal code, highest postal code, area code); postal codes are text: '01067'
CITIES = (
    ("Berlin", 10115, 14199, "030"), ("Hamburg", 20095, 22769, "040"), ("München", 80331, 81929, "089"),
    ("Köln", 50667, 51149, "0221"), ("Frankfurt am Main", 60306, 60599, "069"),
    ("Stuttgart", 70173, 70629, "0711"), ("Düsseldorf", 40210, 40629, "0211"),
    ("Leipzig", 4103, 4357, "0341"), ("Dresden", 1067, 1328, "0351"), ("Nürnberg", 90402, 90491, "0911"),
    ("Hannover", 30159, 30669, "0511"), ("Bremen", 28195, 28779, "0421"), ("Essen", 45127, 45359, "0201"),
    ("Dortmund", 44135, 44388, "0231"), ("Münster", 48143, 48167, "0251"), ("Würzburg", 97070, 97084, "0931"),
    ("Göttingen", 37073, 37085, "0551"), ("Lübeck", 23552, 23570, "0451"),
    ("Saarbrücken", 66111, 66133, "0681"), ("Heidelberg", 69115, 69126, "06221"),
    ("Freiburg im Breisgau", 79098, 79117, "0761"), ("Fürth", 90762, 90768, "0911"),
    ("Gößweinstein", 91327, 91327, "09242"), ("Weißenfels", 6667, 6667, "03443"),
)
STREETS = (
    "Hauptstraße", "Schulstraße", "Gartenstraße", "Bahnhofstraße", "Dorfstraße", "Bergstraße",
    "Birkenweg", "Lindenstraße", "Kirchstraße", "Waldstraße", "Ringstraße", "Schillerstraße",
    "Goethestraße", "Jahnstraße", "Feldstraße", "Wiesenweg", "Mühlenweg", "Am Sportplatz",
    "Rosenstraße", "Friedrichstraße", "Münchner Straße", "Königsallee", "Schloßstraße", "Blumenstraße",
    "Mozartstraße", "Beethovenstraße", "Kastanienallee", "Eichendorffstraße", "Fröbelstraße",
    "Güterstraße", "Große Brüdergasse", "Am Mühlbach", "Fichtenweg", "Lessingstraße", "Uhlandstraße",
    "Heinrich-Heine-Straße", "Karl-Marx-Allee", "Rathausplatz", "Marktplatz", "An der Weißeritz",
    "Paul-Löbe-Straße", "Zur Großen Wiese", "Im Grünen Winkel", "Öhringer Straße", "Ährenweg",
)
HOUSE_SUFFIX = ("", "", "", "", "", "", "", "a", "b", " a", "-3")

DOMAINS = (
    "web.de", "gmx.de", "gmx.net", "t-online.de", "gmail.com", "googlemail.com", "outlook.de",
    "hotmail.de", "yahoo.de", "freenet.de", "posteo.de", "icloud.com", "mail.de", "arcor.de",
)
MOBILE_PREFIXES = (
    "0151", "0152", "0157", "0160", "0162", "0170", "0171", "0172", "0173", "0174", "0175", "0176",
    "0177", "0178", "0179",
)
# DOMUS free text: the same number written as people type it (valid numbers, German formats)
LANDLINE_FORMATS = ("{a} {n}", "{a}/{n}", "({a}) {n}", "{a}-{n}", "+49 {a1} {n}", "0049 {a1} {n}", "{a}{n}")
MOBILE_FORMATS = ("{a} {n}", "{a}/{n}", "{a}-{n}", "+49 {a1} {n}", "+49{a1}{n}", "{a} {n3} {n4}")
PHONE_GARBAGE = ("keine", "-", "n.v.", "0", "???", "siehe Ehemann", "unbekannt", "xxx")

FLOORS = ("EG", "1. OG", "2. OG", "3. OG", "4. OG", "5. OG", "6. OG", "DG")
SIDES = ("links", "rechts", "Mitte", "")
LANGUAGES = ("de",) * 80 + ("DE",) * 5 + (None,) * 12 + ("en",) * 2 + ("EN ",)

_TRANSLIT = str.maketrans({
    "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i", "ş": "s", "ç": "c", "ğ": "g", "ś": "s",
    "ć": "c", "é": "e", "è": "e", " ": "", "'": "", "&": "", "(": "", ")": "", ".": "",
})


def ascii_part(text: str) -> str:
    """An e-mail local part from a name: 'Jürgen' -> 'juergen', 'von Bülow' -> 'vonbuelow'."""
    return text.lower().translate(_TRANSLIT)
