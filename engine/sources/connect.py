"""Opening the ERP's database: one SQLAlchemy engine per SQL source, read-only, with timeouts.

`create_sql_engine(source)`:
  - url sources: `sqlalchemy.create_engine(url)` with the URL's secrets resolved. SQLite files are
    opened read-only (a missing file is an error, never silently created; relative paths are
    relative to the working directory) and read on connecting, so that a file that is no database
    fails as the connection (sqlite_file_problem names the file: missing, a directory, damaged);
    PostgreSQL sessions are read-only with a statement timeout.
  - server sources (structured SQL Server settings): `mssql+pyodbc` with `odbc_connect`. The
    password is resolved in SQLAlchemy's `do_connect` hook, at the moment each connection is made,
    so neither the engine, its URL nor its repr ever holds it. Each connection gets the query
    timeout (pyodbc's Connection.timeout) and the login timeout (SQL_ATTR_LOGIN_TIMEOUT).

pyodbc is imported only here and only for server sources; a missing unixODBC library or driver is
a `SourceError` that names the package to install. A URL whose dialect SQLAlchemy cannot load is a
`ConfigError` (exit code 3), as `validate` says of it. Connection errors themselves are SQLAlchemy's
(`sqlalchemy.exc.DBAPIError`); `source_error()` turns any of them into a classified SourceError.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from engine.classify import CAUSES, classify, hints_for, message_of
from engine.config.dialects import URL_FORM, dialect_problem, known_dialects, repeated_query_problem
from engine.config.model import SqlServer, SqlSource
from engine.config.secrets import SecretError
from engine.errors import ConfigError, SecretReferenceError, SourceError, SyncError, UsageError
from engine.redact import redact
from engine.sources import odbc

if TYPE_CHECKING:
    import sqlalchemy

    from engine.sources.odbc_dsn import OdbcEndpoint

log = logging.getLogger(__name__)

# Which package provides a driver, by the name unixODBC knows it under (odbcinst.ini).
DRIVER_PACKAGES: dict[str, str] = {
    "FreeTDS": "Debian package tdsodbc (apt-get install tdsodbc)",
    "ODBC Driver 18 for SQL Server": "Microsoft's package msodbcsql18, not in Debian: add Microsoft's "
                                     "repository packages.microsoft.com, then ACCEPT_EULA=Y apt-get install msodbcsql18",
    "ODBC Driver 17 for SQL Server": "Microsoft's package msodbcsql17, not in Debian: add Microsoft's "
                                     "repository packages.microsoft.com, then ACCEPT_EULA=Y apt-get install msodbcsql17",
    "PostgreSQL Unicode": "Debian package odbc-postgresql (apt-get install odbc-postgresql)",
    "PostgreSQL ANSI": "Debian package odbc-postgresql (apt-get install odbc-postgresql)",
}
UNIXODBC_PACKAGE = "Debian package unixodbc (apt-get install unixodbc)"


def import_pyodbc():
    """pyodbc, or a SourceError that says which package is missing."""
    try:
        import pyodbc
    except ImportError as exc:
        lib_missing = "libodbc" in str(exc)
        what = "the unixODBC library (libodbc.so.2) is not installed" if lib_missing else f"pyodbc cannot be imported: {exc}"
        raise SourceError(what, cause="driver_missing",
                          hint=f"install the {UNIXODBC_PACKAGE}" if lib_missing else "reinstall idwell-sync (pip install idwell-sync)") from None
    return pyodbc


def driver_package(driver: str) -> str:
    return DRIVER_PACKAGES.get(driver.strip("{}"), "the driver's package (it must register itself in /etc/odbcinst.ini)")


_DRIVER_MANAGER = re.compile(r"driver manager|treiber-manager|can't open lib|^\[?IM00[23]\b", re.I)
_LIB = re.compile(r"can't open lib '([^']*)'", re.I)


def missing_driver_hint(error: BaseException | str) -> tuple[str, str] | None:
    """What to do (English, German) when the ODBC driver manager could not load the driver or
    find the DSN that the connection string names: the drivers unixODBC knows (odbcinst.ini) and
    the package that brings the one named. None for another error (a Python module missing)."""
    text = message_of(error)
    if not _DRIVER_MANAGER.search(text):
        return None
    try:
        installed = import_pyodbc().drivers()
    except SourceError:
        installed = []
    have = ", ".join(installed) or "none"
    named = m.group(1) if (m := _LIB.search(text)) else None
    if named and named in installed:
        return (f"odbcinst.ini lists the driver '{named}', but unixODBC cannot load its library: reinstall "
                f"{driver_package(named)}, or correct the Driver= path of '{named}' in odbcinst.ini (`odbcinst -j` "
                "shows where it is)",
                f"odbcinst.ini führt den Treiber '{named}', aber unixODBC kann seine Bibliothek nicht laden: "
                f"{driver_package(named)} neu installieren oder den Driver=-Pfad von '{named}' in odbcinst.ini "
                "korrigieren (`odbcinst -j` zeigt, wo sie liegt)")
    packages = (f"FreeTDS: {DRIVER_PACKAGES['FreeTDS']}; ODBC Driver 18 for SQL Server: "
                f"{DRIVER_PACKAGES['ODBC Driver 18 for SQL Server']}")
    if named:
        return (f"unixODBC knows no driver '{named}': the drivers in its odbcinst.ini (`odbcinst -q -d`) are {have}; "
                f"name one of them in the connection string's DRIVER={{...}}, exactly as written there, or install "
                f"{driver_package(named)}",
                f"unixODBC kennt keinen Treiber '{named}': die Treiber in seiner odbcinst.ini (`odbcinst -q -d`) sind "
                f"{have}; einen davon genau so in DRIVER={{...}} der Verbindungszeichenfolge nennen, oder "
                f"{driver_package(named)} installieren")
    return (f"the ODBC driver manager found neither the driver nor the data source (DSN) that the connection "
            f"string names: write DRIVER={{...}} with a driver of odbcinst.ini (`odbcinst -q -d`: {have}), or a DSN "
            f"that odbc.ini defines (`odbcinst -q -s`); to install a driver: {packages}",
            f"der ODBC-Treibermanager fand weder den Treiber noch die Datenquelle (DSN), die die "
            f"Verbindungszeichenfolge nennt: DRIVER={{...}} mit einem Treiber aus odbcinst.ini (`odbcinst -q -d`: "
            f"{have}) angeben, oder einen DSN, den odbc.ini definiert (`odbcinst -q -s`); einen Treiber "
            f"installieren: {packages}")


def check_driver(driver: str) -> None:
    """Raise a SourceError naming the package when unixODBC does not know `driver`."""
    pyodbc = import_pyodbc()
    installed = pyodbc.drivers()
    if driver.strip("{}") not in installed:
        raise SourceError(f"the ODBC driver '{driver}' is not installed (installed: {', '.join(installed) or 'none'})",
                          cause="driver_missing", hint=f"install {driver_package(driver)}")


def dsn_missing_hint(at: "OdbcEndpoint") -> tuple[str, str]:
    """What to do (English, German) when the DSN a source.url connects through is not defined."""
    files = ", ".join(map(str, at.looked_in))
    return (f"define the data source '{at.dsn}' in one of the odbc.ini files unixODBC reads ({files}; `odbcinst -q -s` "
            "lists the DSNs defined), or correct source.url: a URL with a host but no /DATABASE (or with ?dsn=) "
            "connects through the DSN of that name; mssql+pyodbc://USER:PASSWORD@HOST:PORT/DATABASE?driver=... "
            "connects to the host itself",
            f"die Datenquelle '{at.dsn}' in einer der odbc.ini-Dateien definieren, die unixODBC liest ({files}; "
            "`odbcinst -q -s` listet die definierten DSNs), oder source.url korrigieren: eine URL mit Host, aber ohne "
            "/DATENBANK (oder mit ?dsn=) verbindet über den DSN dieses Namens; "
            "mssql+pyodbc://BENUTZER:PASSWORT@HOST:PORT/DATENBANK?driver=... verbindet direkt mit dem Host")


def check_dsn(at: "OdbcEndpoint") -> None:
    """Raise a SourceError when the DSN a source.url connects through is not defined, or names a
    driver unixODBC does not know (neither a driver of odbcinst.ini nor a library file)."""
    from pathlib import Path
    if at.missing:
        raise SourceError(f"source.url names the ODBC data source (DSN) '{at.dsn}', which is not defined in "
                          f"{' or '.join(map(str, at.looked_in))}",
                          cause="driver_missing", hint=dsn_missing_hint(at)[0])
    driver = dsn_driver(at).strip("{}")
    installed = import_pyodbc().drivers()
    library = "/" in driver or re.search(r"\.(so|dylib|dll)(\.\d+)*$", driver, re.I)
    if driver and driver not in installed and (not library or (Path(driver).is_absolute() and not Path(driver).is_file())):
        raise SourceError(f"DSN '{at.dsn}' ({at.dsn_file}) names the ODBC driver '{driver}', which is not installed "
                          f"(installed: {', '.join(installed) or 'none'})", cause="driver_missing",
                          hint=f"install {driver_package(driver)}, or name an installed driver in Driver= of DSN "
                               f"'{at.dsn}' in {at.dsn_file}")


def dsn_driver(at: "OdbcEndpoint") -> str:
    """The Driver= of the DSN `at` goes through ("" when it names none)."""
    from engine.sources.odbc_dsn import dsn_entry
    found = dsn_entry(at.dsn or "", [at.dsn_file] if at.dsn_file else [])
    return next((value.strip() for key, value in found[1] if key == "driver"), "") if found else ""


def create_sql_engine(source: SqlSource) -> "sqlalchemy.Engine":
    """The engine for a SQL source. Creating it does not connect; the first `connect()` does."""
    if source.server is not None:
        return _server_engine(source.server, source.query_timeout)
    if source.url is None:
        raise SourceError("the sql source has neither url nor server", cause="config")
    try:
        url = source.url.resolve_url()
    except SecretError as exc:
        raise secret_error(exc, "source.url") from None
    return _url_engine(url, source.query_timeout, source.url.references)


SQLITE_FILE_HINT = ("the SQLite file does not exist or cannot be read: check the path in source.url "
                    "(relative paths start in the directory idwell-sync runs in)",
                    "die SQLite-Datei fehlt oder ist nicht lesbar: den Pfad in source.url prüfen "
                    "(relative Pfade gelten ab dem Verzeichnis, in dem idwell-sync läuft)")
"""What to do when a SQLite source's file cannot be opened (English, German)."""


SQLITE_DIRECTORY_HINT = ("source.url names a directory: name the SQLite file itself (relative paths start in the "
                         "directory idwell-sync runs in)",
                         "source.url nennt ein Verzeichnis: die SQLite-Datei selbst angeben (relative Pfade gelten ab "
                         "dem Verzeichnis, in dem idwell-sync läuft)")
SQLITE_DAMAGED_HINT = ("check that source.url names the ERP's SQLite file, not another file; if it does, copy the file "
                       "again from the ERP (a copy cut short, or taken while the ERP wrote it, is damaged) or restore "
                       "it from a backup",
                       "prüfen, dass source.url die SQLite-Datei des ERP nennt, keine andere Datei; wenn ja, die Datei "
                       "erneut aus dem ERP kopieren (eine abgebrochene oder während des Schreibens gezogene Kopie ist "
                       "beschädigt) oder aus einer Sicherung wiederherstellen")

SQLITE_EMPTY_HINT = ("copy the ERP's SQLite file again (a copy cut short, or a file created before the export wrote "
                     "it, is empty), or check that source.url names the ERP's file",
                     "die SQLite-Datei des ERP erneut kopieren (eine abgebrochene Kopie oder eine Datei, die vor dem "
                     "Export angelegt wurde, ist leer), oder prüfen, dass source.url die Datei des ERP nennt")


def sqlite_file_problem(exc: BaseException, engine: "sqlalchemy.Engine") -> tuple[str, str, tuple[str, str]] | None:
    """(cause, what is wrong, (hint in English, in German)) when a SQLite source's file cannot be
    opened or read: missing or unreadable, a directory, not a database or damaged. None for any
    other failure, or a source that is not a SQLite file."""
    from pathlib import Path
    path = sqlite_file(engine)
    if path is None:
        return None
    if Path(path).is_dir():                     # SQLite says "disk I/O error" or "unable to open database file"
        return "database_missing", f"{path} is a directory, not an SQLite file", SQLITE_DIRECTORY_HINT
    cause = classify(exc).code
    if cause == "object_missing" and Path(path).is_file() and Path(path).stat().st_size == 0:
        # SQLite takes an empty file for an empty database: the first query finds no table
        return "database_damaged", (f"the SQLite file {path} is empty (0 bytes), so it has none of the "
                                    "queries' tables"), SQLITE_EMPTY_HINT
    if cause == "database_missing":
        return cause, f"cannot open the SQLite file {path}", SQLITE_FILE_HINT
    if cause == "database_damaged":
        said = redact(message_of(exc))[:300]
        return cause, f"the SQLite file {path} is not an SQLite database, or is damaged (SQLite said: {said})", \
            SQLITE_DAMAGED_HINT
    return None


def sqlite_file_error(exc: BaseException, what: str, engine: "sqlalchemy.Engine") -> SourceError | None:
    """sqlite_file_problem as the SourceError of `what` (e.g. "tenant 'acme': connect")."""
    problem = sqlite_file_problem(exc, engine)
    if problem is None:
        return None
    cause, text, hint = problem
    return SourceError(f"{what} failed ({cause}): {text}", cause=cause, hint=hint[0])


def url_database_hint(engine: "sqlalchemy.Engine", source: SqlSource) -> tuple[str, str] | None:
    """What to do when the database of a source given as source.url does not exist or its user may
    not connect to it (English, German): the database named in the URL, not source.database,
    which such a tenant does not have. None for structured server settings (CAUSES' hint)."""
    if source.server is not None:
        return None
    database = engine.url.database
    which = f"'{database}' " if database else ""
    return (f"the database {which}named in source.url does not exist on that server, or its user may not connect to "
            f"it: check the database name in source.url (the part after the last /), and that the user may connect "
            f"to that database and read its tables (SQL Server: a user in that database with db_datareader)",
            f"die in source.url genannte Datenbank {which}existiert auf diesem Server nicht, oder ihr Benutzer darf "
            f"sich nicht mit ihr verbinden: den Datenbanknamen in source.url prüfen (der Teil nach dem letzten /) und "
            f"ob der Benutzer sich mit dieser Datenbank verbinden und ihre Tabellen lesen darf (SQL Server: ein "
            f"Benutzer in dieser Datenbank mit db_datareader)")


def sqlite_file(engine: "sqlalchemy.Engine") -> str | None:
    """The file a SQLite engine reads, as an absolute path (None: not a SQLite file)."""
    from pathlib import Path
    from urllib.parse import unquote
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        return None
    return str(Path(unquote(database.removeprefix("file:"))).resolve())


def resolves(host: str, timeout: float = 5.0) -> bool:
    """Whether a host name resolves here (an address always does); a lookup that takes longer
    than `timeout` counts as resolving, so that a slow resolver never changes the answer."""
    import ipaddress
    import socket
    import threading
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    found: list[bool] = []

    def look_up() -> None:
        try:
            socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            found.append(True)
        except (socket.gaierror, UnicodeError):
            found.append(False)
    thread = threading.Thread(target=look_up, name="dns", daemon=True)
    thread.start()
    thread.join(timeout)
    return found[0] if found else True


def connect_error(exc: BaseException, what: str, engine: "sqlalchemy.Engine", source: SqlSource,
                  tenant_id: str | None = None) -> SyncError:
    """source_error for a connection that failed, told apart further where the driver's text
    cannot tell: a SQLite file that cannot be opened (named, with what to check) and a host name
    that does not resolve (FreeTDS says "unable to connect" for it, as for a closed port)."""
    error = source_error(exc, what, tenant_id)
    if not isinstance(error, SourceError):
        return error
    if sqlite := sqlite_file_error(exc, what, engine):
        return sqlite
    if error.cause == "database_missing" and (hint := url_database_hint(engine, source)):
        return SourceError(error.message, cause=error.cause, hint=hint[0], retriable=error.retriable)
    host, port, backend = endpoint(engine, source)
    from engine.sources.odbc_dsn import port_problem
    where = _port_at(engine, source)
    if problem := port_problem(port, where):     # the drivers say "invalid port", or connect elsewhere
        return SourceError(f"{what} failed (config): {problem}", cause="config",
                           hint=f"write the database server's TCP port (1-65535) in {where}")
    if error.cause == "unreachable" and host and not resolves(host):
        said = redact(message_of(exc))[:300]
        return SourceError(f"{what} failed (dns): the host name {host} does not resolve (the driver said: {said})",
                           cause="dns", hint=CAUSES["dns"].hint_en, retriable=CAUSES["dns"].retriable)
    if error.cause == "unreachable" and host and port and accepts_tcp(host, port):
        said = redact(message_of(exc))[:300]        # not the firewall: something answers TCP there
        return SourceError(f"{what} failed (unreachable): {host}:{port} accepts TCP connections but did not answer "
                           f"as the database server (the driver said: {said})", cause="unreachable",
                           hint=no_answer_hint(host, port, backend)[0], retriable=True)
    if error.cause == "unreachable" and host and port:
        return SourceError(error.message, cause=error.cause, hint=unreachable_hint(host, port, backend)[0],
                           retriable=error.retriable)
    return error


def _port_at(engine: "sqlalchemy.Engine", source: SqlSource) -> str:
    """Where the source's port is written: source.url, or the DSN of odbc.ini it names."""
    from engine.sources.odbc_dsn import odbc_endpoint
    at = odbc_endpoint(engine.url, None) if source.server is None else None
    return at.port_at if at is not None else ("source.port" if source.server is not None else "source.url")


def accepts_tcp(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to host:port can be made from here now."""
    import socket
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


DEFAULT_PORTS = {"postgresql": 5432, "mssql": 1433, "mysql": 3306, "mariadb": 3306, "oracle": 1521}
"""The port a URL without one connects to, by SQLAlchemy backend."""
SERVER_KINDS = {"mssql": ("SQL Server", "SQL Server"), "postgresql": ("PostgreSQL server", "PostgreSQL-Server"),
                "mysql": ("MySQL server", "MySQL-Server"), "mariadb": ("MariaDB server", "MariaDB-Server"),
                "oracle": ("Oracle server", "Oracle-Server")}
"""What the hints call the server of a backend (English, German); another: the database server."""


def server_kind(backend: str) -> tuple[str, str]:
    """The kind of server of an SQLAlchemy backend, as the hints name it (English, German)."""
    return SERVER_KINDS.get(backend, ("database server", "Datenbankserver"))


def endpoint(engine: "sqlalchemy.Engine", source: SqlSource) -> tuple[str | None, int | None, str]:
    """The host, port (the backend's default where the URL gives none) and backend the source
    connects to; host None for a file."""
    if source.server is not None:
        return source.server.host, source.server.port, "mssql"
    from engine.sources.odbc_dsn import odbc_endpoint
    backend = engine.url.get_backend_name()
    if (at := odbc_endpoint(engine.url, DEFAULT_PORTS.get(backend))) is not None:   # a DSN, odbc_connect
        return at.host, at.port, backend
    return engine.url.host, engine.url.port or DEFAULT_PORTS.get(backend), backend


def unreachable_hint(host: str, port: int, backend: str) -> tuple[str, str]:
    """What to do when no TCP connection to host:port can be made (English, German): the
    generic CAUSES['unreachable'] with the source's own host, port and kind of server."""
    en, de = server_kind(backend)
    return (f"{host}:{port} cannot be reached: the customer's IT must open TCP {port} in the firewall and NAT for the "
            f"sync server's addresses, and the {en} must accept TCP/IP connections on that address and port",
            f"{host}:{port} ist nicht erreichbar: die IT des Kunden muss TCP {port} in Firewall und NAT für die "
            f"Adressen des Sync-Servers freigeben, und der {de} muss TCP/IP-Verbindungen an dieser Adresse und diesem "
            "Port annehmen")


def no_answer_hint(host: str, port: int, backend: str = "mssql") -> tuple[str, str]:
    """What to do when host:port accepts TCP but the login gets no database's answer (English, German)."""
    en, de = ("SQL Server instance", "der SQL-Server-Instanz") if backend == "mssql" else \
        (server_kind(backend)[0], f"des {server_kind(backend)[1]}s")
    return (f"{host}:{port} accepts TCP connections but did not answer the login as the database server: check that "
            f"{port} is the port of the {en} (not of another service), and that no firewall, proxy or "
            "intrusion prevention between holds the connection without passing it on; a server that answers slowly "
            "needs a higher login_timeout",
            f"{host}:{port} nimmt TCP-Verbindungen an, hat auf die Anmeldung aber nicht als Datenbankserver geantwortet: "
            f"prüfen, dass {port} der Port {de} ist (nicht eines anderen Dienstes) und dass keine "
            "Firewall, kein Proxy und kein Intrusion-Prevention-System dazwischen die Verbindung annimmt, ohne sie "
            "weiterzuleiten; ein langsam antwortender Server braucht ein höheres login_timeout")


def for_tenant(exc: SyncError, tenant_id: str) -> SyncError:
    """`exc` (of create_sql_engine, which knows no tenant) with the tenant named first."""
    message = f"tenant '{tenant_id}': {exc.message}"
    if isinstance(exc, SourceError):
        return SourceError(message, cause=exc.cause, hint=exc.hint, retriable=exc.retriable, in_query=exc.in_query)
    if isinstance(exc, ConfigError):
        return ConfigError(exc.problems, message, hint=exc.hint)
    if isinstance(exc, SecretReferenceError):
        return SecretReferenceError(message, hint=exc.hint)
    if isinstance(exc, UsageError):
        return UsageError(message, hint=exc.hint)
    return exc


def secret_error(exc: SecretError, what: str) -> SecretReferenceError:
    """A secret the source references cannot be resolved, or its value cannot be used (a password
    FreeTDS cannot be given): a configuration problem of the machine that runs the sync or of the
    tenant (exit code 3), not a connection problem of the ERP (4)."""
    return SecretReferenceError(f"{what}: {exc}", hint=exc.hint)   # without a hint of its own: what to provide


def source_error(exc: BaseException, what: str, tenant_id: str | None = None) -> SyncError:
    """A classified SourceError for a driver exception: the cause, the driver's message, the hint
    with the tenant's own commands where `tenant_id` is given (a secret that cannot be resolved
    when the connection is made: SecretReferenceError)."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, SecretError):
        return secret_error(exc, what)
    cause = classify(exc)
    text = redact(message_of(exc))
    hint = hints_for(cause, tenant_id)[0] if tenant_id else cause.hint_en
    if cause.code == "driver_missing" and (specific := missing_driver_hint(exc)):
        hint = specific[0]
    return SourceError(f"{what} failed ({cause.code}): {text[:500]}",
                       cause=cause.code, hint=hint, retriable=cause.retriable)


def _server_engine(server: SqlServer, query_timeout: int) -> "sqlalchemy.Engine":
    import sqlalchemy as sa
    from sqlalchemy import event

    check_driver(server.driver)
    try:
        placeholder = odbc.describe_sql_server(server)   # no password: the URL and repr stay clean
    except ValueError as exc:
        raise SourceError(f"source: {exc}", cause="config") from None   # the tenant's fields, not the model's name
    url = sa.URL.create("mssql+pyodbc", query={"odbc_connect": placeholder})
    engine = sa.create_engine(url, connect_args={"timeout": server.login_timeout}, pool_pre_ping=True)

    @event.listens_for(engine, "do_connect")
    def _with_password(dialect, conn_rec, cargs, cparams):  # the secret is resolved here, per connection
        cargs[0] = odbc.sql_server_connection_string(server)

    @event.listens_for(engine, "connect")
    def _query_timeout(dbapi_connection, conn_rec):
        _set_query_timeout(dbapi_connection, query_timeout)

    return engine


def dialect_error(drivername: str, references: list[str]) -> ConfigError | None:
    """A source.url whose dialect SQLAlchemy cannot load (`postgres://`, a typo): a configuration
    problem (exit code 3), as `validate` reports it for a URL written in the tenant file; here for
    one that validate could not read, e.g. given whole by a ${env:...} reference, which is named."""
    problem = dialect_problem(drivername)
    if problem is None:
        return None
    where = f"source.url ({', '.join(references)})" if references else "source.url"
    return ConfigError([], f"{where}: {problem}",
                       hint=f"correct the part before :// in {where}: a dialect, or dialect+driver, that SQLAlchemy "
                            f"can load here ({', '.join(known_dialects())}), e.g. postgresql+psycopg2:// or mssql+pyodbc://")


def repeated_query_error(url: "sqlalchemy.URL", references: list[str]) -> ConfigError | None:
    """A query parameter the URL's dialect takes once given twice (`odbc_connect=...&odbc_connect=...`):
    a configuration problem, as `validate` reports it for a URL written in the tenant file; here for
    one a ${env:...} reference gives. Only the parameter's name is said, never the values."""
    keys = [key for key, value in url.query.items() for _ in (value if isinstance(value, tuple) else (value,))]
    problem = repeated_query_problem(url.drivername, keys)
    if problem is None:
        return None
    where = f"source.url ({', '.join(references)})" if references else "source.url"
    return ConfigError([], f"{where}: {problem}", hint=f"correct the query string (after ?) of {where}")


def _url_engine(url_text: str, query_timeout: int, references: list[str]) -> "sqlalchemy.Engine":
    import sqlalchemy as sa

    try:
        url = sa.make_url(url_text)
    except Exception:
        # The message must not repeat the URL: it may hold a resolved password.
        raise ConfigError([], "source.url is not a valid SQLAlchemy URL (after resolving its secrets)",
                          hint=f"write it as {URL_FORM}, the references resolving to its parts") from None
    if error := dialect_error(url.drivername, references) or repeated_query_error(url, references):
        raise error
    connect_args: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        url = _sqlite_read_only(url)
    elif backend == "postgresql":
        # After the URL's own options (a search_path, say), so that read-only and the timeout hold with them.
        given = url.query.get("options") or ()
        connect_args["options"] = " ".join([*([given] if isinstance(given, str) else given),
                                            f"-c default_transaction_read_only=on -c statement_timeout={int(query_timeout) * 1000}"])
    elif backend == "mssql" and url.get_driver_name() == "pyodbc" and "odbc_connect" not in url.query:
        from engine.sources.odbc_dsn import odbc_endpoint
        at = odbc_endpoint(url, None)
        if at is not None and at.dsn:           # the DSN names the driver: SQLAlchemy ignores ?driver= then
            check_dsn(at)
        else:
            check_driver(str(url.query.get("driver", "")) or "ODBC Driver 18 for SQL Server")
    try:
        engine = sa.create_engine(url, connect_args=connect_args)
    except ImportError as exc:
        raise SourceError(f"the database driver for '{url.drivername}' is not installed: {exc}",
                          cause="driver_missing", hint=CAUSES["driver_missing"].hint_en) from None
    if backend == "mssql" and url.get_driver_name() == "pyodbc":
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _query_timeout(dbapi_connection, conn_rec):
            _set_query_timeout(dbapi_connection, query_timeout)
    if backend == "sqlite":
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _read_the_header(dbapi_connection, conn_rec):
            # SQLite opens a file on its first read: a file that is no database (or is damaged at its
            # start) fails here, as a connection, not in the first entity's query
            dbapi_connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return engine


def _sqlite_read_only(url: "sqlalchemy.URL") -> "sqlalchemy.URL":
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    return url.set(database="file:" + quote(database), query={**url.query, "mode": "ro", "uri": "true"})


def _set_query_timeout(dbapi_connection, seconds: int) -> None:
    try:
        dbapi_connection.timeout = int(seconds)
    except Exception as exc:  # psqlODBC, for one, does not support it
        log.debug("driver does not take a query timeout: %s", exc)
