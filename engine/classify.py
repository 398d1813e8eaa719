"""Why a connection or a query failed: driver errors mapped to a small set of causes.

`classify(error)` takes an exception (pyodbc, SQLAlchemy, psycopg, sqlite3, OSError) or a message
and returns a `Cause`: a stable code, what to do in English and German, and whether a retry
(the next night's run) can help. The rules read SQLSTATEs and the message patterns of Microsoft's
ODBC Driver 17/18 for SQL Server, FreeTDS, psqlODBC, psycopg and sqlite; the tests hold the real
texts. Doctor and run share this table, so a failure reads the same in both.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    code: str
    hint_en: str
    hint_de: str
    retriable: bool = False

    @property
    def hint(self) -> str:
        return f"{self.hint_en} / {self.hint_de}"


CAUSES: dict[str, Cause] = {c.code: c for c in (
    Cause("driver_missing",
          "install the ODBC driver named in the tenant's source (Debian: unixodbc, and tdsodbc for FreeTDS; "
          "Microsoft's msodbcsql18 comes from Microsoft's package repository, packages.microsoft.com)",
          "den im Tenant genannten ODBC-Treiber installieren (Debian: unixodbc, für FreeTDS tdsodbc; "
          "msodbcsql18 kommt aus Microsofts Paketquelle packages.microsoft.com)"),
    Cause("dns",
          "the host name does not resolve: check the spelling of source.host (or of the host in source.url, or in "
          "the DSN's odbc.ini entry for a DSN), or ask the customer's IT "
          "for the public DNS name or IP address of the SQL Server",
          "der Hostname lässt sich nicht auflösen: source.host prüfen (bzw. den Host in source.url oder im "
          "odbc.ini-Eintrag des DSN) oder die IT des Kunden nach dem "
          "öffentlichen DNS-Namen bzw. der IP-Adresse des SQL Servers fragen", retriable=True),
    Cause("unreachable",
          "the server cannot be reached: the customer's IT must open the database server's TCP port (SQL Server: "
          "1433, PostgreSQL: 5432, or the configured port) in the firewall and NAT for the sync server's addresses, "
          "and the database server must accept TCP/IP connections",
          "der Server ist nicht erreichbar: die IT des Kunden muss den TCP-Port des Datenbankservers (SQL Server: "
          "1433, PostgreSQL: 5432, bzw. den konfigurierten Port) in Firewall und NAT für die Adressen des "
          "Sync-Servers freigeben, und der Datenbankserver muss TCP/IP annehmen",
          retriable=True),
    Cause("tls_certificate",
          "the TLS handshake failed (self-signed or untrusted certificate, or a pre-login handshake error): "
          "install a certificate from a trusted CA on the SQL Server, or set trust_server_certificate: true "
          "for this tenant; a server that speaks only TLS 1.0/1.1 needs its TLS 1.2 updates",
          "der TLS-Handshake ist fehlgeschlagen (selbstsigniertes oder nicht vertrauenswürdiges Zertifikat bzw. "
          "Pre-Login-Handshake-Fehler): ein Zertifikat einer vertrauenswürdigen CA auf dem SQL Server "
          "installieren oder für diesen Tenant trust_server_certificate: true setzen; ein Server, der nur "
          "TLS 1.0/1.1 spricht, braucht seine TLS-1.2-Updates"),
    Cause("windows_auth_used",
          "the server expects Windows authentication: the sync needs a SQL Server login; enable 'SQL Server and "
          "Windows Authentication mode' and create a dedicated SQL login with db_datareader",
          "der Server erwartet Windows-Authentifizierung: der Sync braucht einen SQL-Server-Login; den Modus "
          "'SQL Server- und Windows-Authentifizierung' aktivieren und einen eigenen SQL-Login mit "
          "db_datareader anlegen"),
    Cause("login_failed",
          "the login was refused: check the user name and the password the tenant references (the secret's "
          "current value), and that the SQL login is enabled and not locked",
          "der Login wurde abgelehnt: Benutzername und das referenzierte Passwort (aktueller Wert des Secrets) "
          "prüfen, und ob der SQL-Login aktiviert und nicht gesperrt ist"),
    Cause("database_missing",
          "the database does not exist or the login has no access to it: check source.database and "
          "map the login to a user in that database (with db_datareader)",
          "die Datenbank existiert nicht oder der Login hat keinen Zugriff darauf: source.database "
          "prüfen und dem Login in dieser Datenbank einen Benutzer zuordnen (mit db_datareader)"),
    Cause("database_damaged",
          "the database file is not a database, or is damaged: check that source.url names the ERP's database "
          "file; if it does, copy it again from the ERP or restore it from a backup",
          "die Datenbankdatei ist keine Datenbank oder ist beschädigt: prüfen, dass source.url die "
          "Datenbankdatei des ERP nennt; wenn ja, sie erneut aus dem ERP kopieren oder aus einer Sicherung "
          "wiederherstellen"),
    Cause("permission_denied",
          "the login may not read this object: grant db_datareader (or SELECT on the tables the queries use)",
          "der Login darf dieses Objekt nicht lesen: db_datareader (oder SELECT auf die Tabellen der "
          "Abfragen) vergeben"),
    Cause("object_missing",
          "a table, view or column of the query does not exist: compare the query with "
          "`idwell-sync discover TENANT`",
          "eine Tabelle, Sicht oder Spalte der Abfrage existiert nicht: die Abfrage mit "
          "`idwell-sync discover TENANT` abgleichen"),
    Cause("timeout",
          "the query ran longer than source.query_timeout: raise it, or ask for an index or a smaller query",
          "die Abfrage lief länger als source.query_timeout: den Wert erhöhen oder einen Index bzw. eine "
          "kleinere Abfrage erbitten", retriable=True),
    Cause("server_shutting_down",
          "the server shut down or dropped the connection (often a nightly maintenance window or backup): "
          "move the tenant's schedule outside that window; the next run retries",
          "der Server wurde heruntergefahren oder hat die Verbindung getrennt (oft nächtliche Wartung oder "
          "Sicherung): den Zeitplan des Tenants außerhalb dieses Fensters legen; der nächste Lauf versucht "
          "es erneut", retriable=True),
    Cause("unknown",
          "the error quotes the database driver's own message, which says what failed; "
          "`idwell-sync doctor TENANT` checks the connection step by step",
          "die Fehlermeldung zitiert die Meldung des Datenbanktreibers, die sagt, was "
          "fehlschlug; `idwell-sync doctor TENANT` prüft die Verbindung Schritt für Schritt"),
)}


# (cause, SQLSTATEs, message pattern). First match wins, so specific rules come before general ones.
_RULES: list[tuple[str, frozenset[str], re.Pattern[str] | None]] = [(code, frozenset(states), re.compile(pattern, re.I) if pattern else None) for code, states, pattern in (
    ("driver_missing", {"IM002", "IM003"},
     r"can't open lib|data source name not found|libodbc\.so|file not found.*SQLDriverConnect|"
     r"specified driver could not be loaded|no module named 'pyodbc'|"
     # the driver manager in German (Windows' translates its texts; SQLSTATE 01000 tells nothing)
     r"datenquellenname (wurde )?nicht gefunden|kein standardtreiber|treiber konnte .{0,60}nicht geladen werden"),
    ("tls_certificate", set(),
     r"ssl provider|certificate verify failed|pre-login handshake|handshakes before login|"
     r"certificate chain was issued|self[- ]signed certificate|ssl error|tls handshake|"
     r"server does not support ssl|certificate (has expired|is not valid)|hostname mismatch|ssl-anbieter|"
     r"zertifikatkette|error code 0x2746.*SQLDriverConnect"),
    ("dns", set(),
     r"could not translate host name|name or service not known|temporary failure in name resolution|"
     r"nodename nor servname|no such host is known|getaddrinfo failed|failed to resolve host|"
     r"error code 0x2af9|server name not found in configuration"),
    ("windows_auth_used", set(),
     r"untrusted domain|not associated with a trusted sql server connection|sspi|kerberos|"
     r"configured for (windows|integrated) authentication only|login failed for user '[^']*\\[^']*'|"
     r"nt authority\\anonymous logon|\(18452\)"),
    ("database_damaged", set(),
     r"file is not a database|database disk image is malformed"),
    ("database_missing", set(),
     r"cannot open database|database \"[^\"]*\" does not exist|unknown database|\(4060\)|"
     r"unable to open database file"),
    ("login_failed", {"28000", "28P01"},
     r"login failed|password authentication failed|authentication failed for user|\(18456\)|"
     r"fehler bei der anmeldung|"
     r"no password supplied|role \"[^\"]*\" does not exist|ident authentication failed"),
    ("permission_denied", {"42501"},
     r"permission was denied|permission denied|\(229\)|access is denied|"
     r"attempt to write a readonly database"),
    ("object_missing", {"42S02", "42S22", "42P01", "42703"},
     r"invalid object name|invalid column name|\((208|207)\)|no such table|no such column|"
     r"relation \"[^\"]*\" does not exist|"
     r"column \"[^\"]*\" does not exist"),
    ("server_shutting_down", {"57P01", "57P02", "57P03", "08S01", "08003"},
     r"shutdown is in progress|\(6005\)|shutting down|starting up|terminating connection due to administrator|"
     r"service has been paused|communication link failure|connection has been lost|"
     r"server closed the connection unexpectedly|forcibly closed by the remote host|error code 0x2746|"
     r"connection reset by peer|in the middle of a restore|single user mode"),
    ("timeout", {"HYT00", "HYT01", "57014"},
     r"query timeout expired|statement timeout|canceling statement due to|timeout expired"),
    ("unreachable", {"08001"},
     r"connection refused|adaptive server is unavailable|unable to connect|no route to host|"
     r"network is unreachable|network-related or instance-specific|server is not found or not accessible|"
     r"error code 0x274[cd9]|error code 0x2749|timed out|could not connect to server"),
)]

# "Login timeout expired" / FreeTDS' "Timeout expired" while connecting: packets are dropped, which is
# a firewall, not a slow query.
_CONNECT_TIMEOUT = re.compile(r"login timeout expired|timeout expired.*SQLDriverConnect|connection timeout expired", re.I)
_SQLSTATE_IN_TEXT = re.compile(r"^\(?'?\[?([0-9A-Z]{5})\]?")


def hints_for(cause: Cause, tenant_id: str, query_at: str | None = None) -> tuple[str, str]:
    """The cause's advice (English, German) with the tenant's id in its commands (`idwell-sync
    discover acme`), and for a query that failed on what it names (a table, a column, a right, its
    syntax), where the query is written."""
    en, de = (h.replace(" TENANT`", f" {tenant_id}`").replace(" TENANT ", f" {tenant_id} ")
              for h in (cause.hint_en, cause.hint_de))
    if query_at and cause.code in ("object_missing", "permission_denied", "unknown"):
        en, de = f"{en} (the query is written at {query_at})", f"{de} (die Abfrage steht in {query_at})"
    return en, de


def classify(error: BaseException | str) -> Cause:
    """The cause of a driver error (an exception or its message). Never raises."""
    state, text = _state_and_text(error)
    if isinstance(error, BaseException):
        found = _from_exception_type(error)
        if found:
            return CAUSES[found]
    if _CONNECT_TIMEOUT.search(text):
        return CAUSES["unreachable"]
    for code, states, pattern in _RULES:
        if pattern is not None and pattern.search(text):
            return CAUSES[code]
    for code, states, _ in _RULES:
        if state and state in states:
            return CAUSES[code]
    return CAUSES["unknown"]


def message_of(error: BaseException | str) -> str:
    """The driver's message in one line, without pyodbc's tuple punctuation."""
    return " ".join(_state_and_text(error)[1].split())


def _from_exception_type(error: BaseException) -> str | None:
    inner = _unwrap(error)
    if isinstance(inner, socket.gaierror):
        return "dns"
    if isinstance(inner, (ConnectionRefusedError, TimeoutError, socket.timeout)):
        return "unreachable"
    if isinstance(inner, ImportError) and "odbc" in str(inner).lower():
        return "driver_missing"
    return None


def _unwrap(error: BaseException) -> BaseException:
    orig = getattr(error, "orig", None)   # sqlalchemy.exc.DBAPIError
    return orig if isinstance(orig, BaseException) else error


def _state_and_text(error: BaseException | str) -> tuple[str | None, str]:
    if isinstance(error, str):
        m = _SQLSTATE_IN_TEXT.match(error.strip())
        return (m.group(1) if m else None), error
    inner = _unwrap(error)
    args = getattr(inner, "args", ())
    # pyodbc: args = (sqlstate, message)
    if len(args) >= 2 and isinstance(args[0], str) and re.fullmatch(r"[0-9A-Z]{5}", args[0]):
        return args[0], str(args[1])
    state = getattr(inner, "sqlstate", None)          # psycopg
    text = str(inner)
    if not state:
        m = _SQLSTATE_IN_TEXT.match(text.strip())
        state = m.group(1) if m else None
    return state, text
