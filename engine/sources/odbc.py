"""ODBC connection strings that never break: escaping, and SQL Server settings per driver.

An ODBC connection string is `key=value;key=value`. A value that contains `;`, `{`, `}`, `=` or
whitespace must be wrapped in braces, and a `}` inside braces is written twice:
`PWD={p;a}}r{t =1}` is the password `p;a}r{t =1`. `format_connection_string` does that for every
value, so passwords with any of these characters are a non-issue. FreeTDS reads braces its own way
(`escape_freetds_value`): its values are braced only for a `;` or a leading `{`.

`sql_server_connection_string` turns structured settings (`engine.config.model.SqlServer`) into
the attribute names of the driver they name: Microsoft's ODBC Driver 18/17 for SQL Server, or
FreeTDS. The password is a `Secret`; it is resolved only inside that call (`server_password`), and
only the string it returns contains it. A password that FreeTDS cannot be given is a `SecretError`
naming its reference (exit code 3, as for a reference that cannot be resolved): nothing is sent.
`describe_sql_server` gives the same string with the password masked, for logs and messages;
engine.redact masks a PWD value in any message that quotes a connection string.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Literal, Mapping

from engine.config.model import SqlServer
from engine.config.secrets import SecretError

DriverKind = Literal["msodbc18", "msodbc17", "freetds"]

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]*$")
_NEEDS_BRACES = re.compile(r"[;{}=\s]")
MASK = "***"
FREETDS_PASSWORD_HINT = (
    "change the SQL login's password to one without '}' (a ';' or a leading '{' alone is fine) and store the new "
    "one where the tenant's reference points; or install Microsoft's ODBC Driver 18 for SQL Server (msodbcsql18, "
    "from packages.microsoft.com) and set source.driver: ODBC Driver 18 for SQL Server, which takes any password",
    "das Passwort des SQL-Logins in eines ohne '}' ändern (ein ';' oder ein '{' am Anfang allein geht) und das neue "
    "dort ablegen, wohin die Referenz des Tenants zeigt; oder Microsofts ODBC Driver 18 for SQL Server installieren "
    "(msodbcsql18, von packages.microsoft.com) und source.driver: ODBC Driver 18 for SQL Server setzen, der jedes "
    "Passwort annimmt")
"""What to do about a password FreeTDS cannot be given (English, German)."""
NUL_PASSWORD_HINT = ("store the password without the NUL character (a ${file:...} secret holds only the password)",
                     "das Passwort ohne das NUL-Zeichen ablegen (ein ${file:...}-Secret enthält nur das Passwort)")


def escape_value(value: object) -> str:
    """One attribute value as the ODBC grammar wants it: as is, or braced with `}` doubled."""
    text = _as_text(value)
    if "\x00" in text:
        raise ValueError("an ODBC connection string value cannot contain a NUL character")
    if text and (_NEEDS_BRACES.search(text) or text[0] == "{"):
        return "{" + text.replace("}", "}}") + "}"
    return text


def escape_freetds_value(value: object) -> str:
    """One attribute value as FreeTDS reads it. FreeTDS takes an unbraced value up to the next `;` as it is,
    spaces, `=` and `}` included; inside braces, FreeTDS 1.3 (Debian's tdsodbc) reads up to the first `};` and
    keeps `}}` doubled, FreeTDS 1.4 reads `}}` as `}`. So a value is braced only when it must be (a `;`, a
    leading `{`), and one that must be braced and holds a `}` is refused: no spelling reaches both versions."""
    text = _as_text(value)
    if "\x00" in text:
        raise ValueError("an ODBC connection string value cannot contain a NUL character")
    if ";" not in text and not text.startswith("{"):
        return text
    if "}" in text:
        raise ValueError("FreeTDS cannot be given a value that holds '}' together with ';' (or that starts with "
                         "'{'): FreeTDS versions read '}' inside braces differently. Use a password without one "
                         "of them, or Microsoft's ODBC Driver 18 for SQL Server")
    return "{" + text + "}"


def format_connection_string(attributes: Mapping[str, object] | Iterable[tuple[str, object]],
                             escape: Callable[[object], str] = escape_value) -> str:
    """`key=value;...` from attributes in order; None values are left out, every value escaped."""
    items = attributes.items() if isinstance(attributes, Mapping) else attributes
    parts = []
    for key, value in items:
        if value is None:
            continue
        if not _KEY.match(key):
            raise ValueError(f"not a valid ODBC attribute name: {key!r}")
        try:
            parts.append(f"{key}={escape(value)}")
        except ValueError as exc:       # the message names the attribute, never its value
            raise ValueError(f"{key}: {exc}") from None
    return ";".join(parts)


def driver_kind(driver: str) -> DriverKind:
    """Which attribute dialect a driver name speaks. Unknown names get Microsoft's (Driver 18)."""
    name = driver.strip().strip("{}").lower()
    if "freetds" in name or "tds" == name:
        return "freetds"
    if "odbc driver 17" in name or name in ("sql server native client 11.0",):
        return "msodbc17"
    return "msodbc18"


def sql_server_attributes(server: SqlServer, *, password: str | None) -> list[tuple[str, object]]:
    """The attributes for `server`'s driver, in the order they are written.

    `password=None` leaves PWD out (for the masked description)."""
    kind = driver_kind(server.driver)
    if kind == "freetds":
        return [
            ("Driver", server.driver),
            ("Server", server.host),
            ("Port", server.port),
            ("Database", server.database),
            ("UID", server.username),
            ("PWD", password),
            ("TDS_Version", server.tds_version or "7.4"),
            ("Encryption", _freetds_encryption(server)),
            ("ClientCharset", "UTF-8"),
            ("ApplicationIntent", server.application_intent),
        ]
    if kind == "msodbc17" and server.encrypt == "strict":
        raise ValueError("encrypt: strict needs ODBC Driver 18 for SQL Server; "
                         f"driver {server.driver!r} knows only yes and no")
    return [
        ("Driver", server.driver),
        ("Server", f"{server.host},{server.port}"),
        ("Database", server.database),
        ("UID", server.username),
        ("PWD", password),
        ("Encrypt", server.encrypt),
        ("TrustServerCertificate", "yes" if server.trust_server_certificate else "no"),
        ("HostNameInCertificate", server.host_name_in_certificate),
        ("ApplicationIntent", server.application_intent),
    ]


def sql_server_connection_string(server: SqlServer) -> str:
    """The full connection string, password included. Call it only where the connection is made."""
    return format_connection_string(sql_server_attributes(server, password=server_password(server)),
                                    _escape_for(server))


def server_password(server: SqlServer) -> str:
    """The password, resolved; a SecretError naming its reference (never the value) when it cannot be
    resolved, or cannot be written into this driver's connection string (`password_problem`)."""
    password = server.password.resolve()
    if problem := password_problem(server, password):
        raise SecretError(problem[0], hint=problem[1][0])
    return password


def password_problem(server: SqlServer, password: str) -> tuple[str, tuple[str, str]] | None:
    """Why `password` cannot be written into the connection string for `server`'s driver (a NUL
    character; for FreeTDS a '}' in a value that must be braced), naming its reference, never its
    value, and what to do (English, German); None when it can."""
    try:
        _escape_for(server)(password)
        return None
    except ValueError:
        pass
    if "\x00" in password:
        return (f"source.password {server.password} holds a NUL character, which no ODBC connection string can "
                "carry", NUL_PASSWORD_HINT)
    return (f"source.password {server.password} cannot be given to FreeTDS (driver '{server.driver}'): the password "
            "holds a '}' and a ';' (or starts with '{'), and FreeTDS versions read such a password differently "
            "(inside braces 1.3 keeps '}}' doubled, 1.4 reads '}'), so the SQL login would get a wrong one; nothing "
            "was sent to the server", FREETDS_PASSWORD_HINT)


def describe_sql_server(server: SqlServer) -> str:
    """The connection string with the password masked: safe for logs, plans and messages."""
    attrs = sql_server_attributes(server, password=None)
    at = next(i for i, (k, _) in enumerate(attrs) if k == "UID") + 1
    text = format_connection_string(attrs[:at] + [("PWD", MASK)] + attrs[at:], _escape_for(server))
    return text


def _escape_for(server: SqlServer) -> Callable[[object], str]:
    return escape_freetds_value if driver_kind(server.driver) == "freetds" else escape_value


def _freetds_encryption(server: SqlServer) -> str:
    # FreeTDS: require (TLS, fails if the server cannot), request (TLS when offered), off.
    return {"yes": "require", "strict": "require", "no": "request"}[server.encrypt]


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
