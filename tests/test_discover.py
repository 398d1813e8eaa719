"""`idwell-sync discover`: tables, views and columns of an unfamiliar database, and a few rows of
one table, from SQLite and from PostgreSQL (the private cluster), without writing anything."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from engine import cli
from pgcluster import DOMUS_MINI, HOST, pg_cluster, require, sqlite_domus  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def write_tenant(tmp_path: Path, url: str) -> Path:
    (tmp_path / "mappings").mkdir(exist_ok=True)
    shutil.copy(REPO / "mappings" / "domus-sql.yaml", tmp_path / "mappings" / "domus-sql.yaml")
    (tmp_path / "tenants").mkdir(exist_ok=True)
    path = tmp_path / "tenants" / "acme.yaml"
    path.write_text(yaml.safe_dump({"id": "acme", "name": "Acme", "mapping": "domus-sql",
                                    "source": {"type": "sql", "url": url}}), encoding="utf-8")
    return path


def discover(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["discover", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def sqlite_tenant(tmp_path):
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    return write_tenant(tmp_path, f"sqlite:///{erp}"), erp


def test_sqlite_lists_tables_views_and_columns(sqlite_tenant, capsys):
    path, erp = sqlite_tenant
    before = erp.read_bytes()
    code, out, _ = discover(capsys, str(path))
    assert code == 0
    assert "table Adresse (9 columns): AdressNr INTEGER, Anrede VARCHAR(20)" in out
    assert "view MieterListe (3 columns): AdressNr INTEGER, Nachname VARCHAR(70), EinheitID INTEGER" in out
    assert "\n5 tables, 1 view\n" in out
    assert out.rstrip().endswith("  query occupancies: 3 rows read; every expression of the mapping can be computed "
                                 "for them")       # the mapping's queries, their first rows mapped (none breaks)
    assert erp.read_bytes() == before


def test_sqlite_sample_shows_rows_with_umlauts(sqlite_tenant, capsys):
    path, _ = sqlite_tenant
    code, out, _ = discover(capsys, str(path), "adresse", "--rows", "2")
    assert code == 0
    assert out.startswith("table Adresse\n  AdressNr")
    assert "first 2 rows:" in out and "Müller-Lüdenscheidt" in out and "Öztürk" in out
    assert "Straßenbau" not in out   # only two rows asked for


def test_unknown_table_suggests_the_close_names(sqlite_tenant, capsys):
    path, _ = sqlite_tenant
    code, _, err = discover(capsys, str(path), "Adressen")
    assert code == 2
    assert "no table or view named 'Adressen'" in err and "Did you mean 'Adresse'?" in err


def test_missing_sqlite_file_is_a_source_error_and_not_created(tmp_path, capsys):
    path = write_tenant(tmp_path, f"sqlite:///{tmp_path / 'fehlt.sqlite'}")
    code, _, err = discover(capsys, str(path))
    assert code == 4 and "database_missing" in err
    assert not (tmp_path / "fehlt.sqlite").exists()


@pytest.fixture(scope="module")
def pg_erp(pg_cluster):
    pg_cluster.execute("CREATE DATABASE erp")
    pg_cluster.execute("CREATE SCHEMA domus", *[s.replace("TABLE ", "TABLE domus.").replace("INTO ", "INTO domus.")
                                                for s in DOMUS_MINI if "VIEW" not in s], database="erp")
    pg_cluster.execute("CREATE VIEW public.mieter AS SELECT adressnr, nachname FROM domus.adresse", database="erp")
    pg_cluster.create_user("erp_reader", "lesen")
    pg_cluster.execute("GRANT USAGE ON SCHEMA domus TO erp_reader",
                       "GRANT SELECT ON ALL TABLES IN SCHEMA domus, public TO erp_reader", database="erp")
    return pg_cluster


def test_postgres_lists_schemas_and_samples_a_qualified_table(pg_erp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", "lesen")
    path = write_tenant(tmp_path, f"postgresql+psycopg://erp_reader:${{env:ACME_PG_PW}}@{HOST}:{pg_erp.port}/erp")
    code, out, _ = discover(capsys, str(path))
    assert code == 0
    assert "schema public\n  view mieter (2 columns): adressnr INTEGER, nachname VARCHAR(70)" in out
    assert "schema domus\n  table adresse (9 columns)" in out
    code, out, _ = discover(capsys, str(path), "domus.objekt", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["sample"]["object"] == "domus.objekt"
    assert ["Wohnanlage Großbeerenstraße", "Großbeerenstraße"] == data["sample"]["rows"][0][2:4]
    assert data["objects"][0]["columns"][0] == {"name": "objektnr", "type": "INTEGER", "nullable": False}
    code, out, _ = discover(capsys, str(path), "public.MIETER")   # the default schema may be named, any case
    assert code == 0 and out.startswith("view mieter\n") and "Öztürk" in out


MISSING_DRIVER = "ODBC Driver 18 for SQL Server"


@pytest.mark.parametrize("command", ["discover", "plan"])
def test_every_error_before_the_connection_names_the_tenant(tmp_path, capsys, monkeypatch, command):
    """The scheduler's log holds hundreds of tenants: a driver that is not installed, a secret that is
    not set and (discover) a table that is not there are told with the tenant they belong to."""
    from engine.sources.connect import import_pyodbc
    if MISSING_DRIVER in import_pyodbc().drivers():
        pytest.skip(f"'{MISSING_DRIVER}' is installed here")
    monkeypatch.chdir(tmp_path)
    path = write_tenant(tmp_path, "postgresql+psycopg://reader:${env:ACME_DISCOVER_PW}@127.0.0.1:1/erp")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["target"] = {"type": "local", "path": str(tmp_path / "portal.sqlite")}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.delenv("ACME_DISCOVER_PW", raising=False)
    code = cli.main([command, str(path)])
    assert code == 3 and "tenant 'acme': source.url: environment variable ACME_DISCOVER_PW" in capsys.readouterr().err
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["source"] = {"type": "sql", "host": "127.0.0.1", "database": "DOMUS", "username": "reader",
                     "password": "${env:ACME_DISCOVER_PW}", "driver": MISSING_DRIVER}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("ACME_DISCOVER_PW", "not-checked")     # plan names every missing secret before it connects
    code = cli.main([command, str(path)])
    err = capsys.readouterr().err
    assert code == 4 and f"tenant 'acme': the ODBC driver '{MISSING_DRIVER}' is not installed" in err, err
    assert "msodbcsql18" in err


def test_an_unknown_table_names_the_tenant(sqlite_tenant, capsys):
    path, _ = sqlite_tenant
    code, _, err = discover(capsys, str(path), "Adressen")
    assert code == 2 and "tenant 'acme': no table or view named 'Adressen'" in err


FLOOR = "starts_with(Etage, 'K')"        # a unit without a floor breaks it (a cellar flag, say)


def test_rows_of_the_mappings_queries_that_break_a_field_are_shown_and_the_run_stops_on_them(sqlite_tenant, capsys,
                                                                                           tmp_path):
    """discover runs the mapping's queries and maps their first rows as a run does: the unit without
    a floor breaks the units' `floor` expression, which stops a run with exit 3; discover names the
    row, the expression and the error, shows the row as the query returned it, and exits 0."""
    path, erp = sqlite_tenant
    import sqlite3
    with sqlite3.connect(erp) as con:
        con.execute("UPDATE Einheit SET Etage = NULL WHERE EinheitID = 11")
    con.close()
    with_overrides(path, {"units": {"fields": {"floor": FLOOR}}},
                   target={"type": "local", "path": str(tmp_path / "portal.sqlite")})
    why = (f"units 11: the field 'floor' cannot be computed for this ERP record: {FLOOR} gives JMESPathTypeError: "
           "In function starts_with(), invalid type for value: None")
    summary = ("1 of 11 rows read breaks an expression of the mapping; a run would stop on it (exit 3): correct the "
               "expression in the tenant's overrides or the mapping, or the data in the ERP")

    code, out, err = discover(capsys, str(path))
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index("  query units: 3 rows read:")
    assert lines[at + 1].startswith("    the mapping's field 'floor' cannot be computed for 1 of these 3 rows (a run "
                                    f"stops on it, exit 3); the first: {why}"), out
    assert lines[at + 2] == "    the row, as the query returned it:"
    assert json.loads(lines[at + 3]) == {"EinheitID": 11, "ObjektNr": 1, "EinheitNr": "WE 02",
                                         "Bezeichnung": "Wohnung 1. OG", "TypCode": 1, "Fiktiv": 0, "Etage": None,
                                         "Flaeche": 64}
    assert lines[-1] == summary

    code, out, err = discover(capsys, str(path), "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    units = next(q for q in data["queries"] if q["entity"] == "units")
    assert (units["rows"], units["error"], units["missing"]) == (3, None, [])
    errors = units["expression_errors"]
    assert (errors["checked"], errors["records"], errors["fields"]) == (3, 1, {"floor": 1})
    [first] = errors["first"]
    assert (first["key"], first["field"], first["expression"]) == ("11", "floor", FLOOR)
    assert first["error"].startswith(why) and first["record"]["Etage"] is None
    assert data["expression_errors"] == {"checked": 11, "records": 1, "message": summary}
    assert data["objects"][0]["name"] == "Adresse"

    code = cli.main(["run", str(path), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"tenant 'acme': {why}" in err


def test_discover_names_every_missing_secret_before_a_missing_driver_as_plan_does(tmp_path, capsys, monkeypatch):
    """A tenant whose password is not set and whose driver is not installed: discover names the
    secret first, with plan's message and exit code (3), before it looks for the driver; a secret
    that is set is never shown."""
    from engine.sources.connect import import_pyodbc
    driver = "Acme ODBC Driver 99"
    assert driver not in import_pyodbc().drivers()
    monkeypatch.chdir(tmp_path)
    path = write_tenant(tmp_path, "sqlite:///unused.sqlite")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["source"] = {"type": "sql", "host": "127.0.0.1", "database": "DOMUS", "username": "reader",
                     "password": "${env:ACME_DISCOVER_PW}", "driver": driver}
    doc["target"] = {"type": "idwell", "base_url": "http://127.0.0.1:1/import/v1", "token": "${env:ACME_TOKEN}"}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.delenv("ACME_DISCOVER_PW", raising=False)
    monkeypatch.setenv("ACME_TOKEN", "Tok-5ecret-Value")
    said = {}
    for command in ("plan", "discover"):
        code = cli.main([command, str(path)])
        err = capsys.readouterr().err
        said[command] = (code, [line.split(": error: ", 1)[-1] for line in err.splitlines() if "WARNING" not in line])
    assert said["discover"] == said["plan"]
    code, lines = said["discover"]
    assert code == 3
    assert lines[0] == ("tenant 'acme': source.password: environment variable ACME_DISCOVER_PW is not set "
                        "(referenced as ${env:ACME_DISCOVER_PW})"), lines
    assert "driver" not in " ".join(lines) and "Tok-5ecret" not in " ".join(lines)


def test_a_column_the_mapping_reads_that_a_select_star_query_lacks_is_named_in_its_place(sqlite_tenant, capsys,
                                                                                        tmp_path):
    """A query that selects * (its columns cannot be checked before it runs) and a mapping with an
    expression over the whole row (`@.Etage`) besides one that reads a column the table lacks:
    discover names the column under the query, as for any other query, goes on with the others and
    exits 0 (it had stopped with exit 4, 'discover failed')."""
    path, _ = sqlite_tenant
    with_overrides(path, {"units": {"query": "SELECT * FROM Einheit",
                                    "fields": {"floor": "@.Etage", "name": "BezeichnungAlt"}}},
                   target={"type": "local", "path": str(tmp_path / "portal.sqlite")})
    code, out, err = discover(capsys, str(path))
    assert code == 0, err
    assert "  query units: 3 rows read; the mapping reads BezeichnungAlt, which the query does not return" in out, out
    assert "  query occupancies: 3 rows read; every expression of the mapping can be computed for them" in out
    code, out, err = discover(capsys, str(path), "--format", "json")
    units = next(q for q in json.loads(out)["queries"] if q["entity"] == "units")
    assert (code, units["missing"], units["error"]) == (0, ["BezeichnungAlt"], None)


# A query of 3000 rows whose row 2000 (or `fails_at`) stops the database with an error: at row 2000
# only a discover that reads past its first 1000 rows meets it. PostgreSQL divides by zero; SQLite gives NULL for that, but
# abs() of the smallest integer is an "integer overflow" error.
ROW_FAILS = {"postgresql": "1/(n - {row})", "sqlite": "abs(-9223372036854775807 - (n = {row}))"}


def numbers_query(backend: str, fails_at: int = 2000) -> str:
    return ("SELECT n AS ObjektNr, 1 AS Mandant, 'Haus ' || n AS Bezeichnung, 'Ringstraße' AS Strasse, '1' AS HausNr, "
            f"'10963' AS PLZ, 'Berlin' AS Ort, 'DE' AS Land, {ROW_FAILS[backend].format(row=fails_at)} AS Probe "
            "FROM Nummer")


def with_overrides(path: Path, entities: dict, **top) -> None:
    """The tenant file at `path` with `overrides.entities` (and other top-level keys) set."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["overrides"] = {"entities": entities}
    doc.update(top)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def sqlite_numbers(tmp_path) -> str:
    """The URL of a SQLite ERP with DOMUS_MINI and a table of the numbers 1-3000 (Nummer)."""
    import sqlite3
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    with sqlite3.connect(erp) as con:
        con.execute("CREATE TABLE Nummer (n INTEGER)")
        con.executemany("INSERT INTO Nummer VALUES (?)", [(n,) for n in range(1, 3001)])
    con.close()
    return f"sqlite:///{erp}"


@pytest.fixture
def pg_schema():
    """DOMUS_MINI and a table of the numbers 1-3000 in a schema of the test's own in the shared
    server's database `test` (127.0.0.1:5432), dropped afterwards; yields its source.url."""
    import secrets
    psycopg = pytest.importorskip("psycopg")
    schema = f"discover_sample_{secrets.token_hex(4)}"
    try:
        conn = psycopg.connect(host=HOST, port=5432, user="postgres", dbname="test", autocommit=True)
    except psycopg.OperationalError as exc:
        require(False, f"PostgreSQL on {HOST}:5432 is unreachable ({exc})")
    with conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            conn.execute(f"SET search_path TO {schema}")
            for statement in [*DOMUS_MINI, "CREATE TABLE Nummer (n INTEGER)",
                              "INSERT INTO Nummer SELECT generate_series(1, 3000)"]:
                conn.execute(statement)
            yield f"postgresql+psycopg://postgres@{HOST}:5432/test?options=-csearch_path%3D{schema}"
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_discover_reads_only_the_first_1000_rows_of_a_query(backend, tmp_path, capsys, request):
    """A query of 3000 rows whose row 2000 fails in the database: discover reads its first 1000
    rows, no more (streamed, also from PostgreSQL), so the query is shown as read and checked, not
    as failed; the ERP is not made to deliver a whole table of a big installation."""
    if backend == "sqlite":
        url = sqlite_numbers(tmp_path)
    else:
        url = request.getfixturevalue("pg_schema")
    path = write_tenant(tmp_path, url)
    with_overrides(path, {"buildings": {"query": numbers_query(backend)}})
    code, out, err = discover(capsys, str(path))
    assert code == 0, err
    assert "  query buildings: 1,000 rows read; every expression of the mapping can be computed for them" in out, out
    assert "  query units: 3 rows read" in out
    code, out, err = discover(capsys, str(path), "--format", "json")
    buildings = next(q for q in json.loads(out)["queries"] if q["entity"] == "buildings")
    assert (code, buildings["rows"], buildings["error"]) == (0, 1000, None), buildings


def test_a_query_that_fails_while_its_rows_are_read_lists_no_columns(tmp_path, capsys):
    """A query whose row 500 fails in the database (SQLite's integer overflow) fails after its
    columns are known: `--format json` gives the error with no rows and no columns, not the
    columns of a query that returned nothing (which read as a query that ran and found no rows)."""
    path = write_tenant(tmp_path, sqlite_numbers(tmp_path))
    with_overrides(path, {"buildings": {"query": numbers_query("sqlite", fails_at=500)}})
    code, out, err = discover(capsys, str(path), "--format", "json")
    buildings = next(q for q in json.loads(out)["queries"] if q["entity"] == "buildings")
    assert code == 0, err
    assert "integer overflow" in buildings["error"], buildings
    assert (buildings["rows"], buildings["columns"], buildings["missing"]) == (0, [], []), buildings
