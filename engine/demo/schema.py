"""The demo ERP's tables: a DOMUS-like schema in the style of a SQL Server database.

SQLAlchemy Core definitions; all table and column names lower case, so that PostgreSQL (which folds
unquoted identifiers to lower case) answers the mapping's `SELECT o.ObjektNr FROM Objekt o` as
SQLite and SQL Server do. Types are SQL Server's: NVARCHAR for names (VARCHAR on PostgreSQL, which
has no NVARCHAR), VARCHAR for codes, BIT flags (Boolean renders BIT on SQL Server), DATE, DECIMAL,
INT keys. There are no foreign keys, as in many ERP databases: a unit may name a missing object.
Secondary indexes are created after the load (`create_indexes`).
"""
from __future__ import annotations

from sqlalchemy import (DATE, DECIMAL, Boolean, Column, Index, Integer, MetaData, NVARCHAR, SmallInteger,
                        Table, VARCHAR)


def _nvarchar(length: int):
    return NVARCHAR(length).with_variant(VARCHAR(length), "postgresql")


# The column order here is the row order the generator produces (see builder.py).
COLUMNS: dict[str, tuple[str, ...]] = {
    "objekt": ("objektnr", "mandant", "bezeichnung", "strasse", "hausnr", "plz", "ort", "land", "verwaltungsart"),
    "einheit": ("einheitid", "objektnr", "einheitnr", "bezeichnung", "typcode", "fiktiv", "etage", "flaeche"),
    "adresse": ("adressnr", "anrede", "titel", "vorname", "nachname", "email", "telefon", "mobil", "sprache",
                "strasse", "plz", "ort"),
    "vertrag": ("vertragnr", "einheitid", "art", "beginn", "ende"),
    "vertragpartner": ("vertragnr", "adressnr", "position"),
}
# load order; drop in reverse
TABLES = tuple(COLUMNS)
# the primary key of each table, for ordered reads
KEYS: dict[str, tuple[str, ...]] = {
    "objekt": ("objektnr",), "einheit": ("einheitid",), "adresse": ("adressnr",), "vertrag": ("vertragnr",),
    "vertragpartner": ("vertragnr", "position"),
}
_INDEXES = (
    ("ix_einheit_objektnr", "einheit", ("objektnr",)),
    ("ix_vertrag_einheitid", "vertrag", ("einheitid",)),
    ("ix_vertragpartner_adressnr", "vertragpartner", ("adressnr",)),
    ("ix_adresse_nachname", "adresse", ("nachname",)),
)


def build_tables(schema: str | None = None) -> dict[str, Table]:
    """The five tables on a fresh MetaData (in `schema` where given), without secondary indexes."""
    md = MetaData(schema=schema)
    tables = [
        Table("objekt", md,
              Column("objektnr", Integer, primary_key=True, autoincrement=False),
              Column("mandant", SmallInteger, nullable=False),
              Column("bezeichnung", _nvarchar(200)),
              Column("strasse", _nvarchar(100)),
              Column("hausnr", VARCHAR(20)),
              Column("plz", VARCHAR(10)),
              Column("ort", _nvarchar(100)),
              Column("land", VARCHAR(3)),
              Column("verwaltungsart", VARCHAR(4))),            # 'WEG' owners' association, 'MIET' rental
        Table("einheit", md,
              Column("einheitid", Integer, primary_key=True, autoincrement=False),
              Column("objektnr", Integer, nullable=False),
              Column("einheitnr", VARCHAR(20), nullable=False),  # text, leading zeros kept: '007'
              Column("bezeichnung", _nvarchar(200)),
              Column("typcode", Integer, nullable=False),        # 1-5, phantom codes 90/91/99
              Column("fiktiv", Boolean(create_constraint=False), nullable=False),
              Column("etage", _nvarchar(20)),
              Column("flaeche", DECIMAL(10, 2))),
        Table("adresse", md,
              Column("adressnr", Integer, primary_key=True, autoincrement=False),
              Column("anrede", _nvarchar(40)),                   # free text: 'Herr', 'Herrn Dr.', 'Eheleute'
              Column("titel", _nvarchar(40)),
              Column("vorname", _nvarchar(120)),
              Column("nachname", _nvarchar(200), nullable=False),
              Column("email", _nvarchar(255)),                   # free text: several, annotated, garbage
              Column("telefon", _nvarchar(60)),
              Column("mobil", _nvarchar(60)),
              Column("sprache", VARCHAR(5)),
              Column("strasse", _nvarchar(100)),
              Column("plz", VARCHAR(10)),
              Column("ort", _nvarchar(100))),
        Table("vertrag", md,
              Column("vertragnr", Integer, primary_key=True, autoincrement=False),
              Column("einheitid", Integer, nullable=False),
              Column("art", VARCHAR(1), nullable=False),         # 'E' owner, 'M' tenant, 'L' vacancy
              Column("beginn", DATE),
              Column("ende", DATE)),
        Table("vertragpartner", md,
              Column("vertragnr", Integer, primary_key=True, autoincrement=False),
              Column("adressnr", Integer, nullable=False),
              Column("position", SmallInteger, primary_key=True, autoincrement=False)),
    ]
    by_name = {t.name: t for t in tables}
    for name, columns in COLUMNS.items():
        assert tuple(by_name[name].c.keys()) == columns, name
    return by_name


def create_indexes(conn, tables: dict[str, Table]) -> None:
    """Create the secondary indexes (after the load: cheaper than maintaining them row by row)."""
    for name, table, columns in _INDEXES:
        Index(name, *(tables[table].c[c] for c in columns)).create(conn)
