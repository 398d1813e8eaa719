"""`idwell-sync doctor` (and discover) for a source.url that connects through an ODBC data source
(DSN) or a raw connection string (odbc_connect): the host is the one the DSN's odbc.ini entry or
the string names, as SQLAlchemy builds the connection, never the DSN's name.

Each test writes a real odbc.ini into tmp_path and points unixODBC at it with ODBCINI; the drivers are Debian's FreeTDS
(tdsodbc) and psqlODBC (odbc-postgresql), the SQL Server a TDS listener on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from engine import cli
from pgcluster import free_port, require
from tds_listener import TdsLoginListener
from test_doctor import doctor, write_tenant

pytestmark = pytest.mark.odbc


@pytest.fixture
def odbc_ini(tmp_path, monkeypatch):
    """Writes the user's odbc.ini, where unixODBC looks for a DSN first ($ODBCINI: the driver
    manager reads it again at each connection, unlike the system file, whose place it keeps from
    its first use), from a dict of DSN -> attributes. Returns the writer, the user's and the
    system's file."""
    from engine.sources.connect import import_pyodbc
    pyodbc = import_pyodbc()
    for driver in ("FreeTDS", "PostgreSQL Unicode"):
        require(driver in pyodbc.drivers(), f"the ODBC driver '{driver}' is not installed (Debian: tdsodbc, odbc-postgresql)")
    user = tmp_path / "odbc.ini"
    system = Path(os.environ.get("ODBCSYSINI") or "/etc") / "odbc.ini"
    monkeypatch.setenv("ODBCINI", str(user))

    def write(dsns: dict[str, dict[str, object]]) -> None:
        user.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in attrs.items()) + "\n"
                                for name, attrs in dsns.items()), encoding="utf-8")
    return write, user, system


def test_a_dsn_with_server_and_port_is_checked_at_that_host_and_the_login_goes_there(tmp_path, capsys, monkeypatch,
                                                                                      odbc_ini):
    write, user, _ = odbc_ini
    monkeypatch.setenv("ACME_SQL_PW", "Lesen-2024")
    with TdsLoginListener() as listener:
        write({"domus_erp": {"Driver": "FreeTDS", "Server": "127.0.0.1", "Port": listener.port,
                             "Database": "DOMUS", "TDS_Version": "7.4"}})
        path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://idwell_reader:${env:ACME_SQL_PW}@domus_erp"})
        code, report, steps = doctor(capsys, path)
    assert steps["dns"]["status"] == "ok" and steps["dns"]["title"] == "DNS: 127.0.0.1", steps["dns"]
    assert steps["dns"]["note"] == f"the host and port are set in DSN 'domus_erp' ({user})"
    assert steps["tcp"] == {**steps["tcp"], "status": "ok", "title": f"TCP 127.0.0.1:{listener.port}"}
    assert steps["driver"]["status"] == "ok"
    assert f"through DSN 'domus_erp' ({user}) with driver 'FreeTDS'" in steps["driver"]["detail"]
    assert [(login["user"], login["database"]) for login in listener.logins] == [("idwell_reader", "DOMUS")]
    assert "Lesen-2024" not in json.dumps(report)


def test_a_dsn_with_an_address_is_checked_at_the_address_where_freetds_connects(tmp_path, capsys, monkeypatch,
                                                                                  odbc_ini):
    """FreeTDS connects to a DSN's Address, not its Server (which then only names the server):
    doctor checks the Address, and the login reaches it. Doctor had looked up the Server's name,
    which need not resolve from the sync server at all. (A DSN name of its own: FreeTDS keeps what
    it read of a DSN for the process, and another test's listener has gone.)"""
    write, user, _ = odbc_ini
    monkeypatch.setenv("ACME_SQL_PW", "Lesen-2024")
    with TdsLoginListener() as listener:
        write({"domus_by_address": {"Driver": "FreeTDS", "Server": "sql.domus.invalid", "Address": "127.0.0.1",
                                    "Port": listener.port, "Database": "DOMUS", "TDS_Version": "7.4"}})
        path = write_tenant(tmp_path, {"type": "sql",
                                       "url": "mssql+pyodbc://idwell_reader:${env:ACME_SQL_PW}@domus_by_address"})
        code, report, steps = doctor(capsys, path)
    assert steps["dns"]["status"] == "ok" and steps["dns"]["title"] == "DNS: 127.0.0.1", steps["dns"]
    assert steps["tcp"] == {**steps["tcp"], "status": "ok", "title": f"TCP 127.0.0.1:{listener.port}"}
    assert [(login["user"], login["database"]) for login in listener.logins] == [("idwell_reader", "DOMUS")]
    assert "Lesen-2024" not in json.dumps(report)


@pytest.fixture
def freetds_conf(tmp_path, monkeypatch):
    """The freetds.conf FreeTDS reads first ($FREETDSCONF), in tmp_path; no ~/.freetds.conf
    (HOME is tmp_path) and no $FREETDS of the machine's. Returns the file."""
    conf = tmp_path / "freetds.conf"
    monkeypatch.setenv("FREETDSCONF", str(conf))
    monkeypatch.delenv("FREETDS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return conf


def test_a_freetds_servername_is_checked_at_its_freetds_conf_section_and_the_login_goes_there(
        tmp_path, capsys, monkeypatch, odbc_ini, freetds_conf):
    """A FreeTDS DSN that names a server of freetds.conf (Servername=) instead of a host: doctor
    reads the host and port of that section as FreeTDS does (the first file with the section,
    names compared case-insensitively, the [global] port where the section names none), and the
    login FreeTDS sends reaches the same listener. Doctor used to skip DNS and TCP for it."""
    write, user, _ = odbc_ini
    monkeypatch.setenv("ACME_SQL_PW", "Lesen-2024")
    with TdsLoginListener() as listener:
        freetds_conf.write_text(f"[global]\n\ttds version = 7.4\n\tport = {listener.port}\n; the customer's server\n"
                                "[DOMUS-ERP-SQL]\n\thost = 127.0.0.1\n", encoding="utf-8")
        write({"domus_by_servername": {"Driver": "FreeTDS", "Servername": "domus-erp-sql", "Database": "DOMUS"}})
        path = write_tenant(tmp_path, {"type": "sql",
                                       "url": "mssql+pyodbc://idwell_reader:${env:ACME_SQL_PW}@domus_by_servername"})
        code, report, steps = doctor(capsys, path)
    assert steps["dns"]["status"] == "ok" and steps["dns"]["title"] == "DNS: 127.0.0.1", steps["dns"]
    assert steps["dns"]["note"] == (f"the host and port are set in DSN 'domus_by_servername' ({user}), the section "
                                    f"[domus-erp-sql] of {freetds_conf}")
    assert steps["tcp"] == {**steps["tcp"], "status": "ok", "title": f"TCP 127.0.0.1:{listener.port}"}
    assert [(login["user"], login["database"]) for login in listener.logins] == [("idwell_reader", "DOMUS")]
    assert "Lesen-2024" not in json.dumps(report)


def test_a_freetds_servername_no_freetds_conf_defines_skips_dns_and_tcp_naming_the_files(
        tmp_path, capsys, monkeypatch, odbc_ini, freetds_conf):
    write, user, _ = odbc_ini
    monkeypatch.setenv("ACME_SQL_PW", "x")
    freetds_conf.write_text("[another-server]\n\thost = 127.0.0.1\n", encoding="utf-8")
    write({"domus_unknown_server": {"Driver": "FreeTDS", "Servername": "domus-nowhere", "Database": "DOMUS"}})
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://reader:${env:ACME_SQL_PW}@domus_unknown_server"})
    code, text = doctor(capsys, path, fmt="text")
    files = f"{freetds_conf} or {tmp_path}/.freetds.conf or /etc/freetds/freetds.conf or /usr/local/etc/freetds.conf"
    why = (f"the host is set in DSN 'domus_unknown_server' ({user}), which names the FreeTDS server 'domus-nowhere' "
           f"(Servername=), which no freetds.conf defines with a host ({files})")
    assert f"[skip]  2. DNS: not checked: {why}" in text, text
    assert f"[skip]  3. TCP: not checked: {why}" in text


def test_a_freetds_servername_takes_host_port_or_instance_from_the_first_file_with_its_section(tmp_path, freetds_conf):
    """The connection string's own Port counts before the section's; a section with an instance
    and no port is looked up through SQL Server Browser (no TCP port to check); a section in
    ~/.freetds.conf counts only where $FREETDSCONF's file has none."""
    from engine.sources.odbc_dsn import string_endpoint
    freetds_conf.write_text("[global]\n\tport = 1500\n[erp]\n\thost = 10.0.0.9\n\tport = 1444\n"
                            "# an instance\n[named]\n\thost = sql.example\n\tinstance = DOMUS\n", encoding="utf-8")
    (tmp_path / ".freetds.conf").write_text("[erp]\n\thost = 10.9.9.9\n[home-only]\n\thost = 10.0.0.10\n",
                                            encoding="utf-8")
    at = string_endpoint("Driver={FreeTDS};Servername=ERP;Database=DOMUS", 1433)
    assert (at.host, at.port, at.port_at) == ("10.0.0.9", 1444, f"the section [ERP] of {freetds_conf}")
    at = string_endpoint("Driver={FreeTDS};Servername=erp;Port=1555;Database=DOMUS", 1433)
    assert (at.host, at.port, at.port_at) == ("10.0.0.9", 1555, "source.url")
    at = string_endpoint("Driver={FreeTDS};Servername=named", 1433)
    assert (at.host, at.port) == ("sql.example", None)
    assert at.unknown == (f"the section [named] of {freetds_conf} names the instance sql.example\\DOMUS without a "
                          "port: its port is looked up through SQL Server Browser (UDP 1434)")
    at = string_endpoint("Driver={FreeTDS};Servername=home-only", 1433)      # no [global] port there: the default
    assert (at.host, at.port, at.where) == ("10.0.0.10", 1433, f"the section [home-only] of {tmp_path}/.freetds.conf")


@pytest.mark.parametrize("text, host, port", [
    ("Driver={ODBC Driver 18 for SQL Server};Server=sql.example,1433;Address=10.0.0.5,1500;Database=DOMUS",
     "10.0.0.5", 1500),
    ("Driver={ODBC Driver 18 for SQL Server};Server=sql.example;Addr=tcp:10.0.0.6;Database=DOMUS", "10.0.0.6", 1433),
    ("Driver={FreeTDS};Server=sql.example;Address=10.0.0.7;Database=DOMUS", "sql.example", 1433),
    ("Driver={PostgreSQL Unicode};Servername=pg.example;Address=10.0.0.8;Port=5433", "pg.example", 5433)])
def test_an_address_in_a_connection_string_counts_where_the_driver_reads_it(text, host, port):
    """Microsoft's drivers connect to Address (or Addr) before Server; FreeTDS reads Address only
    from a DSN, psqlODBC not at all (their Server or Servername stays the host)."""
    from engine.sources.odbc_dsn import string_endpoint
    at = string_endpoint(text, 1433)
    assert (at.host, at.port) == (host, port)


def test_a_dsn_that_names_no_host_skips_dns_and_tcp_and_says_where_the_host_is_set(tmp_path, capsys, monkeypatch,
                                                                                   odbc_ini):
    write, user, _ = odbc_ini
    write({"mydsn": {"Driver": "PostgreSQL Unicode", "Database": "erp"}})
    monkeypatch.setenv("ACME_SQL_PW", "x")
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://reader:${env:ACME_SQL_PW}@mydsn"})
    code, text = doctor(capsys, path, fmt="text")
    why = (f"the host is set in DSN 'mydsn' ({user}), which does not name one (no Server=, Host= or "
           "Servername=)")
    assert f"[skip]  2. DNS: not checked: {why}" in text, text
    assert f"[skip]  3. TCP: not checked: {why}" in text
    assert "does not resolve" not in text
    assert "[ok  ]  4. driver / Treiber: mssql+pyodbc (module pyodbc), through DSN 'mydsn'" in text


def test_a_dsn_that_is_not_defined_fails_naming_the_odbc_ini_files(tmp_path, capsys, monkeypatch, odbc_ini):
    write, user, system = odbc_ini
    write({"other": {"Driver": "FreeTDS", "Server": "127.0.0.1"}})
    monkeypatch.setenv("ACME_SQL_PW", "x")
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://reader:${env:ACME_SQL_PW}@mydsn"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and next(s for s in report["steps"] if s["status"] == "fail")["name"] == "dns"
    assert steps["dns"]["detail"] == f"DSN 'mydsn' is not defined in {user} or {system}"
    assert f"define the data source 'mydsn' in one of the odbc.ini files unixODBC reads ({user}, {system};" \
        in steps["dns"]["hint_en"]
    assert f"({user}, {system};" in steps["dns"]["hint_de"]
    assert steps["tcp"]["status"] == steps["driver"]["status"] == "skip"
    assert steps["driver"]["detail"] == "not run: DSN 'mydsn' is not defined (see DNS)"
    # discover (as plan and run) stops before connecting, with the same advice
    code = cli.main(["discover", str(path)])
    err = capsys.readouterr().err
    assert code == 4 and (f"tenant 'acme': source.url names the ODBC data source (DSN) 'mydsn', which is not defined "
                          f"in {user} or {system}") in err, err
    assert f"odbc.ini files unixODBC reads ({user}, {system};" in err


def test_odbc_connect_is_checked_at_the_server_and_port_of_its_connection_string(tmp_path, capsys, monkeypatch,
                                                                                 odbc_ini):
    monkeypatch.setenv("ACME_SQL_PW", "x")
    closed = free_port()
    attributes = "Driver={PostgreSQL Unicode};Servername=127.0.0.1;Port=5432;Database=test;Uid=postgres;Pwd="
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc:///?odbc_connect="
                                   + quote(attributes, safe="") + "${env:ACME_SQL_PW}"})
    code, report, steps = doctor(capsys, path)
    assert steps["dns"]["title"] == "DNS: 127.0.0.1" and steps["dns"]["status"] == "ok"
    assert steps["tcp"] == {**steps["tcp"], "status": "ok", "title": "TCP 127.0.0.1:5432"}
    attributes = f"Driver={{FreeTDS}};Server=127.0.0.1,{closed};Database=DOMUS;Uid=reader;Pwd="
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc:///?odbc_connect="
                                   + quote(attributes, safe="") + "${env:ACME_SQL_PW}"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and steps["tcp"]["title"] == f"TCP 127.0.0.1:{closed}" and steps["tcp"]["status"] == "fail"
    assert f"nothing listens on 127.0.0.1:{closed}" in steps["tcp"]["detail"]


@pytest.mark.parametrize("driver, status", [("Acme ODBC Driver 99", "fail"), ("libtdsodbc.so", "ok"),
                                            ("/nowhere/libacmeodbc.so", "fail")])
def test_the_driver_step_checks_the_driver_the_dsn_names(tmp_path, capsys, monkeypatch, odbc_ini, driver, status):
    """A DSN names its driver: a name of odbcinst.ini, or a library unixODBC loads (a bare file name
    is looked up on the library path)."""
    write, user, _ = odbc_ini
    write({"mydsn": {"Driver": driver, "Server": "127.0.0.1", "Port": free_port()}})
    monkeypatch.setenv("ACME_SQL_PW", "x")
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://reader:${env:ACME_SQL_PW}@mydsn"})
    code, report, steps = doctor(capsys, path)
    assert steps["tcp"]["status"] == "fail"             # nothing listens there: the driver step runs still
    assert steps["driver"]["status"] == status, steps["driver"]
    if status == "fail":
        assert steps["driver"]["detail"].startswith(f"DSN 'mydsn' ({user}) names the ODBC driver '{driver}', "
                                                    "which is not installed (installed: FreeTDS, ")
        assert f"in Driver= of DSN 'mydsn' in {user}" in steps["driver"]["hint_en"]


@pytest.mark.parametrize("entry", [
    b"Description = Datenbank f\xfcr die Buchhaltung\nDriver = PostgreSQL Unicode\nServername = 127.0.0.1\n",
    b"Driver = PostgreSQL Unicode\nthis line names no attribute\nServername = 127.0.0.1\n",
    b"Driver = PostgreSQL Unicode\n   Servername = 127.0.0.1\n   Port = 5432\n",
], ids=["latin-1", "line-without-equals", "indented"])
def test_a_dsn_that_unixodbc_reads_is_found_whatever_else_its_odbc_ini_holds(tmp_path, capsys, monkeypatch, odbc_ini,
                                                                           entry):
    """An odbc.ini written in Latin-1 (a German description), with a line that is no attribute, or
    with indented attributes: unixODBC reads the DSN (a connection through it reaches the
    PostgreSQL server), and so does doctor, at the DSN's host and port."""
    from engine.sources.connect import import_pyodbc
    _, user, _ = odbc_ini
    user.write_bytes(b"[pgdsn]\n" + entry + b"Port = 5432\nDatabase = test\n")
    with import_pyodbc().connect("DSN=pgdsn;UID=postgres;PWD=x") as con:      # unixODBC finds it
        assert con.execute("SELECT current_database()").fetchone()[0] == "test"
    monkeypatch.setenv("ACME_SQL_PW", "x")
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc://postgres:${env:ACME_SQL_PW}@pgdsn"})
    code, report, steps = doctor(capsys, path)
    assert steps["dns"]["status"] == "ok" and steps["dns"]["title"] == "DNS: 127.0.0.1", steps["dns"]
    assert steps["tcp"] == {**steps["tcp"], "status": "ok", "title": "TCP 127.0.0.1:5432"}
    assert steps["driver"]["status"] == "ok", steps["driver"]
    cli.main(["plan", str(path), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}"])   # not stopped at the DSN
    assert "is not defined" not in capsys.readouterr().err


@pytest.mark.parametrize("attributes", ["Driver={FreeTDS};Server=127.0.0.1;Port=²;Database=DOMUS;Uid=reader;Pwd=",
                                        "Driver={FreeTDS};Server=127.0.0.1,¹⁴³³;Database=DOMUS;Uid=reader;Pwd="])
def test_a_port_of_other_digits_than_0_to_9_is_no_port_and_no_internal_error(tmp_path, capsys, monkeypatch, odbc_ini,
                                                                              attributes):
    """A port written with a superscript digit (a typo str.isdigit() lets pass, int() does not take)
    is not a port: doctor and plan go on with the default port instead of stopping with an
    internal error (exit 70)."""
    monkeypatch.setenv("ACME_SQL_PW", "Geheim-77")
    path = write_tenant(tmp_path, {"type": "sql", "url": "mssql+pyodbc:///?odbc_connect="
                                   + quote(attributes, safe="") + "${env:ACME_SQL_PW}"})
    code, report, steps = doctor(capsys, path)
    assert code == 1 and steps["tcp"]["title"] == "TCP 127.0.0.1:1433", steps["tcp"]
    code = cli.main(["plan", str(path), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}"])
    err = capsys.readouterr().err
    assert code == 4 and "internal error" not in err and "Geheim-77" not in err, err


@pytest.mark.parametrize("given", ["url", "odbc_connect", "dsn"])
def test_a_port_above_65535_is_named_as_no_port_where_it_is_written(tmp_path, capsys, monkeypatch, odbc_ini, given):
    """A port above 65535 (a typo: 70000 for 7000) in the URL, in odbc_connect's Server=host,port or
    in a DSN's Port=: a socket takes it modulo 65536 and reaches another port (doctor had said
    "connection refused: nothing listens", as if a firewall were to open), the drivers refuse it in
    their own words. doctor's TCP step and plan say it is no port and where to correct it."""
    write, user, _ = odbc_ini
    monkeypatch.setenv("ACME_SQL_PW", "Geheim-77")
    url, where = {
        "url": ("postgresql+psycopg://postgres:${env:ACME_SQL_PW}@127.0.0.1:70000/test", "source.url"),
        "odbc_connect": ("mssql+pyodbc:///?odbc_connect=" + quote("Driver={FreeTDS};Server=127.0.0.1,70000;"
                                                                   "Database=DOMUS;Uid=reader;Pwd=", safe="")
                         + "${env:ACME_SQL_PW}", "source.url"),
        "dsn": ("mssql+pyodbc://postgres:${env:ACME_SQL_PW}@pgdsn", f"the DSN 'pgdsn' in {user}")}[given]
    write({"pgdsn": {"Driver": "PostgreSQL Unicode", "Servername": "127.0.0.1", "Port": 70000, "Database": "test"}})
    path = write_tenant(tmp_path, {"type": "sql", "url": url})
    said = f"port 70000 is no TCP port (1-65535): correct it in {where}"
    code, report, steps = doctor(capsys, path)
    assert code == 1 and steps["tcp"] == {**steps["tcp"], "status": "fail", "title": "TCP 127.0.0.1:70000",
                                          "detail": said}, steps["tcp"]
    code = cli.main(["plan", str(path), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}"])
    err = capsys.readouterr().err
    assert code == 4 and f"tenant 'acme': connect failed (config): {said}" in err, err
    assert "Geheim-77" not in err + json.dumps(report)
