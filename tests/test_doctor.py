"""`idwell-sync doctor`: each failure stops at the right step with the right hint.

Tenant files are written into tmp_path and point at real things: an SQLite DOMUS file, the
private PostgreSQL cluster (password authentication), a closed port, a driver that is not
installed, and a small HTTP server standing in for the import API's token check.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from engine import cli
from local_http import serving
from pgcluster import DOMUS_MINI, HOST, free_port, pg_cluster, require, sqlite_domus  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
READER_PW = "Lesen-2024"


def write_tenant(tmp_path: Path, source: dict, target: dict | None = None) -> Path:
    (tmp_path / "mappings").mkdir(exist_ok=True)
    shutil.copy(REPO / "mappings" / "domus-sql.yaml", tmp_path / "mappings" / "domus-sql.yaml")
    (tmp_path / "tenants").mkdir(exist_ok=True)
    doc = {"id": "acme", "name": "Acme Hausverwaltung", "mapping": "domus-sql", "source": source,
           "target": target or {"type": "local", "path": str(tmp_path / "var" / "portal.sqlite")}}
    path = tmp_path / "tenants" / "acme.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def doctor(capsys, path: Path, fmt: str = "json"):
    code = cli.main(["doctor", str(path), "--format", fmt])
    out = capsys.readouterr().out
    if fmt == "text":
        return code, out
    report = json.loads(out)
    return code, report, {s["name"]: s for s in report["steps"]}


def first_failure(report: dict) -> dict:
    return next(s for s in report["steps"] if s["status"] == "fail")


# --- SQLite -----------------------------------------------------------------------------------

def test_sqlite_tenant_passes_every_step_and_writes_nothing(tmp_path, capsys):
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    before = erp.read_bytes()
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"})
    code, report, steps = doctor(capsys, path)
    assert code == 0 and report["ok"] is True
    assert not [s for s in report["steps"] if s["status"] in ("warn", "fail")], report
    assert [s["name"] for s in report["steps"]] == [
        "secrets", "dns", "tcp", "driver", "encryption", "login", "permissions", "query:buildings", "query:units",
        "query:users", "query:occupancies", "umlauts", "clock", "target"]
    assert steps["dns"]["status"] == "skip" and "not applicable" in steps["dns"]["detail"]
    assert steps["permissions"]["status"] == "skip" and "not applicable" in steps["permissions"]["detail"]
    assert steps["query:users"]["detail"].startswith("3 rows")
    assert "'Grüße ÄÖÜ äöü ß' arrives intact" in steps["umlauts"]["detail"]
    assert erp.read_bytes() == before and not (tmp_path / "var").exists()


def test_demo_tenant_passes_every_step(tmp_path, capsys, monkeypatch):
    from engine.demo import generate
    monkeypatch.chdir(tmp_path)            # the demo tenant's paths are relative to the working directory
    (tmp_path / "var" / "demo").mkdir(parents=True)
    generate("sqlite:///var/demo/erp.sqlite", size="S")
    before = (tmp_path / "var" / "demo" / "erp.sqlite").read_bytes()
    code, report, steps = doctor(capsys, REPO / "tenants" / "demo.yaml")
    assert code == 0, report
    assert {s["status"] for s in report["steps"]} == {"ok", "skip"}
    assert all(steps[f"query:{e}"]["status"] == "ok" for e in ("buildings", "units", "users", "occupancies"))
    assert steps["umlauts"]["status"] == "ok" and steps["target"]["status"] == "ok"
    assert (tmp_path / "var" / "demo" / "erp.sqlite").read_bytes() == before
    assert not (tmp_path / "var" / "portal").exists()


def test_text_output_numbers_steps_and_shows_both_hints(tmp_path, capsys):
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{tmp_path / 'fehlt.sqlite'}"})
    code, out = doctor(capsys, path, "text")
    assert code == 1
    assert "[FAIL]  6. login / Anmeldung: database_missing" in out
    assert "what to do: the SQLite file does not exist" in out and "was tun:    die SQLite-Datei fehlt" in out
    assert "[skip] 14. " not in out and "[skip] 13. server clock / Serveruhr: not run: no connection (see login)" in out
    assert out.rstrip().endswith("doctor FAILED: 1 failed, 0 warnings, 3 ok, 10 skipped")
    assert not (tmp_path / "fehlt.sqlite").exists(), "doctor must not create the missing ERP file"


def test_mojibake_in_the_data_is_a_warning(tmp_path, capsys):
    import sqlite3
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    with sqlite3.connect(erp) as con:
        con.execute("UPDATE Adresse SET Nachname = 'MÃ¼ller' WHERE AdressNr = 100")
    con.close()
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"})
    code, report, steps = doctor(capsys, path)
    assert code == 0 and steps["umlauts"]["status"] == "warn"
    assert "users.Nachname (1 value)" in steps["umlauts"]["detail"]
    code, out = doctor(capsys, path, "text")
    assert code == 0 and out.rstrip().endswith("doctor passed: 0 failed, 1 warning, 8 ok, 5 skipped"), out


def test_query_on_a_missing_column_fails_at_that_query(tmp_path, capsys):
    import sqlite3
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    with sqlite3.connect(erp) as con:
        con.execute("ALTER TABLE Einheit DROP COLUMN Fiktiv")
    con.close()
    code, report, steps = doctor(capsys, write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"}))
    assert code == 1 and first_failure(report)["name"] == "query:units"
    assert "object_missing" in steps["query:units"]["detail"] and "discover" in steps["query:units"]["hint_en"]


def test_a_query_that_names_a_missing_column_says_where_it_is_written(tmp_path, capsys, monkeypatch):
    import sqlite3
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    with sqlite3.connect(erp) as con:
        con.execute("ALTER TABLE Einheit DROP COLUMN Fiktiv")
    con.close()
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"})
    lines = (tmp_path / "mappings" / "domus-sql.yaml").read_text(encoding="utf-8").splitlines()
    at = next(i for i in range(lines.index("  units:"), len(lines)) if lines[i].startswith("    query:")) + 1
    monkeypatch.chdir(tmp_path)
    advice = ("a table, view or column of the query does not exist: compare the query with `idwell-sync discover "
              f"acme` (the query is written at mappings/domus-sql.yaml:{at})")
    code, report, steps = doctor(capsys, path)
    assert code == 1 and steps["query:units"]["hint_en"] == advice
    assert cli.main(["plan", "acme", "--no-out"]) == 4
    assert capsys.readouterr().err.splitlines()[-1] == f"  what to do: {advice}"
    assert steps["query:users"]["status"] == "ok"


def test_unresolvable_secret_fails_first(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ACME_MISSING_PW", raising=False)
    path = write_tenant(tmp_path, {"type": "sql", "host": "127.0.0.1", "port": free_port(), "database": "DOMUS",
                                   "username": "reader", "password": "${env:ACME_MISSING_PW}", "driver": "FreeTDS"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and first_failure(report)["name"] == "secrets"
    assert "ACME_MISSING_PW is not set" in steps["secrets"]["detail"]


def test_the_secrets_step_names_every_reference_that_does_not_resolve(tmp_path, capsys, monkeypatch):
    """Two references in one source.url, neither set: step 1 names both (as plan and discover do), so
    that the operator sets them at once."""
    monkeypatch.delenv("ACME_SQL_USER", raising=False)
    monkeypatch.delenv("ACME_SQL_PW", raising=False)
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://${env:ACME_SQL_USER}:${env:ACME_SQL_PW}"
                                                         f"@127.0.0.1:{free_port()}/DOMUS?driver=Acme+ODBC+Driver+99"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and first_failure(report)["name"] == "secrets"
    assert steps["secrets"]["detail"] == (
        "source.url: environment variable ACME_SQL_USER is not set (referenced as ${env:ACME_SQL_USER}); "
        "source.url: environment variable ACME_SQL_PW is not set (referenced as ${env:ACME_SQL_PW})")


# --- SQL Server settings: closed port, missing driver -----------------------------------------

def test_closed_port_fails_at_tcp_with_the_firewall_hint(tmp_path, capsys, monkeypatch):
    import pyodbc
    require("FreeTDS" in pyodbc.drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("ACME_SQL_PW", "p;a{r=t 1")      # one FreeTDS can be given (see the next test)
    port = free_port()
    path = write_tenant(tmp_path, {"type": "sql", "host": "127.0.0.1", "port": port, "database": "DOMUS",
                                   "username": "idwell_reader", "password": "${env:ACME_SQL_PW}", "driver": "FreeTDS"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and first_failure(report)["name"] == "tcp"
    assert f"open TCP {port} in the customer's firewall and NAT" in steps["tcp"]["hint_en"]
    assert "Firewall und NAT" in steps["tcp"]["hint_de"]
    # every later step of the checklist is shown, as not run (docs/sqlserver.md: the 14 steps)
    later = ["driver", "encryption", "login", "permissions", "query:buildings", "query:units", "query:users",
             "query:occupancies", "umlauts", "clock", "target"]
    assert [s["name"] for s in report["steps"]] == ["secrets", "dns", "tcp", *later]
    for name in later[3:-1]:
        assert steps[name]["status"] == "skip" and steps[name]["detail"] == "not run: TCP failed", steps[name]
    assert steps["login"]["status"] == "skip" and steps["driver"]["status"] == "ok"
    assert "a{r" not in json.dumps(report)


def test_a_password_freetds_cannot_be_given_fails_the_secrets_step_and_nothing_is_sent(tmp_path, capsys, monkeypatch):
    """A '}' with a ';' (or a leading '{'): FreeTDS versions read it differently, so doctor says so at
    step 1, naming the reference, not the password, and tries no login that would count against the
    SQL login; the network steps still run, so the customer's IT can work through them meanwhile."""
    import pyodbc
    from tds_listener import TdsLoginListener
    require("FreeTDS" in pyodbc.drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    password = "Wq7;Zk}Xv{9"
    monkeypatch.setenv("ACME_SQL_PW", password)
    with TdsLoginListener() as listener:
        path = write_tenant(tmp_path, {"type": "sql", "host": "127.0.0.1", "port": listener.port, "database": "DOMUS",
                                       "username": "idwell_reader", "password": "${env:ACME_SQL_PW}",
                                       "driver": "FreeTDS", "encrypt": "no", "login_timeout": 5})
        code, text = doctor(capsys, path, fmt="text")
        code_json, report, steps = doctor(capsys, path)
    assert listener.logins == []
    assert code == code_json == 1 and first_failure(report)["name"] == "secrets"
    assert steps["secrets"]["detail"].startswith("source.password ${env:ACME_SQL_PW} cannot be given to FreeTDS")
    assert "without '}'" in steps["secrets"]["hint_en"] and "ODBC Driver 18" in steps["secrets"]["hint_en"]
    assert "ohne '}'" in steps["secrets"]["hint_de"]
    assert [steps[n]["status"] for n in ("dns", "tcp", "driver")] == ["ok", "ok", "ok"]
    assert steps["login"] == {**steps["login"], "status": "skip",
                              "detail": "not run: driver 'FreeTDS' cannot be given the password (see secrets)"}
    assert "[FAIL]  1. secrets resolve / Secrets auflösbar: source.password ${env:ACME_SQL_PW} cannot be given" in text
    assert "doctor FAILED: 1 failed" in text
    for said in (text, json.dumps(report)):
        assert not [password[i:i + 3] for i in range(len(password) - 2) if password[i:i + 3] in said]


def test_missing_driver_fails_at_driver_and_names_the_package(tmp_path, capsys, monkeypatch):
    import pyodbc
    if "ODBC Driver 18 for SQL Server" in pyodbc.drivers():
        pytest.skip("ODBC Driver 18 for SQL Server is installed on this machine")
    monkeypatch.setenv("ACME_SQL_PW", "x")
    with socket_listening() as port:
        path = write_tenant(tmp_path, {"type": "sql", "host": "127.0.0.1", "port": port, "database": "DOMUS",
                                       "username": "idwell_reader", "password": "${env:ACME_SQL_PW}"})
        code, report, steps = doctor(capsys, path)
    assert code == 1 and first_failure(report)["name"] == "driver"
    assert steps["tcp"]["status"] == "ok"
    assert "msodbcsql18" in steps["driver"]["hint_en"] and "packages.microsoft.com" in steps["driver"]["hint_en"]


class socket_listening:
    """A port that accepts TCP connections (and nothing more)."""

    def __enter__(self) -> int:
        import socket
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


@contextlib.contextmanager
def silent_sql_server(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, int]]:
    """A FreeTDS tenant (login_timeout 2 s) pointed at a port that accepts TCP and never answers:
    (its tenant file, the port)."""
    import pyodbc
    require("FreeTDS" in pyodbc.drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("ACME_SQL_PW", "p;a{r=t 1")
    with socket_listening() as port:
        yield write_tenant(tmp_path, {"type": "sql", "host": "127.0.0.1", "port": port, "database": "DOMUS",
                                      "username": "idwell_reader", "password": "${env:ACME_SQL_PW}",
                                      "driver": "FreeTDS", "login_timeout": 2}), port


def test_a_port_that_accepts_tcp_but_never_answers_the_login_is_not_sent_to_the_firewall(tmp_path, capsys, monkeypatch):
    """Step 3 connected, so the firewall lets the sync server through: the login's timeout means that
    something else listens there (another service, a proxy holding the connection), not a closed port."""
    with silent_sql_server(tmp_path, monkeypatch) as (path, port):
        code, report, steps = doctor(capsys, path)
    assert code == 1 and first_failure(report)["name"] == "login", report
    assert steps["tcp"]["status"] == "ok" and steps["login"]["detail"].startswith("unreachable")
    assert f"127.0.0.1:{port} accepts TCP connections but did not answer the login" in steps["login"]["hint_en"]
    assert "open TCP" not in steps["login"]["hint_en"] and "Firewall und NAT" not in steps["login"]["hint_de"]
    assert f"{port} der Port der SQL-Server-Instanz" in steps["login"]["hint_de"]


def test_plan_against_a_port_that_accepts_tcp_but_never_answers_is_not_sent_to_the_firewall(tmp_path, capsys,
                                                                                             monkeypatch):
    """The nightly run says what doctor says: something listens there, the firewall is not the cause."""
    with silent_sql_server(tmp_path, monkeypatch) as (path, port):
        code = cli.main(["plan", str(path), "--no-out"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert f"127.0.0.1:{port} accepts TCP connections but did not answer as the database server" in err
    assert "open TCP" not in err and "p;a{r=t 1" not in err


# --- PostgreSQL (the private cluster) ---------------------------------------------------------

@pytest.fixture(scope="module")
def pg_erp(pg_cluster):
    pg_cluster.execute("CREATE DATABASE erp")
    pg_cluster.execute(*DOMUS_MINI, database="erp")
    pg_cluster.create_user("erp_reader", READER_PW)
    pg_cluster.create_user("erp_writer", READER_PW)
    pg_cluster.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO erp_reader, erp_writer",
                       "GRANT INSERT, UPDATE ON adresse TO erp_writer", database="erp")
    return pg_cluster


def pg_source(cluster, user="erp_reader", database="erp") -> dict:
    return {"type": "sql", "url": f"postgresql+psycopg://{user}:${{env:ACME_PG_PW}}@{HOST}:{cluster.port}/{database}"}


def test_postgres_tenant_passes_every_step(pg_erp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", READER_PW)
    code, report, steps = doctor(capsys, write_tenant(tmp_path, pg_source(pg_erp)))
    assert code == 0, report
    assert not [s for s in report["steps"] if s["status"] in ("warn", "fail", "skip")], report
    assert steps["login"]["detail"].startswith("connected as erp_reader to erp")
    assert steps["permissions"]["detail"] == "the login cannot write to any table"
    assert "loopback" in steps["encryption"]["detail"]
    assert steps["query:occupancies"]["detail"].startswith("3 rows")
    assert READER_PW not in json.dumps(report)


def test_wrong_password_fails_at_login(pg_erp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", READER_PW + "-falsch")
    code, report, steps = doctor(capsys, write_tenant(tmp_path, pg_source(pg_erp)))
    assert code == 1 and first_failure(report)["name"] == "login"
    assert "password authentication failed" in steps["login"]["detail"]
    assert steps["login"]["hint_en"].startswith("the login was refused") and "Passwort" in steps["login"]["hint_de"]
    assert [steps[n]["status"] for n in ("dns", "tcp", "driver")] == ["ok", "ok", "ok"]
    assert steps["query:users"]["status"] == "skip" and steps["query:users"]["detail"] == "not run: no connection (see login)"


def test_missing_database_fails_at_login_with_its_own_hint(pg_erp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", READER_PW)
    code, report, steps = doctor(capsys, write_tenant(tmp_path, pg_source(pg_erp, database="domus_fehlt")))
    assert code == 1 and first_failure(report)["name"] == "login"
    assert steps["login"]["detail"].startswith("database_missing") and "domus_fehlt" in steps["login"]["detail"]
    assert "db_datareader" in steps["login"]["hint_en"]
    # the tenant gives a URL: the hint names it and its database, not source.database, which it does not have
    assert steps["login"]["hint_en"].startswith("the database 'domus_fehlt' named in source.url does not exist")
    assert "source.database" not in steps["login"]["hint_en"] + steps["login"]["hint_de"]
    assert "Datenbanknamen in source.url" in steps["login"]["hint_de"]


def test_closed_postgres_port_fails_at_tcp(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", READER_PW)
    port = free_port()
    source = {"type": "sql", "url": f"postgresql+psycopg://erp_reader:${{env:ACME_PG_PW}}@{HOST}:{port}/erp"}
    code, report, steps = doctor(capsys, write_tenant(tmp_path, source))
    assert code == 1 and first_failure(report)["name"] == "tcp"
    assert "connection refused" in steps["tcp"]["detail"]


def test_a_login_that_can_write_is_a_warning(pg_erp, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACME_PG_PW", READER_PW)
    code, report, steps = doctor(capsys, write_tenant(tmp_path, pg_source(pg_erp, user="erp_writer")))
    assert code == 0 and steps["permissions"]["status"] == "warn"
    assert "write access to 1 table" in steps["permissions"]["detail"]
    # in PostgreSQL's terms: its administrator grants SELECT or pg_read_all_data, not SQL Server's roles
    assert "pg_read_all_data" in steps["permissions"]["hint_en"] and "GRANT SELECT" in steps["permissions"]["hint_de"]
    assert "db_datareader" not in steps["permissions"]["hint_en"] + steps["permissions"]["hint_de"]


# --- the iDWELL target ------------------------------------------------------------------------

class _ImportApi(BaseHTTPRequestHandler):
    token = "tok-acme"

    def do_GET(self):
        ok = self.headers.get("Authorization") == f"Bearer {self.token}"
        body = b'{"items": [], "next_cursor": null}' if ok else b'{"error": {"code": "unauthorized", "message": "bad token"}}'
        self.send_response(200 if ok and self.path.startswith("/import/v1/buildings?limit=1") else 401 if not ok else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(handler: type[BaseHTTPRequestHandler], base_path: str):
    """A real HTTP server on 127.0.0.1 for one test: yields its base URL, stops afterwards."""
    with serving(handler) as server:
        yield f"http://{HOST}:{server.server_address[1]}{base_path}"


@pytest.fixture
def import_api():
    yield from _serve(_ImportApi, "/import/v1")


@pytest.mark.parametrize("token,status", [("tok-acme", "ok"), ("tok-other", "fail")])
def test_idwell_target_token(tmp_path, capsys, monkeypatch, import_api, token, status):
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    monkeypatch.setenv("ACME_IDWELL_TOKEN", token)
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"},
                        {"type": "idwell", "base_url": import_api, "token": "${env:ACME_IDWELL_TOKEN}"})
    code, report, steps = doctor(capsys, path)
    assert steps["target"]["status"] == status and code == (0 if status == "ok" else 1)
    if status == "fail":
        assert "answered 401" in steps["target"]["detail"] and "${env:ACME_IDWELL_TOKEN}" in steps["target"]["hint_en"]
    assert token not in json.dumps(report)


# --- an API source (Cloud Connect style) ------------------------------------------------------

API_MAPPING = """
name: cc-test
source_type: api
entities:
  buildings:
    endpoint: /objekte
    record_selector: data
    paginator: {type: page_number, page_param: page, size_param: per_page}
    key: nr
    fields: {external_id: to_string(nr), name: bezeichnung}
  units:
    endpoint: /einheiten
    record_selector: data
    paginator: {type: page_number, page_param: page, size_param: per_page}
    key: id
    fields: {external_id: to_string(id), building_id: to_string(objekt), number: nummer}
  users:
    endpoint: /adressen
    record_selector: data
    paginator: {type: page_number, page_param: page, size_param: per_page}
    key: nr
    fields: {external_id: to_string(nr), last_name: name, email: email}
  occupancies:
    endpoint: /vertraege
    record_selector: data
    paginator: {type: page_number, page_param: page, size_param: per_page}
    key: [vertrag, adresse]
    fields: {external_id: "concat(to_string(vertrag), '-', to_string(adresse))", user_id: to_string(adresse),
             unit_id: to_string(einheit), role: rolle, start_date: beginn}
"""

API_DATA = {
    "/objekte": [{"nr": 1, "bezeichnung": "Haus Sonnenhügel"}],
    "/einheiten": [{"id": 10, "objekt": 1, "nummer": "WE 01"}],
    "/adressen": [{"nr": 100, "name": "Müller", "email": "m@example.de"}],
    "/vertraege": [{"vertrag": 5, "adresse": 100, "einheit": 10, "beginn": "2020-01-01"}],   # no 'rolle'
}


class _CloudConnect(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0].removeprefix("/api")
        if self.headers.get("X-API-Key") != "key-acme":
            status, body = 401, {"error": "invalid api key"}
        elif path in API_DATA:
            status, body = 200, {"data": API_DATA[path] if "page=1" in self.path else []}
        else:
            status, body = 404, {"error": "not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def cloud_connect():
    yield from _serve(_CloudConnect, "/api")


def write_api_tenant(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "mappings").mkdir(exist_ok=True)
    (tmp_path / "mappings" / "cc-test.yaml").write_text(API_MAPPING, encoding="utf-8")
    (tmp_path / "tenants").mkdir(exist_ok=True)
    doc = {"id": "acme", "name": "Acme", "mapping": "cc-test",
           "source": {"type": "api", "base_url": base_url,
                      "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:ACME_CC_KEY}"}},
           "target": {"type": "local", "path": str(tmp_path / "var" / "portal.sqlite")}}
    path = tmp_path / "tenants" / "acme.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_api_source_checks_auth_and_one_page_per_endpoint(tmp_path, capsys, monkeypatch, cloud_connect):
    monkeypatch.setenv("ACME_CC_KEY", "key-acme")
    code, report, steps = doctor(capsys, write_api_tenant(tmp_path, cloud_connect))
    assert code == 0, report
    assert [s["name"] for s in report["steps"]] == ["secrets", "dns", "tcp", "auth", "endpoint:buildings",
                                                   "endpoint:units", "endpoint:users", "endpoint:occupancies", "target"]
    assert steps["auth"]["status"] == "ok" and steps["endpoint:users"]["status"] == "ok"
    assert steps["endpoint:occupancies"]["status"] == "warn" and "no record has 'rolle'" in steps["endpoint:occupancies"]["detail"]


def test_api_names_are_compared_as_json_reads_them_case_sensitively(tmp_path, capsys, monkeypatch, cloud_connect):
    """A mapping reading `email` from records that hold `Email` gets null for every person: the
    doctor says so and names the key the records do have."""
    monkeypatch.setenv("ACME_CC_KEY", "key-acme")
    monkeypatch.setitem(API_DATA, "/adressen", [{"nr": 100, "name": "Müller", "Email": "m@example.de"}])
    code, report, steps = doctor(capsys, write_api_tenant(tmp_path, cloud_connect))
    assert steps["endpoint:users"]["status"] == "warn", steps["endpoint:users"]
    assert "no record has 'email' (did you mean 'Email'?)" in steps["endpoint:users"]["detail"]
    assert "case-sensitive" in steps["endpoint:users"]["hint_en"]


def test_api_source_with_a_wrong_key_fails_at_auth(tmp_path, capsys, monkeypatch, cloud_connect):
    monkeypatch.setenv("ACME_CC_KEY", "key-other")
    code, report, steps = doctor(capsys, write_api_tenant(tmp_path, cloud_connect))
    assert code == 1 and first_failure(report)["name"] == "auth"
    assert "(401)" in steps["auth"]["detail"] and "key-other" not in json.dumps(report)
    assert steps["endpoint:buildings"]["status"] == "skip"          # listed, as not run
    assert steps["endpoint:buildings"]["detail"] == "not run: authentication failed"


def test_api_source_whose_host_does_not_resolve_points_to_base_url(tmp_path, capsys, monkeypatch):
    """The DNS advice for an API source names source.base_url, not SQL Server's source.host, and
    the steps after it are listed as not run."""
    monkeypatch.setenv("ACME_CC_KEY", "key-acme")
    code, report, steps = doctor(capsys, write_api_tenant(tmp_path, "http://no-such-host.invalid/api"))
    assert code == 1 and first_failure(report)["name"] == "dns"
    assert "source.base_url" in steps["dns"]["hint_en"] and "SQL Server" not in steps["dns"]["hint_en"]
    assert [steps[n]["status"] for n in ("tcp", "auth", "endpoint:users")] == ["skip", "skip", "skip"]


# --- SQL Server answers that cannot be produced here (no SQL Server on this machine) ----------

class _RefusingEngine:
    """Stands in for a SQL Server engine whose connect() fails with a documented driver error."""

    def __init__(self, sqlstate: str, message: str):
        import pyodbc
        self.error = pyodbc.OperationalError(sqlstate, message)

    def connect(self):
        import sqlalchemy.exc
        raise sqlalchemy.exc.OperationalError(None, None, self.error)


@pytest.mark.parametrize("sqlstate,message,expect", [
    ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: [error:0A000086:SSL routines::"
              "certificate verify failed:self-signed certificate] (-1) (SQLDriverConnect)",
     {"encryption": "fail", "login": "skip"}),
    ("28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'idwell_reader'. "
              "(18456) (SQLDriverConnect)", {"encryption": "ok", "login": "fail"}),
    ("28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed. The login is from an "
              "untrusted domain and cannot be used with Integrated authentication. (18452) (SQLDriverConnect)",
     {"encryption": "ok", "login": "fail"}),
])
def test_sql_server_handshake_and_login_failures_land_on_their_step(sqlstate, message, expect):
    from engine.config.model import SqlServer, SqlSource
    from engine.config.secrets import Secret
    from engine.doctor_sql import _connect_steps, describe
    source = SqlSource(type="sql", server=SqlServer(host="sql.kunde.example", database="DOMUS", username="idwell_reader",
                                                    password=Secret("${env:X}")))
    conn, steps = _connect_steps(_RefusingEngine(sqlstate, message), source, describe(source))
    assert conn is None
    assert {s.name: s.status for s in steps} == expect
    failed = next(s for s in steps if s.status == "fail")
    if "SSL Provider" in message:
        assert "trust_server_certificate: true" in failed.hint_en and "trust_server_certificate: true" in failed.hint_de
    elif "18452" in message:
        assert failed.detail.startswith("windows_auth_used") and "SQL Server and Windows Authentication mode" in failed.hint_en
    else:
        assert failed.detail.startswith("login_failed") and "user name and the password" in failed.hint_en


def test_a_driver_message_that_quotes_a_secret_is_masked_in_every_step(tmp_path, capsys, monkeypatch, import_api):
    """The query, permissions, umlaut and clock steps quote the driver's message; a secret the
    tenant references never shows there (here the query names a table spelled as the token)."""
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    token = "tok-acme-0815-geheim"
    monkeypatch.setenv("ACME_IDWELL_TOKEN", token)
    path = write_tenant(tmp_path, {"type": "sql", "url": f"sqlite:///{erp}"},
                        {"type": "idwell", "base_url": import_api, "token": "${env:ACME_IDWELL_TOKEN}"})
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["overrides"] = {"entities": {"users": {"query": f'SELECT * FROM "{token}"'}}}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    code, report, steps = doctor(capsys, path)
    assert code == 1 and steps["query:users"]["status"] == "fail"
    assert "no such table: ***" in steps["query:users"]["detail"], steps["query:users"]
    assert token not in json.dumps(report)
