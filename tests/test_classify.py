"""Driver errors -> causes, on real message texts.

Two kinds of text:
  - recorded from the drivers installed here (Debian 12: unixODBC 2.3.11, FreeTDS 1.3.17, psqlODBC
    13.02, PostgreSQL 15) exactly as pyodbc reports them; test_odbc_psql.py produces the same
    failures live and checks them again;
  - Microsoft's ODBC Driver 17/18 texts, which cannot be produced here: quoted from pyodbc /
    SQLAlchemy error reports (the issue named beside each) and Microsoft's error reference
    (MSSQLSERVER_18456, _4060, _229, _18452, _6005).
"""
from __future__ import annotations

import socket
import sqlite3

import pytest

from engine.classify import CAUSES, classify, message_of

RECORDED = [
    # FreeTDS, closed port on 127.0.0.1
    ("unreachable", ("08S01", "[08S01] [FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does not exist (20009) (SQLDriverConnect)")),
    # FreeTDS, a port that accepts TCP but never answers (firewall dropping the login)
    ("unreachable", ("HYT00", "[HYT00] [FreeTDS][SQL Server]Timeout expired (0) (SQLDriverConnect)")),
    # FreeTDS, host name that does not resolve (FreeTDS does not say why; doctor's DNS step does)
    ("unreachable", ("08001", "[08001] [FreeTDS][SQL Server]Unable to connect to data source (0) (SQLDriverConnect)")),
    # psqlODBC
    ("login_failed", ("08001", '[08001] connection to server at "127.0.0.1", port 57375 failed: FATAL:  password authentication failed for user "erp_reader"\n (101) (SQLDriverConnect)')),
    ("database_missing", ("08001", '[08001] connection to server at "127.0.0.1", port 57375 failed: FATAL:  database "nope" does not exist\n (101) (SQLDriverConnect)')),
    ("unreachable", ("08001", '[08001] connection to server at "127.0.0.1", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?\n (101) (SQLDriverConnect)')),
    ("dns", ("08001", '[08001] could not translate host name "nonexistent.invalid" to address: Name or service not known\n (101) (SQLDriverConnect)')),
    ("timeout", ("57014", "[57014] ERROR: canceling statement due to statement timeout;\nError while executing the query (1) (SQLExecDirectW)")),
    ("permission_denied", ("42501", "[42501] ERROR: permission denied for table t;\nError while executing the query (1) (SQLExecDirectW)")),
    ("object_missing", ("42P01", '[42P01] ERROR: relation "nosuch" does not exist;\nError while executing the query (1) (SQLExecDirectW)')),
    ("server_shutting_down", ("57P01", "[57P01] FATAL: terminating connection due to administrator command;\nThe connection has been lost (35) (SQLExecDirectW)")),
    # unixODBC driver manager
    ("driver_missing", ("01000", "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server' : file not found (0) (SQLDriverConnect)")),
    ("driver_missing", ("IM002", "[IM002] [unixODBC][Driver Manager]Data source name not found and no default driver specified (0) (SQLDriverConnect)")),
    # the driver manager in German (Windows' translated texts), also under a SQLSTATE that tells nothing
    ("driver_missing", ("01000", "[01000] [Microsoft][ODBC-Treiber-Manager] Der Datenquellenname wurde nicht gefunden, und es wurde kein Standardtreiber angegeben (0) (SQLDriverConnect)")),
    ("driver_missing", ("01000", "[01000] [unixODBC][Driver Manager]Datenquellenname nicht gefunden, und kein Standardtreiber angegeben (0) (SQLDriverConnect)")),
    ("driver_missing", ("01000", "[01000] [Microsoft][ODBC-Treiber-Manager] Der angegebene Treiber konnte aufgrund des Systemfehlers 126 nicht geladen werden: Das angegebene Modul wurde nicht gefunden. (0) (SQLDriverConnect)")),
]

MICROSOFT = [
    # pyodbc#610, vrana/adminer#945
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: [error:0A000086:SSL routines::certificate verify failed:self-signed certificate] (-1) (SQLDriverConnect)")),
    # dbt-msft/dbt-sqlserver#219 (OpenSSL 1.1 wording)
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: [error:1416F086:SSL routines:tls_process_server_certificate:certificate verify failed:self signed certificate] (-1) (SQLDriverConnect)")),
    # dbt-msft/dbt-sqlserver#267
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL Provider: The certificate chain was issued by an authority that is not trusted.\r\n (-2146893019) (SQLDriverConnect); [08001] [Microsoft][ODBC Driver 18 for SQL Server]Client unable to establish connection (-2146893019)")),
    # fisharebest/webtrees#5246 (German Windows)
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]SSL-Anbieter: Die Zertifikatkette wurde von einer nicht vertrauenswürdigen Zertifizierungsstelle ausgestellt.")),
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 17 for SQL Server]Client unable to establish connection because an error was encountered during handshakes before login. Common causes include client attempting to connect to an unsupported version of SQL Server, server too busy to accept new connections or a server-side resource limitation (memory or maximum allowed connections) on the server. (26) (SQLDriverConnect)")),
    # pyodbc#610 (title): reset during the pre-login handshake
    ("tls_certificate", ("08001", "[08001] [Microsoft][ODBC Driver 17 for SQL Server]TCP Provider: Error code 0x2746 (10054) (SQLDriverConnect)")),
    # davidcomerford/pyodbc-mssql-lambda-layer#4; MSSQLSERVER_18456
    ("login_failed", ("28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'admin'. (18456) (SQLDriverConnect)")),
    # yehoshuadimarsky/bcpandas#28: a localized server; the native error numbers still tell
    ("database_missing", ("28000", "[28000] [Microsoft][ODBC Driver 17 for SQL Server][SQL Server]用户 'sa' 登录失败。 (18456) (SQLDriverConnect); [28000] [Microsoft][ODBC Driver 17 for SQL Server][SQL Server]无法打开登录所请求的数据库 \"qq\"。登录失败。 (4060)")),
    # microsoft/msphpsql#98; MSSQLSERVER_4060
    ("database_missing", ("42000", '[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Cannot open database "DOMUS" requested by the login. The login failed. (4060) (SQLDriverConnect)')),
    # MSSQLSERVER_229
    ("permission_denied", ("42000", "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]The SELECT permission was denied on the object 'Adresse', database 'DOMUS', schema 'dbo'. (229) (SQLExecDirectW)")),
    # MSSQLSERVER_18452
    ("windows_auth_used", ("28000", "[28000] [Microsoft][ODBC Driver 17 for SQL Server][SQL Server]Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication. (18452) (SQLDriverConnect)")),
    ("windows_auth_used", ("28000", "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Login failed for user 'KUNDE\\sync'. (18456) (SQLDriverConnect)")),
    ("unreachable", ("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Login timeout expired (0) (SQLDriverConnect)")),
    ("unreachable", ("08001", "[08001] [Microsoft][ODBC Driver 18 for SQL Server]A network-related or instance-specific error has occurred while establishing a connection to SQL Server. Server is not found or not accessible. Check if instance name is correct and if SQL Server is configured to allow remote connections. For more information see SQL Server Books Online. (-1) (SQLDriverConnect)")),
    ("timeout", ("HYT00", "[HYT00] [Microsoft][ODBC Driver 18 for SQL Server]Query timeout expired (0) (SQLExecDirectW)")),
    # MSSQLSERVER_6005
    ("server_shutting_down", ("08S01", "[08S01] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]SHUTDOWN is in progress. (6005) (SQLExecDirectW)")),
    ("server_shutting_down", ("08S01", "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]Communication link failure (0) (SQLExecDirectW)")),
    ("object_missing", ("42S02", "[42S02] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Invalid object name 'dbo.Adressen'. (208) (SQLExecDirectW)")),
]


class FakePyodbcError(Exception):
    """The shape of pyodbc.Error: args = (sqlstate, message). Built here because pyodbc's own
    classes are constructed the same way; the texts are the real ones."""


@pytest.mark.parametrize("expected,args", RECORDED + MICROSOFT, ids=lambda v: v if isinstance(v, str) else None)
def test_real_driver_messages(expected, args):
    assert classify(FakePyodbcError(*args)).code == expected
    assert classify(args[1]).code == expected  # the message alone classifies the same


def test_pyodbc_exception_and_sqlalchemy_wrapper():
    import pyodbc
    import sqlalchemy.exc
    err = pyodbc.OperationalError(*RECORDED[0][1])
    assert classify(err).code == "unreachable"
    wrapped = sqlalchemy.exc.OperationalError("connect", None, err)
    assert classify(wrapped).code == "unreachable"
    assert message_of(err).startswith("[08S01] [FreeTDS][SQL Server]Unable to connect")


def test_sqlite_and_socket_errors(tmp_path):
    with pytest.raises(sqlite3.OperationalError) as info:
        sqlite3.connect(f"file:{tmp_path}/missing.sqlite?mode=ro", uri=True)
    assert classify(info.value).code == "database_missing"
    con = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as info:
        con.execute("select * from Objekt")
    assert classify(info.value).code == "object_missing"
    (tmp_path / "no.sqlite").write_bytes(b"x\n")                 # `echo x > erp.sqlite`
    with pytest.raises(sqlite3.DatabaseError) as info:
        sqlite3.connect(tmp_path / "no.sqlite").execute("select * from sqlite_master")
    assert classify(info.value).code == "database_damaged"
    assert classify("database disk image is malformed").code == "database_damaged"
    assert classify(socket.gaierror(-2, "Name or service not known")).code == "dns"
    assert classify(ConnectionRefusedError(111, "Connection refused")).code == "unreachable"


def test_psycopg_errors_classify_by_sqlstate():
    import psycopg
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=3")
    assert classify(info.value).code == "unreachable"


def test_unknown_is_unknown_and_every_cause_has_both_hints():
    assert classify("something nobody has seen").code == "unknown"
    for cause in CAUSES.values():
        assert cause.hint_en and cause.hint_de and cause.hint_en != cause.hint_de
    assert CAUSES["unreachable"].retriable and not CAUSES["login_failed"].retriable
    assert "1433" in CAUSES["unreachable"].hint_en and "trust_server_certificate" in CAUSES["tls_certificate"].hint_de
