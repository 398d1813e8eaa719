"""Where an ODBC connection goes: the host and port inside a connection string or a DSN.

A `source.url` with a pyodbc dialect (`mssql+pyodbc://`) does not always name its host: SQLAlchemy
builds an ODBC connection string from it, and that string may name a data source (DSN) of
odbc.ini instead, whose entry names the host. `odbc_endpoint(url)` builds the string as SQLAlchemy
does (its dialect's `create_connect_args`, so the rules are SQLAlchemy's own: a URL with a host
but no database, or with `?dsn=`, is a DSN; `?odbc_connect=` is the string itself) and reads the
host and port from it, or from the DSN's entry in the odbc.ini files unixODBC reads (`odbcinst -j`
names them), and for a FreeTDS Servername from that server's section of freetds.conf
(freetds_server). The connection string may hold the password: only the host, port and DSN are
taken from it, and nothing of it is quoted.
"""
from __future__ import annotations

import os
import re
import subprocess
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy

HOST_KEYS = ("server", "host", "servername")
"""The attributes that name the host, first found wins: Server (Microsoft's drivers, FreeTDS),
Host, Servername (psqlODBC; for FreeTDS, Servername names a freetds.conf section instead).
An Address counts before them where the driver reads it (_address)."""

ADDRESS_KEYS = ("address", "addr")
"""Microsoft's drivers connect to Address (or its synonym Addr) where one is given, before Server,
written as Server is (`tcp:host,port`). FreeTDS reads Address only from a DSN's entry, as a host
without a port (the port is Port's), and a Server of the connection string still counts first."""


@dataclass(frozen=True)
class OdbcEndpoint:
    host: str | None                 # None: the connection string and the DSN name none (see `unknown`)
    port: int | None                 # None: not known here (a named instance without a port)
    dsn: str | None = None           # the DSN the connection goes through
    dsn_file: Path | None = None     # the odbc.ini that defines it
    missing: bool = False            # the DSN is defined in none of `looked_in`
    looked_in: tuple[Path, ...] = field(default_factory=tuple)
    unknown: str = ""                # why host (or port) is None, in a sentence's words
    port_at: str = "source.url"      # where the port is written, for a message that asks to correct it
    freetds: str = ""                # "[SERVER] of FILE": the freetds.conf section that gave the host (Servername=)

    @property
    def where(self) -> str:
        """Where the host is written, for a message: "" for the URL itself."""
        dsn = f"DSN '{self.dsn}' ({self.dsn_file})" if self.dsn and self.dsn_file else ""
        if self.freetds:
            return f"{dsn}, the section {self.freetds}" if dsn else f"the section {self.freetds}"
        return dsn


def odbc_endpoint(url: "sqlalchemy.URL", default_port: int | None) -> OdbcEndpoint | None:
    """The endpoint of a URL whose dialect connects through pyodbc; None for any other driver."""
    text = connection_string(url)
    return None if text is None else string_endpoint(text, default_port)


def connection_string(url: "sqlalchemy.URL") -> str | None:
    """The ODBC connection string SQLAlchemy's pyodbc dialect makes of `url` (it may hold the
    password: never show it); None when the URL's dialect is not a pyodbc one."""
    from sqlalchemy.connectors.pyodbc import PyODBCConnector
    try:
        dialect = url.get_dialect()
    except Exception:
        return None
    if not issubclass(dialect, PyODBCConnector):
        return None
    with warnings.catch_warnings():     # "No driver name specified": the driver step says so
        warnings.simplefilter("ignore")
        args, _ = dialect().create_connect_args(url)
    return str(args[0])


def string_endpoint(text: str, default_port: int | None) -> OdbcEndpoint:
    """The endpoint of an ODBC connection string: its Server (or Host, Servername) and Port, or,
    when it names a DSN (before any DRIVER=, as the driver manager reads it), the DSN's, the
    string's own attributes taking precedence over the DSN's. A FreeTDS Servername is looked up
    in freetds.conf, as FreeTDS does (freetds_server)."""
    at, why, entry = _string_endpoint(text, default_port)
    if why is not None and why[0] == "freetds":
        return _freetds_endpoint(at, why[1], parse_connection_string(text), entry, default_port)
    return at


def _string_endpoint(text: str, default_port: int | None) -> tuple[OdbcEndpoint, tuple | None, list[tuple[str, str]]]:
    """(string_endpoint before a FreeTDS Servername is looked up, why its host or port is not
    known: _host_and_port's, the attributes of the DSN's entry: none without a DSN)."""
    attrs = parse_connection_string(text)
    first = next((key for key, _ in attrs if key in ("dsn", "driver")), None)
    if first != "dsn":
        host, port, why = _address(attrs, [], default_port) or _host_and_port(attrs, default_port)
        return OdbcEndpoint(host, port, unknown=_unknown(why, "source.url's connection string (odbc_connect)", host)), why, []
    dsn = next(value for key, value in attrs if key == "dsn")
    looked_in = tuple(odbc_ini_files())
    found = dsn_entry(dsn, list(looked_in))
    if found is None:
        return OdbcEndpoint(None, None, dsn, missing=True, looked_in=looked_in,
                            unknown=f"DSN '{dsn}' is not defined in {' or '.join(map(str, looked_in))}"), None, []
    path, entry = found
    if (at := _address(attrs, entry, default_port)) is not None:
        host, port, why = at
        port_at = "source.url" if port in _ports_written(attrs) else f"the DSN '{dsn}' in {path}"
        return OdbcEndpoint(host, port, dsn, path, looked_in=looked_in, unknown=_unknown(why, f"DSN '{dsn}' ({path})", host),
                            port_at=port_at), why, entry
    host, port, why = _host_and_port(attrs, None)
    if host is not None:                        # the string names the host: the DSN may still give the port
        if port is None and why is None:
            given = next((value.strip() for key, value in entry if key == "port"), "")
            port = _port(given) or default_port
    else:                                       # the DSN's host; a Port in the string still counts first
        host, port, why = _host_and_port([*attrs, *entry], default_port)
    port_at = "source.url" if port in _ports_written(attrs) else f"the DSN '{dsn}' in {path}"
    return OdbcEndpoint(host, port, dsn, path, looked_in=looked_in, unknown=_unknown(why, f"DSN '{dsn}' ({path})", host),
                        port_at=port_at), why, entry


def _freetds_endpoint(at: OdbcEndpoint, server: str, attrs: list[tuple[str, str]], entry_attrs: list[tuple[str, str]],
                      default_port: int | None) -> OdbcEndpoint:
    """`at`, whose host is the FreeTDS server `server` (Servername=), with the host and port of
    its section of freetds.conf; a Port of the connection string (`attrs`) or of the DSN's entry
    (`entry_attrs`) counts first."""
    where = at.where or "source.url's connection string (odbc_connect)"
    found = freetds_server(server, default_port)
    if found is None:
        files = " or ".join(map(str, freetds_conf_files()))
        return replace(at, unknown=f"the host is set in {where}, which names the FreeTDS server '{server}' "
                                   f"(Servername=), which no freetds.conf defines with a host ({files})")
    host, port, instance, path = found
    port = next((p for key, value in [*attrs, *entry_attrs] if key == "port" and (p := _port(value)) is not None), port)
    named = f"[{server}] of {path}"
    port_at = ("source.url" if port in _ports_written(attrs) else
               f"the DSN '{at.dsn}' in {at.dsn_file}" if port in _ports_written(entry_attrs) else
               f"the section {named}")
    if port is None and instance:               # an instance: its port comes from SQL Server Browser
        return replace(at, host=host, port=None, freetds=named, port_at=port_at,
                       unknown=_unknown(("instance", instance), f"the section {named}", host))
    return replace(at, host=host, port=port, freetds=named, port_at=port_at, unknown="")


def _ports_written(attrs: list[tuple[str, str]]) -> set[int]:
    """The ports the attributes write: Port=, and Server=host,port (or Host=, Servername=, Address=)."""
    ports = {_port(value) for key, value in attrs if key == "port"}
    ports |= {split_server(value)[1] for key, value in attrs if key in HOST_KEYS + ADDRESS_KEYS}
    return ports - {None}


MAX_PORT = 65535


def port_problem(port: int | None, where: str) -> str | None:
    """What is wrong with a port no TCP connection can go to (above 65535: a socket would take it
    modulo 65536, another port), naming where to correct it; None for a usable port."""
    if port is None or port <= MAX_PORT:
        return None
    return f"port {port} is no TCP port (1-{MAX_PORT}): correct it in {where}"


def _address(attrs: list[tuple[str, str]], entry: list[tuple[str, str]],
             default_port: int | None) -> tuple[str, int | None, tuple | None] | None:
    """(host, port, why the port is not known) of the Address the driver connects to instead of
    Server (ADDRESS_KEYS), from the connection string's attributes and the DSN's `entry`; None
    where none counts (no Address, or a driver that does not read it there)."""
    both = [*attrs, *entry]
    driver = next((value for key, value in both if key == "driver"), "").lower()
    given_port = next((p for key, value in both if key == "port" and (p := _port(value)) is not None), None)
    if "tds" in driver:         # FreeTDS: a DSN's Address, a host; a Server of the string still counts first
        host = next((value.strip() for key, value in entry if key == "address" and value.strip()), None)
        if host is None or any(key == "server" and value.strip() for key, value in attrs):
            return None
        return host, default_port if given_port is None else given_port, None
    if "sql server" not in driver and "sqlncli" not in driver and "msodbcsql" not in driver:
        return None                                 # psqlODBC and others have no Address
    value = next((value.strip() for key, value in both if key in ADDRESS_KEYS and value.strip()), None)
    if value is None:
        return None
    host, port, instance = split_server(value)
    port = given_port if port is None else port
    if port is None and instance:
        return host, None, ("instance", instance)
    return host, default_port if port is None else port, None


def _host_and_port(attrs: list[tuple[str, str]], default_port: int | None) -> tuple[str | None, int | None, tuple | None]:
    """(host, port, why either is None: ("no host",), ("freetds", section), ("instance", name))."""
    get: dict[str, str] = {}
    for key, value in attrs:
        get.setdefault(key, value.strip())          # a repeated attribute: the first counts
    key = next((k for k in HOST_KEYS if get.get(k)), None)
    if key is None:
        return None, None, ("no host",)
    if key == "servername" and "tds" in get.get("driver", "").lower():
        return None, None, ("freetds", get[key])
    host, port, instance = split_server(get[key])
    if port is None:
        port = _port(get.get("port", ""))
    if port is None and instance:
        return host, None, ("instance", instance)
    return host, port or default_port, None


def _unknown(why: tuple | None, where: str, host: str | None) -> str:
    """Why the host or port is not known, in words, naming where the host is set."""
    if why is None:
        return ""
    if why[0] == "freetds":                     # looked up in freetds.conf: _freetds_endpoint says what it found
        return ""
    if why[0] == "instance":
        return (f"{where} names the instance {host}\\{why[1]} without a port: its port is looked up through "
                "SQL Server Browser (UDP 1434)")
    if where.startswith("DSN"):
        return f"the host is set in {where}, which does not name one (no Server=, Host= or Servername=)"
    return f"{where} names no host (no Server=, Host= or Servername=)"


def split_server(value: str) -> tuple[str, int | None, str | None]:
    """(host, port, instance) of a Server value: `tcp:host,1433`, `host\\INSTANCE`, `(local)`."""
    value = re.sub(r"(?i)^tcp:", "", value.strip())
    port = None
    if "," in value:
        value, _, given = value.rpartition(",")
        port = _port(given)
    host, _, instance = value.partition("\\")
    host = host.strip().strip("[]")
    if host.lower() in ("(local)", ".", "(localdb)"):
        host = "localhost"
    return host, port, instance.strip() or None


def _port(text: str) -> int | None:
    """A port written as digits 0-9 (str.isdigit() takes ² too, which int() does not); else None."""
    text = text.strip()
    return int(text) if re.fullmatch(r"[0-9]+", text) else None


def parse_connection_string(text: str) -> list[tuple[str, str]]:
    """`key=value;...` as (key in lower case, value) pairs; a value in braces may hold `;`, and
    `}}` inside it is one `}`."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < n and text[i] == "{":
            value, i = [], i + 1
            while i < n:
                if text[i] == "}":
                    if text[i + 1:i + 2] == "}":
                        value.append("}")
                        i += 2
                        continue
                    i += 1
                    break
                value.append(text[i])
                i += 1
            end = text.find(";", i)
            out.append((key, "".join(value)))
        else:
            end = text.find(";", i)
            out.append((key, text[i:end if end >= 0 else n]))
        i = n if end < 0 else end + 1
    return [(k, v) for k, v in out if k]


def odbc_ini_files() -> list[Path]:
    """The odbc.ini files unixODBC reads DSNs from, the user's first (it looks there first):
    as `odbcinst -j` names them, else its defaults ($ODBCINI or ~/.odbc.ini, then odbc.ini in
    $ODBCSYSINI or /etc)."""
    try:
        said = subprocess.run(["odbcinst", "-j"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        said = ""
    named = dict(re.findall(r"(?m)^(USER|SYSTEM) DATA SOURCES\.*:\s*(.+?)\s*$", said))
    user = named.get("USER") or os.environ.get("ODBCINI") or str(Path("~/.odbc.ini").expanduser())
    system = named.get("SYSTEM") or str(Path(os.environ.get("ODBCSYSINI") or "/etc") / "odbc.ini")
    return [Path(user), Path(system)]


def freetds_conf_files() -> list[Path]:
    """The freetds.conf files FreeTDS looks a server's section up in, in its order: the file
    $FREETDSCONF (or $FREETDS) names, ~/.freetds.conf, then the system's (Debian's tdsodbc:
    /etc/freetds/freetds.conf; FreeTDS built from source: /usr/local/etc/freetds.conf)."""
    named = [Path(value) for value in (os.environ.get("FREETDSCONF"), os.environ.get("FREETDS")) if value]
    return [*named, Path("~/.freetds.conf").expanduser(), Path("/etc/freetds/freetds.conf"),
            Path("/usr/local/etc/freetds.conf")]


def freetds_server(name: str, default_port: int | None) -> tuple[str, int | None, str | None, Path] | None:
    """(host, port, instance, file) of the FreeTDS server `name` (Servername=): its section in
    the first freetds.conf that has one (as FreeTDS takes it; names compared case-insensitively),
    read as dsn_entry reads odbc.ini. The port is the section's; None (and the instance) for a
    section that names an instance instead, whose port SQL Server Browser gives; else the
    file's [global] port, else `default_port`. None where no file defines the server, or its
    section names no host."""
    found = dsn_entry(name, freetds_conf_files())
    if found is None:
        return None
    path, attrs = found
    get = {key: value for key, value in reversed(attrs)}        # a repeated property: the first counts
    host = get.get("host", "").strip()
    if not host:
        return None
    port, instance = _port(get.get("port", "")), get.get("instance", "").strip() or None
    if port is None and instance:               # the section names an instance instead of a port
        return host, None, instance, path
    glob = dsn_entry("global", [path])
    port = port or (_port(dict(glob[1]).get("port", "")) if glob else None)
    return host, port or default_port, None, path


def dsn_entry(name: str, files: list[Path]) -> tuple[Path, list[tuple[str, str]]] | None:
    """(file, its attributes in lower case) of the DSN `name` (compared case-insensitively, as
    unixODBC does) in the first of `files` that defines it; None when none does. Each file is read
    as unixODBC reads it: a line `[NAME]` opens a section, `key = value` is an attribute, whatever
    its indentation; a line without `=`, or starting with `#` or `;`, is skipped; any section name
    counts (also DEFAULT); a file that is not UTF-8 is Latin-1 (a description with umlauts)."""
    wanted = name.strip().casefold()
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        section, attrs = None, []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                if section == wanted:
                    break
                section, attrs = line[1:].split("]", 1)[0].strip().casefold(), []
            elif section == wanted and "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                attrs.append((key.strip().lower(), value.strip()))
        if section == wanted:
            return path, attrs
    return None
