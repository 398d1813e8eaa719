"""The ODBC connection-string builder: escaping, per-driver attributes, secrets kept out of text."""
from __future__ import annotations

import re

import pytest

from engine.config.model import SqlServer, SqlSource
from engine.config.secrets import Secret
from engine.errors import SourceError
from engine.redact import redact
from engine.sources import odbc
from engine.sources.connect import check_driver, create_sql_engine, source_error
from pgcluster import free_port, require

HOSTILE = ["p;a}r{t =1", "}", "{", "{}", "a}}b", "x=y", " lead", "trail ", "semi;colon", "tab\tin", "ü€ß;}"]


def parse_connection_string(text: str) -> dict[str, str]:
    """The ODBC grammar (as psqlODBC and FreeTDS read it), as an independent oracle."""
    out, i = {}, 0
    while i < len(text):
        eq = text.index("=", i)
        key, i = text[i:eq], eq + 1
        if i < len(text) and text[i] == "{":
            value, i = [], i + 1
            while True:
                if text[i] == "}":
                    if i + 1 < len(text) and text[i + 1] == "}":
                        value.append("}")
                        i += 2
                        continue
                    i += 1
                    break
                value.append(text[i])
                i += 1
            out[key] = "".join(value)
        else:
            end = text.find(";", i)
            end = len(text) if end < 0 else end
            out[key], i = text[i:end], end
        if i < len(text):
            assert text[i] == ";", f"garbage after value at {i}: {text!r}"
            i += 1
    return out


def server(**kw) -> SqlServer:
    base = dict(host="erp.example.de", database="DOMUS", username="idwell_sync", password=Secret("${env:T_ODBC_PW}"))
    return SqlServer(**{**base, **kw})


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_survive_a_round_trip(value):
    text = odbc.format_connection_string({"Driver": "PostgreSQL Unicode", "PWD": value, "UID": "u"})
    assert parse_connection_string(text) == {"Driver": "PostgreSQL Unicode", "PWD": value, "UID": "u"}


def test_plain_values_are_written_as_is_and_specials_braced_with_doubled_closing_brace():
    assert odbc.escape_value("sync_reader") == "sync_reader"
    assert odbc.escape_value("p;a}r{t =1") == "{p;a}}r{t =1}"
    assert odbc.escape_value(" x") == "{ x}"
    assert odbc.escape_value(1433) == "1433"
    with pytest.raises(ValueError):
        odbc.escape_value("a\x00b")
    with pytest.raises(ValueError):
        odbc.format_connection_string({"PWD;x": "a"})


def test_driver_18_string(monkeypatch):
    monkeypatch.setenv("T_ODBC_PW", "Ge;heim}")
    text = odbc.sql_server_connection_string(server(trust_server_certificate=True, host_name_in_certificate="sql01.kunde.local"))
    assert text == ("Driver={ODBC Driver 18 for SQL Server};Server=erp.example.de,1433;Database=DOMUS;UID=idwell_sync;"
                    "PWD={Ge;heim}}};Encrypt=yes;TrustServerCertificate=yes;HostNameInCertificate=sql01.kunde.local;"
                    "ApplicationIntent=ReadOnly")


def test_driver_17_knows_no_strict_encryption(monkeypatch):
    monkeypatch.setenv("T_ODBC_PW", "x")
    assert "Encrypt=no" in odbc.sql_server_connection_string(server(driver="ODBC Driver 17 for SQL Server", encrypt="no"))
    with pytest.raises(ValueError, match="strict needs ODBC Driver 18"):
        odbc.sql_server_connection_string(server(driver="ODBC Driver 17 for SQL Server", encrypt="strict"))


def test_freetds_uses_its_own_attribute_names(monkeypatch):
    monkeypatch.setenv("T_ODBC_PW", "pw")
    attrs = parse_connection_string(odbc.sql_server_connection_string(server(driver="FreeTDS", port=1500, tds_version="7.3")))
    assert attrs == {"Driver": "FreeTDS", "Server": "erp.example.de", "Port": "1500", "Database": "DOMUS",
                     "UID": "idwell_sync", "PWD": "pw", "TDS_Version": "7.3", "Encryption": "require",
                     "ClientCharset": "UTF-8", "ApplicationIntent": "ReadOnly"}
    no = parse_connection_string(odbc.sql_server_connection_string(server(driver="FreeTDS", encrypt="no")))
    assert no["Encryption"] == "request"


def test_description_and_engine_never_hold_the_password(monkeypatch):
    monkeypatch.setenv("T_ODBC_PW", "p;a}r{t =1")
    s = server(driver="FreeTDS")
    assert "r{t" not in odbc.describe_sql_server(s) and "PWD=***" in odbc.describe_sql_server(s)
    assert "r{t" not in repr(s) and "${env:T_ODBC_PW}" in repr(s)
    assert redact("UID=a;PWD={p;a}}r{t =1};Database=x") == "UID=a;PWD=***;Database=x"
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    engine = create_sql_engine(SqlSource(type="sql", server=s))
    assert "r{t" not in repr(engine) and "r{t" not in str(engine.url)


def test_secret_is_resolved_when_connecting_not_when_the_engine_is_made(monkeypatch):
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.delenv("T_ODBC_PW", raising=False)
    engine = create_sql_engine(SqlSource(type="sql", server=server(driver="FreeTDS", host="127.0.0.1", port=_closed_port())))
    with pytest.raises(Exception, match=r"environment variable T_ODBC_PW is not set"):
        engine.connect()


def test_failed_connect_through_freetds_does_not_show_the_password(monkeypatch):
    """(A password FreeTDS can be given: one with `}` as well is refused before connecting.)"""
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("T_ODBC_PW", "p;a{r=t 1")
    port = _closed_port()
    engine = create_sql_engine(SqlSource(type="sql", server=server(driver="FreeTDS", host="127.0.0.1", port=port, login_timeout=5)))
    with pytest.raises(Exception) as info:
        engine.connect()
    exc = info.value
    texts = [str(exc), repr(exc), repr(getattr(exc, "orig", None)), repr(exc.args)]
    assert not [t for t in texts if "a{r" in t or "p;a" in t]
    err = source_error(exc, "tenant 'acme': connect")
    assert err.cause == "unreachable" and "1433" in err.hint and "a{r" not in str(err)
    assert "Adaptive Server is unavailable" in str(err)


def test_missing_driver_names_where_it_comes_from():
    require(_drivers() is not None, "pyodbc cannot load unixODBC")
    name = "ODBC Driver 18 for SQL Server"
    if name in _drivers():
        pytest.skip(f"{name} is installed on this machine")
    with pytest.raises(SourceError) as info:
        check_driver(name)
    assert info.value.cause == "driver_missing"
    assert "msodbcsql18" in info.value.hint and "packages.microsoft.com" in info.value.hint
    with pytest.raises(SourceError) as info:
        create_sql_engine(SqlSource(type="sql", server=server(driver="ODBC Driver 18 for SQL Server")))
    assert "'ODBC Driver 18 for SQL Server' is not installed" in str(info.value)


def _drivers() -> list[str]:
    import pyodbc
    return pyodbc.drivers()


def _closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def test_parse_oracle_itself_rejects_an_unescaped_brace_value():
    with pytest.raises((AssertionError, IndexError, ValueError)):
        parse_connection_string("PWD={a}b};UID=x")
    assert re.search(r"PWD=\{", odbc.format_connection_string({"PWD": "a}b"}))


def test_missing_unixodbc_library_names_the_debian_package(monkeypatch):
    # unixODBC cannot be uninstalled for a test; this is the ImportError Python raises without it.
    import builtins
    import sys
    real_import = builtins.__import__

    def without_libodbc(name, *args, **kwargs):
        if name == "pyodbc":
            raise ImportError("libodbc.so.2: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pyodbc", raising=False)
    monkeypatch.setattr(builtins, "__import__", without_libodbc)
    with pytest.raises(SourceError) as info:
        create_sql_engine(SqlSource(type="sql", server=server(driver="FreeTDS")))
    assert info.value.cause == "driver_missing"
    assert "unixODBC library (libodbc.so.2) is not installed" in info.value.message
    assert "apt-get install unixodbc" in info.value.hint


def test_a_host_name_that_does_not_resolve_is_reported_as_dns_not_as_a_firewall(monkeypatch):
    """FreeTDS says "unable to connect" both for a closed port and for a name that does not
    resolve; the run tells the two apart (as doctor does) so that the customer's IT is not sent
    to open a firewall for a misspelt host name."""
    import datetime as dt
    from engine.sources.sql import SqlExtractor
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("T_ODBC_PW", "p;a{r=t 1")
    for host, cause in (("sql.nosuch.invalid", "dns"), ("127.0.0.1", "unreachable")):
        source = SqlSource(type="sql", server=server(driver="FreeTDS", host=host, port=_closed_port(), login_timeout=5))
        extractor = SqlExtractor(source, "acme", run_date=dt.date(2026, 6, 1))
        with pytest.raises(SourceError) as info:
            extractor._connection()
        extractor.close()
        assert info.value.cause == cause, str(info.value)
        if cause == "dns":
            assert "sql.nosuch.invalid does not resolve" in str(info.value) and "firewall" not in info.value.hint
        else:
            assert "firewall" in info.value.hint


FREETDS_PASSWORDS = ["semi;colon", "a}b", "}", "x=y", " lead", "trail ", "tab\tin", "a{b", "{lead", "ü€ß}",
                     "q'\"@%=/:?#", "plain"]


@pytest.mark.parametrize("password", FREETDS_PASSWORDS)
def test_freetds_sends_the_password_as_it_is(monkeypatch, password):
    """The login FreeTDS (Debian's tdsodbc) sends, read by a listener on 127.0.0.1: FreeTDS does not
    undouble `}}` inside braces, so `a}b` arrived as `a}}b` and the login failed."""
    import sqlalchemy as sa
    from tds_listener import TdsLoginListener
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("T_ODBC_PW", password)
    with TdsLoginListener() as listener:
        source = SqlSource(type="sql", server=server(driver="FreeTDS", host="127.0.0.1", port=listener.port,
                                                     database="DOMUS_KÜ", encrypt="no", login_timeout=5))
        engine = create_sql_engine(source)
        with pytest.raises(sa.exc.DBAPIError):
            engine.connect()
        engine.dispose()
    assert listener.logins == [{"user": "idwell_sync", "password": password, "database": "DOMUS_KÜ"}]


def test_freetds_refuses_a_password_no_freetds_string_can_carry(monkeypatch):
    """`}` in a value that must be braced: FreeTDS 1.3 keeps `}}`, 1.4 reads `}`; nothing is sent
    (a wrong password each night would lock the SQL login), and the message says why, not what: a
    secret whose value cannot be used (exit code 3), not an ERP that cannot be reached (4)."""
    from engine.errors import ExitCode, SecretReferenceError
    from engine.sources.sql import SqlExtractor
    from tds_listener import TdsLoginListener
    import datetime as dt
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    monkeypatch.setenv("T_ODBC_PW", "p;a}r{t =1")
    with TdsLoginListener() as listener:
        source = SqlSource(type="sql", server=server(driver="FreeTDS", host="127.0.0.1", port=listener.port,
                                                     encrypt="no", login_timeout=5))
        extractor = SqlExtractor(source, "acme", run_date=dt.date(2026, 6, 1))
        with pytest.raises(SecretReferenceError) as info:
            extractor._connection()
        extractor.close()
    assert listener.logins == []
    assert info.value.exit_code == ExitCode.CONFIG
    text = str(info.value)
    assert "tenant 'acme': connect: source.password ${env:T_ODBC_PW} cannot be given to FreeTDS" in text
    assert "FreeTDS versions read such a password differently" in text
    assert "ODBC Driver 18" in info.value.hint and "without '}'" in info.value.hint and "r{t" not in text


def test_a_password_with_a_nul_character_names_its_reference(monkeypatch):
    monkeypatch.setenv("T_ODBC_PW", "x")            # an environment variable cannot hold NUL; a file can
    for driver in ("FreeTDS", "ODBC Driver 18 for SQL Server"):
        problem = odbc.password_problem(server(driver=driver), "ab\x00cd")
        assert problem is not None and problem[0] == ("source.password ${env:T_ODBC_PW} holds a NUL character, "
                                                      "which no ODBC connection string can carry")
    assert odbc.password_problem(server(driver="ODBC Driver 18 for SQL Server"), "p;a}r{t =1") is None
    assert odbc.password_problem(server(driver="FreeTDS"), "p;a{r=t 1") is None


UNSENDABLE = "Wq7;Zk}Xv{9"
"""A password FreeTDS cannot be given, of letters that no message holds by chance."""


def _pieces(secret: str, size: int = 3) -> set[str]:
    return {secret[i:i + size] for i in range(len(secret) - size + 1)}


@pytest.mark.parametrize("command", [("run",), ("run", "--json"), ("plan",), ("discover",)])
def test_run_plan_and_discover_stop_with_exit_3_for_a_password_freetds_cannot_be_given(tmp_path, command):
    """Through the command line, against a listener that reads what FreeTDS would send: exit 3,
    the tenant and the password's reference named with why and what to do, nothing sent, and no
    three characters of the password in the output, the plan file, or the state store."""
    import subprocess
    import sys
    from pathlib import Path
    import yaml
    from tds_listener import TdsLoginListener
    require("FreeTDS" in _drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "tenants").mkdir()
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "domus-sql.yaml").write_bytes((repo / "mappings" / "domus-sql.yaml").read_bytes())
    with TdsLoginListener() as listener:
        doc = {"id": "kunde", "name": "Kunde", "mapping": "domus-sql",
               "source": {"type": "sql", "host": "127.0.0.1", "port": listener.port, "database": "DOMUS",
                          "username": "idwell_reader", "password": "${env:DOMUS_PASSWORD}", "driver": "FreeTDS",
                          "encrypt": "no", "login_timeout": 5},
               "target": {"type": "local", "path": "var/portal.sqlite"}}
        tenant = tmp_path / "tenants" / "kunde.yaml"
        tenant.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "engine", command[0], str(tenant), *command[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOMUS_PASSWORD": UNSENDABLE})
    assert listener.logins == []
    assert done.returncode == 3, done.stderr
    said = done.stderr + done.stdout
    assert "tenant 'kunde'" in said and "source.password ${env:DOMUS_PASSWORD} cannot be given to FreeTDS" in said
    assert "FreeTDS versions read such a password differently" in said and "nothing was sent to the server" in said
    assert "what to do: change the SQL login's password to one without '}'" in done.stderr
    assert "ODBC Driver 18 for SQL Server" in done.stderr
    assert "Traceback" not in done.stderr and "(unknown)" not in said
    written = [f for f in tmp_path.rglob("*") if f.is_file() and f.suffix != ".yaml"]
    assert not (tmp_path / "var" / "plans" / "kunde.json").exists()
    for text in [said] + [f.read_bytes().decode("utf-8", "replace") for f in written]:
        assert not [piece for piece in _pieces(UNSENDABLE) if piece in text]
    if command[0] == "run":          # the failed run is in the history, for `status` in the morning
        history = subprocess.run([sys.executable, "-m", "engine", "history", str(tenant)], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert "failed" in history.stdout and "${env:DOMUS_PASSWORD} cannot be given to FreeTDS" in history.stdout


@pytest.mark.parametrize("attributes, said, named", [
    ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=127.0.0.1", "Can't open lib 'ODBC Driver 18 for SQL Server'",
     "unixODBC knows no driver 'ODBC Driver 18 for SQL Server': the drivers in its odbcinst.ini (`odbcinst -q -d`) "
     "are {have}; name one of them in the connection string's DRIVER={{...}}, exactly as written there, or install "
     "Microsoft's package msodbcsql18"),
    ("DSN=idwell_no_such_dsn", "Data source name not found",
     "the ODBC driver manager found neither the driver nor the data source (DSN) that the connection string names: "
     "write DRIVER={{...}} with a driver of odbcinst.ini (`odbcinst -q -d`: {have}), or a DSN that odbc.ini defines "
     "(`odbcinst -q -s`); to install a driver: FreeTDS: Debian package tdsodbc (apt-get install tdsodbc); ODBC "
     "Driver 18 for SQL Server: Microsoft's package msodbcsql18"),
])
def test_a_connection_string_naming_a_driver_or_dsn_unixodbc_lacks_says_which_drivers_there_are(attributes, said, named):
    """A source `url` with odbc_connect is not checked before it connects (source.server is):
    unixODBC's own error comes back, and the hint names the drivers odbcinst.ini has and how to
    install one, not the generic advice."""
    require(_drivers() is not None, "pyodbc cannot load unixODBC")
    if "ODBC Driver 18 for SQL Server" in _drivers():
        pytest.skip("ODBC Driver 18 for SQL Server is installed on this machine")
    from urllib.parse import quote
    engine = create_sql_engine(SqlSource(type="sql", url=Secret("mssql+pyodbc:///?odbc_connect=" + quote(attributes))))
    with pytest.raises(Exception) as info:
        engine.connect()
    err = source_error(info.value, "tenant 'acme': connect", "acme")
    assert err.cause == "driver_missing" and said in err.message
    assert err.hint.startswith(named.format(have=", ".join(_drivers()))), err.hint


GERMAN_IM002 = ("[IM002] [Microsoft][ODBC-Treiber-Manager] Der Datenquellenname wurde nicht gefunden, und es wurde "
                "kein Standardtreiber angegeben (0) (SQLDriverConnect)")


@pytest.mark.parametrize("error", [
    ("IM002", GERMAN_IM002),
    ("01000", "[01000] [unixODBC][Driver Manager]Datenquellenname nicht gefunden, und kein Standardtreiber angegeben "
              "(0) (SQLDriverConnect)"),
    ("IM003", "[IM003] [Microsoft][ODBC-Treiber-Manager] Der angegebene Treiber konnte aufgrund des Systemfehlers 126 "
              "nicht geladen werden: Das angegebene Modul wurde nicht gefunden. (ODBC Driver 18 for SQL Server, "
              "C:\\Windows\\system32\\msodbcsql18.dll). (0) (SQLDriverConnect)"),
], ids=["IM002", "state-01000", "IM003"])
def test_the_driver_managers_german_texts_get_the_specific_hint(error):
    import pyodbc
    exc = pyodbc.InterfaceError(*error)
    err = source_error(exc, "tenant 'acme': connect", "acme")
    assert err.cause == "driver_missing"
    assert err.hint.startswith("the ODBC driver manager found neither the driver nor the data source (DSN)"), err.hint
    assert "tdsodbc" in err.hint and "msodbcsql18" in err.hint
    assert ", ".join(pyodbc.drivers()) in err.hint
