"""The proof against a real driver: pyodbc + psqlODBC, a password with ; { } = and a space.

The private cluster (tests/pgcluster.py) uses scram-sha-256, so a password that arrives mangled
is refused. The engine's escaping connects; the same password pasted into the connection string
without escaping is refused with "password authentication failed".
"""
from __future__ import annotations

import pytest

from engine.classify import classify
from engine.sources import odbc
from engine.sources.connect import import_pyodbc, source_error
from pgcluster import HOST, pg_cluster, require  # noqa: F401  (pg_cluster is a fixture)

DRIVER = "PostgreSQL Unicode"
HOSTILE = "p;a}r{t =1"
pytestmark = pytest.mark.odbc


@pytest.fixture(scope="module")
def erp(pg_cluster):
    pyodbc = import_pyodbc()
    require(DRIVER in pyodbc.drivers(), f"the ODBC driver '{DRIVER}' is not installed (Debian: odbc-postgresql)")
    pg_cluster.create_user("erp_reader", HOSTILE, database="erp")
    pg_cluster.execute("CREATE TABLE adresse (nr int PRIMARY KEY, nachname varchar(70), ort text)",
                       "INSERT INTO adresse VALUES (1, 'Müller-Lüdenscheidt', 'Gießen'), (2, 'Öztürk', 'Straße 5 ÄÖÜ äöü ß')",
                       "GRANT SELECT ON adresse TO erp_reader", database="erp")
    return pg_cluster


def attrs(cluster, password, database="erp"):
    return {"Driver": DRIVER, "Server": HOST, "Port": cluster.port, "Database": database, "Uid": "erp_reader", "Pwd": password}


def connect(text):
    return import_pyodbc().connect(text, timeout=10)


def test_hostile_password_connects_through_the_engines_escaping_and_reads_umlauts(erp):
    text = odbc.format_connection_string(attrs(erp, HOSTILE))
    assert "Pwd={p;a}}r{t =1}" in text
    with connect(text) as conn:
        rows = conn.execute("SELECT nr, nachname, ort FROM adresse ORDER BY nr").fetchall()
        who = conn.execute("SELECT current_user").fetchone()[0]
    assert who == "erp_reader"
    assert [tuple(r) for r in rows] == [(1, "Müller-Lüdenscheidt", "Gießen"), (2, "Öztürk", "Straße 5 ÄÖÜ äöü ß")]


@pytest.mark.parametrize("written", ["percent-encoded", "as is"])
def test_a_reference_in_a_url_templates_odbc_connect_is_braced_and_connects(erp, monkeypatch, written):
    """A source `url` written by hand with odbc_connect (mssql+pyodbc); the connection string that
    SQLAlchemy hands to pyodbc is taken from the resolved URL as its dialect takes it."""
    from urllib.parse import quote

    import sqlalchemy as sa

    from engine.config.secrets import Secret
    monkeypatch.setenv("ERP_ODBC_PW", HOSTILE)
    attributes = f"Driver={{{DRIVER}}};Server={HOST};Port={erp.port};Database=erp;Uid=erp_reader;Pwd="
    template = "mssql+pyodbc:///?odbc_connect=" + \
        (quote(attributes, safe="") + "${env:ERP_ODBC_PW}%3BApplicationName%3Dsync" if written == "percent-encoded"
         else quote(attributes, safe="=;{}") + "${env:ERP_ODBC_PW};ApplicationName=sync")
    text = sa.make_url(Secret(template).resolve_url()).query["odbc_connect"]
    assert text.endswith("Pwd={p;a}}r{t =1};ApplicationName=sync")
    with connect(text) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "erp_reader"


def test_the_same_password_unescaped_is_refused(erp):
    import pyodbc
    unescaped = f"Driver={{{DRIVER}}};Server={HOST};Port={erp.port};Database=erp;Uid=erp_reader;Pwd={HOSTILE}"
    with pytest.raises(pyodbc.Error) as info:
        connect(unescaped)
    assert "password authentication failed" in str(info.value)
    assert classify(info.value).code == "login_failed"


def test_wrong_password_and_missing_database_are_classified(erp):
    import pyodbc
    with pytest.raises(pyodbc.Error) as info:
        connect(odbc.format_connection_string(attrs(erp, HOSTILE + "x")))
    err = source_error(info.value, "tenant 'acme': connect")
    assert err.cause == "login_failed" and "password authentication failed" in str(err)
    with pytest.raises(pyodbc.Error) as info:
        connect(odbc.format_connection_string(attrs(erp, HOSTILE, database="domus_fehlt")))
    err = source_error(info.value, "tenant 'acme': connect")
    assert err.cause == "database_missing" and 'database "domus_fehlt" does not exist' in str(err)
    assert "r{t" not in str(err)


def test_closed_port_through_psqlodbc_and_freetds_is_unreachable(erp):
    import pyodbc
    from pgcluster import free_port
    port = free_port()
    with pytest.raises(pyodbc.Error) as info:
        connect(odbc.format_connection_string({**attrs(erp, HOSTILE), "Port": port}))
    assert "Connection refused" in str(info.value) and classify(info.value).code == "unreachable"
    require("FreeTDS" in pyodbc.drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    with pytest.raises(pyodbc.Error) as info:
        connect(odbc.format_connection_string({"Driver": "FreeTDS", "Server": HOST, "Port": port, "UID": "x",
                                               "PWD": HOSTILE, "TDS_Version": "7.4"}))
    assert "Adaptive Server is unavailable" in str(info.value) and classify(info.value).code == "unreachable"
    assert "r{t" not in str(info.value)
