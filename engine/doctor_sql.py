"""Doctor steps for a SQL source: DNS, TCP, driver, encryption, login, permissions, queries,
umlauts and clock. One read-only connection serves every step after the login."""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from engine.classify import CAUSES, classify, hints_for, message_of
from engine.config.dialects import URL_FORM, dialect_problem
from engine.config.model import EntityMapping, SqlSource, Tenant
from engine.config.secrets import SecretError
from engine.doctor import Step, check_dns, check_tcp, password_problem, skipped, step
from engine.entity_data import EntityData
from engine.errors import ExpressionError, SourceError
from engine.mapping import Mapper, unreturned_columns
from engine.plural import counted
from engine.redact import redact
from engine.sources import odbc
from engine.sources.connect import DEFAULT_PORTS, repeated_query_error
from engine.sources.odbc_dsn import OdbcEndpoint, odbc_endpoint

UMLAUTS = "Grüße ÄÖÜ äöü ß"
MOJIBAKE = re.compile("Ã[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u2026"
                      "\u2030\u2039\u203a\u20ac\u2122]|\ufffd")
ROUND_TRIP = {
    # NVARCHAR, and VARCHAR in a Latin-1/CP1252 collation: both must arrive as the same Unicode text.
    "mssql": f"SELECT N'{UMLAUTS}', CAST(N'{UMLAUTS}' COLLATE Latin1_General_CI_AS AS VARCHAR(40))",
    "postgresql": f"SELECT CAST('{UMLAUTS}' AS text), convert_from(convert_to('{UMLAUTS}', 'LATIN1'), 'LATIN1')",
    "sqlite": f"SELECT '{UMLAUTS}', CAST('{UMLAUTS}' AS TEXT)",
}
LOOPBACK = ("127.0.0.1", "::1", "localhost")
URL_HINT = (f"correct source.url (or the variable or file it references): {URL_FORM}, with a dialect that "
            "SQLAlchemy can load here (e.g. postgresql, mssql+pyodbc, sqlite)",
            f"source.url korrigieren (bzw. die Variable oder Datei, auf die es verweist): {URL_FORM}, mit einem "
            "Dialekt, den SQLAlchemy hier laden kann (z. B. postgresql, mssql+pyodbc, sqlite)")
"""What to do when source.url cannot be used (English, German)."""


@dataclass
class Probe:
    """What the steps need to know about the source, without secrets."""
    backend: str                              # sqlite, mssql, postgresql, ...
    endpoint: tuple[str, int] | None          # None for a file
    label: str
    login_timeout: float = 15.0
    setup_error: str | None = None            # the URL's secrets cannot be resolved, or it cannot be used
    url_unusable: bool = False                # setup_error is the URL's own: the driver step fails with it
    odbc: OdbcEndpoint | None = None          # where a pyodbc URL connects: a DSN of odbc.ini, odbc_connect
    texts: dict[str, int] = field(default_factory=dict)     # "entity.column" -> values with umlauts
    garbled: dict[str, int] = field(default_factory=dict)   # "entity.column" -> values with mojibake


def describe(source: SqlSource) -> Probe:
    if source.server is not None:
        s = source.server
        return Probe("mssql", (s.host, s.port), f"{s.driver} {s.host},{s.port}/{s.database}", float(s.login_timeout))
    import sqlalchemy as sa
    try:
        url = sa.make_url(source.url.resolve_url())
    except SecretError as exc:
        return Probe("unknown", None, str(source.url), setup_error=str(exc))
    except Exception:
        return Probe("unknown", None, str(source.url), setup_error="source.url is not a valid SQLAlchemy URL",
                     url_unusable=True)
    if problem := dialect_problem(url.drivername):      # no host and port to try: say what is wrong instead
        return Probe("unknown", None, str(source.url), setup_error=f"source.url: {problem}", url_unusable=True)
    if error := repeated_query_error(url, []):        # odbc_connect twice: SQLAlchemy cannot build the ODBC string
        return Probe("unknown", None, str(source.url), setup_error=error.message, url_unusable=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return Probe("sqlite", None, f"SQLite file {url.database}")
    if (at := odbc_endpoint(url, DEFAULT_PORTS.get(backend, 0))) is not None:    # as SQLAlchemy connects
        endpoint = (at.host, at.port) if at.host and at.port else None
        label = f"{backend} DSN '{at.dsn}'" if at.dsn else f"{backend} {at.host}:{at.port}/{url.database}"
        return Probe(backend, endpoint, label, odbc=at)
    port = url.port or DEFAULT_PORTS.get(backend, 0)
    return Probe(backend, (url.host or "localhost", port), f"{backend} {url.host}:{port}/{url.database}")


def sql_steps(tenant: Tenant) -> Iterator[Step]:
    source: SqlSource = tenant.source
    t = describe(source)
    if t.setup_error:
        for name in ("dns", "tcp", "driver", "encryption", "login"):
            if name == "driver" and t.url_unusable:
                yield step("driver", "driver / Treiber", "fail", t.setup_error, URL_HINT)
            else:
                yield skipped(name, name, f"not run: {t.setup_error}")
        yield from _not_connected(tenant, t.setup_error)
        return
    blocked = None
    at = t.odbc
    if at is not None and at.missing:           # no host to look up, and no driver: the DSN names both
        from engine.sources.connect import dsn_missing_hint
        blocked = f"DSN '{at.dsn}' is not defined (see DNS)"
        yield step("dns", f"DNS: DSN '{at.dsn}'", "fail", at.unknown, dsn_missing_hint(at))
        yield skipped("tcp", "TCP", f"not run: {blocked}")
        engine, drv = None, skipped("driver", "driver / Treiber", f"not run: {blocked}")
    elif at is not None and t.endpoint is None:     # the DSN names no host, or the port is not known here
        dns = check_dns(at.host, _dsn_dns_hint(at)) if at.host else \
            skipped("dns", "DNS", f"not checked: {at.unknown}")
        yield dns
        blocked = "DNS failed" if dns.status == "fail" else None
        yield skipped("tcp", "TCP", f"not run: {blocked}" if blocked else f"not checked: {at.unknown}")
        engine, drv = _driver_step(source, t)
    elif t.endpoint is None:
        yield skipped("dns", "DNS", f"not applicable: {t.label}")
        yield skipped("tcp", "TCP", f"not applicable: {t.label}")
        engine, drv = _driver_step(source, t)
    else:
        host, port = t.endpoint
        dns = check_dns(host, _dsn_dns_hint(at))
        if at is not None and at.where:
            dns = replace(dns, note=f"the host and port are set in {at.where}")
        yield dns
        if dns.status == "fail":
            blocked = "DNS failed"
            yield skipped("tcp", f"TCP {host}:{port}", f"not run: {blocked}")
        else:
            tcp = check_tcp(host, port, t.login_timeout, at.port_at if at is not None else "source.url")
            yield tcp
            blocked = "TCP failed" if tcp.status == "fail" else None
        engine, drv = _driver_step(source, t)
    yield drv
    if drv.status == "fail":
        blocked = blocked or "the driver is missing"
    if password_problem(tenant):                # nothing is sent: the secrets step says why
        blocked = blocked or f"driver '{source.server.driver}' cannot be given the password (see secrets)"
    if blocked:
        for name, title in (("encryption", "encryption / Verschlüsselung"), ("login", "login / Anmeldung")):
            yield skipped(name, title, f"not run: {blocked}")
        yield from _not_connected(tenant, blocked)
        return
    try:
        conn, steps = _connect_steps(engine, source, t)
        yield from steps
        if conn is None:
            yield from _not_connected(tenant, "no connection (see login)")
            return
        try:
            yield _permissions(conn, t)
            yield from _queries(conn, tenant, t)
            yield _umlauts(conn, t)
            yield _clock(conn, t)
        finally:
            conn.rollback()
            conn.close()
    finally:
        engine.dispose()


def _dsn_dns_hint(at: OdbcEndpoint | None) -> tuple[str, str] | None:
    """check_dns's advice for a host written in a DSN's entry (CAUSES['dns'] speaks of source.host)."""
    if at is None or not at.where:
        return None
    return (f"the host name does not resolve: check the host in {at.where}, or ask the customer's IT for the public "
            "DNS name or IP address of the database server",
            f"der Hostname lässt sich nicht auflösen: den Host in {at.where} prüfen oder die IT des Kunden nach dem "
            "öffentlichen DNS-Namen bzw. der IP-Adresse des Datenbankservers fragen")


def _not_connected(tenant: Tenant, why: str) -> Iterator[Step]:
    """The steps that need a connection, shown as not run (so that the checklist always has all
    its steps, in the same order and with the same numbers)."""
    yield skipped("permissions", PERMISSIONS, f"not run: {why}")
    for entity in tenant.entities.values():
        yield skipped(f"query:{entity.name}", _query_title(entity), f"not run: {why}")
    yield skipped("umlauts", UMLAUTS_TITLE, f"not run: {why}")
    yield skipped("clock", CLOCK, f"not run: {why}")


def _driver_step(source: SqlSource, t: Probe):
    from engine.sources.connect import create_sql_engine
    title = "driver / Treiber"
    try:
        engine = create_sql_engine(source)
    except SourceError as exc:
        cause = CAUSES.get(exc.cause, CAUSES["unknown"])
        hint = (exc.hint, cause.hint_de) if exc.hint else cause
        return None, step("driver", title, "fail", exc.message, hint)
    if source.server is not None:
        return engine, step("driver", title, "ok", f"ODBC driver '{source.server.driver}' is installed "
                                                   f"({odbc.driver_kind(source.server.driver)})")
    module = getattr(engine.dialect.dbapi, "__name__", "?")
    through = ""
    if t.odbc is not None and t.odbc.dsn:
        from engine.sources.connect import dsn_driver
        driver = dsn_driver(t.odbc)
        through = f", through DSN '{t.odbc.dsn}' ({t.odbc.dsn_file})" + (f" with driver '{driver}'" if driver else "")
    return engine, step("driver", title, "ok", f"{engine.dialect.name}+{engine.dialect.driver} (module {module}){through}")


def _within_doctor(cause) -> tuple[str, str]:
    """The cause's advice without its pointer to `idwell-sync doctor`, which is running."""
    return tuple(h.split("; `idwell-sync doctor")[0] for h in (cause.hint_en, cause.hint_de))


def _connect_steps(engine, source: SqlSource, t: Probe):
    enc_title, login_title = "encryption / Verschlüsselung", "login / Anmeldung"
    t0 = time.perf_counter()
    try:
        conn = engine.connect()
    except SecretError as exc:
        return None, [skipped("encryption", enc_title, "not run: no password"),
                      step("login", login_title, "fail", str(exc), ("provide the secret the tenant references",
                                                                    "das referenzierte Secret bereitstellen"))]
    except Exception as exc:
        took = time.perf_counter() - t0
        cause = classify(exc)
        text = redact(message_of(exc))[:400]
        if cause.code == "tls_certificate":
            return None, [step("encryption", enc_title, "fail", text, cause, took),
                          skipped("login", login_title, "not run: the TLS handshake failed")]
        if cause.code in ("login_failed", "windows_auth_used", "database_missing") and t.backend == "mssql" \
                and source.server is not None and source.server.encrypt != "no":
            enc = step("encryption", enc_title, "ok", "the TLS handshake passed (the server answered the login)")
        else:
            enc = skipped("encryption", enc_title, "not checked: no connection")
        from engine.sources.connect import missing_driver_hint, url_database_hint
        hint, code = _within_doctor(cause), cause.code
        if t.backend == "sqlite":
            from engine.sources.connect import sqlite_file_problem
            if problem := sqlite_file_problem(exc, engine):
                code, text, hint = problem[0], problem[1], problem[2]
        elif cause.code == "database_missing" and (url_hint := url_database_hint(engine, source)):
            hint = url_hint                         # the URL names the database: no source.database to check
        elif cause.code == "driver_missing" and (driver_hint := missing_driver_hint(exc)):
            hint = driver_hint                      # the drivers unixODBC knows, and which package to install
        elif cause.code == "unreachable" and t.endpoint is not None:
            from engine.sources.connect import no_answer_hint
            hint = no_answer_hint(*t.endpoint, t.backend)   # the TCP step connected: the firewall lets it through
        return None, [enc, step("login", login_title, "fail", f"{code}: {text}", hint, took)]
    took = time.perf_counter() - t0
    return conn, [_encryption(conn, source, t), step("login", login_title, "ok", _who(conn, t), seconds=took)]


def _scalar_row(conn, sql: str) -> tuple:
    from sqlalchemy import text
    return tuple(conn.execute(text(sql)).one())


def _who(conn, t: Probe) -> str:
    queries = {"mssql": "SELECT SUSER_SNAME(), DB_NAME(), CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))",
               "postgresql": "SELECT current_user, current_database(), current_setting('server_version')"}
    if t.backend == "sqlite":
        return f"opened {t.label} read-only (SQLite {_scalar_row(conn, 'SELECT sqlite_version()')[0]})"
    if t.backend not in queries:
        return f"connected to {t.label}"
    user, db, version = _scalar_row(conn, queries[t.backend])
    return f"connected as {user} to {db} (server {version})"


def _encryption(conn, source: SqlSource, t: Probe) -> Step:
    title = "encryption / Verschlüsselung"
    plain = ("encrypt the connection: set encrypt: yes (SQL Server) or sslmode=require (PostgreSQL URL), "
             "with a certificate the server presents",
             "die Verbindung verschlüsseln: encrypt: yes (SQL Server) bzw. sslmode=require (PostgreSQL-URL) setzen, "
             "mit einem Zertifikat auf dem Server")
    if t.backend == "sqlite":
        return skipped("encryption", title, "not applicable: a local file")
    try:
        if t.backend == "mssql":
            encrypted = str(_scalar_row(conn, "SELECT encrypt_option FROM sys.dm_exec_connections "
                                              "WHERE session_id = @@SPID")[0]).upper() == "TRUE"
        elif t.backend == "postgresql":
            encrypted = bool(_scalar_row(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0])
        else:
            return skipped("encryption", title, f"not checked for {t.backend}")
    except Exception:
        conn.rollback()
        if source.server is not None and source.server.encrypt != "no":
            return step("encryption", title, "ok", f"encrypt={source.server.encrypt}: the TLS handshake passed")
        return step("encryption", title, "warn", "cannot tell whether the connection is encrypted", plain)
    if encrypted:
        trust = source.server is not None and source.server.trust_server_certificate
        note = " (certificate not verified: trust_server_certificate is set)" if trust else ""
        return step("encryption", title, "ok", f"the connection is encrypted{note}")
    if t.endpoint and t.endpoint[0] in LOOPBACK:
        return step("encryption", title, "ok", "not encrypted, but a loopback connection on this machine")
    return step("encryption", title, "warn", "the connection is not encrypted: ERP data travels in clear text", plain)


PERMISSIONS = "read-only permissions / nur Leserechte"
UMLAUTS_TITLE = "umlauts / Umlaute"
CLOCK = "server clock / Serveruhr"


def _query_title(entity: EntityMapping) -> str:
    return f"query {entity.name} / Abfrage {entity.name}"


def _permissions(conn, t: Probe) -> Step:
    title = PERMISSIONS
    if t.backend == "sqlite":
        return skipped("permissions", title, "not applicable: SQLite has no logins (the engine opens the file read-only)")
    hint = ("use a dedicated login with db_datareader only (no db_owner, db_datawriter, INSERT/UPDATE/DELETE)",
            "einen eigenen Login nur mit db_datareader verwenden (kein db_owner, db_datawriter, INSERT/UPDATE/DELETE)") \
        if t.backend != "postgresql" else \
        ("use a dedicated role that is no superuser, with SELECT only on the tables the queries read (GRANT SELECT "
         "ON ... TO it, or membership in pg_read_all_data; no INSERT/UPDATE/DELETE/TRUNCATE)",
         "eine eigene Rolle ohne Superuser-Recht verwenden, nur mit SELECT auf die Tabellen der Abfragen (GRANT "
         "SELECT ON ... TO ..., oder Mitglied in pg_read_all_data; kein INSERT/UPDATE/DELETE/TRUNCATE)")
    try:
        if t.backend == "mssql":
            row = _scalar_row(conn, """SELECT IS_SRVROLEMEMBER('sysadmin'), IS_ROLEMEMBER('db_owner'),
                IS_ROLEMEMBER('db_datawriter'), IS_ROLEMEMBER('db_ddladmin'),
                (SELECT COUNT(*) FROM sys.tables tb WHERE
                   HAS_PERMS_BY_NAME(QUOTENAME(SCHEMA_NAME(tb.schema_id)) + '.' + QUOTENAME(tb.name), 'OBJECT', 'INSERT') = 1
                OR HAS_PERMS_BY_NAME(QUOTENAME(SCHEMA_NAME(tb.schema_id)) + '.' + QUOTENAME(tb.name), 'OBJECT', 'UPDATE') = 1
                OR HAS_PERMS_BY_NAME(QUOTENAME(SCHEMA_NAME(tb.schema_id)) + '.' + QUOTENAME(tb.name), 'OBJECT', 'DELETE') = 1)""")
            roles = [name for name, on in zip(("sysadmin", "db_owner", "db_datawriter", "db_ddladmin"), row[:4]) if on == 1]
            writable = int(row[4] or 0)
        elif t.backend == "postgresql":
            row = _scalar_row(conn, """SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                count(*) FILTER (WHERE has_table_privilege(c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE'))
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg_toast%'""")
            roles = ["superuser"] if row[0] else []
            writable = int(row[1] or 0)
        else:
            return skipped("permissions", title, f"not checked for {t.backend}")
    except Exception as exc:
        conn.rollback()
        return step("permissions", title, "warn", f"could not check: {message_of(exc)[:200]}", hint)
    if roles or writable:
        what = ", ".join(roles + ([f"write access to {counted(writable, 'table')}"] if writable else []))
        return step("permissions", title, "warn", f"the login can write: {what}", hint)
    return step("permissions", title, "ok", "the login cannot write to any table")


def _queries(conn, tenant: Tenant, t: Probe) -> Iterator[Step]:
    """Each entity's query step, in the checklist's order; run in the order a run extracts them
    (engine.extract.EXTRACT_ORDER), so that the users are mapped behind the same gate as in a run
    (persons without a contract in the window are not mapped)."""
    from engine.extract import EXTRACT_ORDER
    mapped: dict[str, EntityData | None] = {}
    done = {name: _query(conn, tenant, tenant.entities[name], t, mapped)
            for name in EXTRACT_ORDER if name in tenant.entities}
    for entity in tenant.entities.values():
        yield done[entity.name] if entity.name in done else _query(conn, tenant, entity, t, mapped)


def _mapper(tenant: Tenant, entity: EntityMapping, columns: list[str], mapped: dict, run_date: dt.date):
    """The Mapper a run maps the entity's rows with (engine.extract), its gate included; None when
    the gate cannot be known (the users' gate, when the occupancies could not be mapped)."""
    from engine.extract import entity_gate
    try:
        gate = entity_gate(tenant, entity.name, run_date, mapped.get("occupancies"))
    except LookupError:
        return None
    return Mapper(entity, columns, EntityData(entity.name), [], gate)


def _query(conn, tenant: Tenant, entity: EntityMapping, t: Probe, mapped: dict) -> Step:
    """Runs the entity's query and maps every row it returns as a run does: an expression of the
    mapping that a record breaks (engine.errors.ExpressionError, exit 3 in a run) fails the step."""
    from sqlalchemy import text
    from engine.extract import window_params
    from engine.references import tenant_today
    from engine.sources.sql import query_params
    title = _query_title(entity)
    run_date = tenant_today(tenant)
    params = {**window_params(tenant, run_date), **tenant.source.params, **entity.params}
    t0 = time.perf_counter()
    try:
        bound = query_params(entity.query or "", params)
        result = conn.execution_options(stream_results=True, yield_per=tenant.source.batch_size).execute(text(entity.query), bound)
        columns = list(result.keys())
        used = entity.source_names()             # None: an expression reads the whole row ('@')
        missing = unreturned_columns(entity, columns)   # the others' columns: as a run checks them (engine.extract)
        mapper = None if missing else _mapper(tenant, entity, columns, mapped, run_date)
        rows = 0
        for part in result.partitions(tenant.source.batch_size):
            rows += len(part)
            _scan(entity.name, columns, part, t)
            if mapper is not None:
                mapper.map_rows([tuple(row) for row in part])
    except ExpressionError as exc:              # what stops a run with exit 3 (engine.extract)
        conn.rollback()
        return step(f"query:{entity.name}", title, "fail", exc.message,
                    (exc.hint, "den Ausdruck in den Overrides des Tenants oder im Mapping korrigieren "
                               "(docs/functions.md)"), time.perf_counter() - t0)
    except SourceError as exc:
        return step(f"query:{entity.name}", title, "fail", exc.message, (exc.hint or "", exc.hint or ""))
    except Exception as exc:
        conn.rollback()
        cause = classify(exc)
        if t.backend == "sqlite":               # an empty or damaged file: named, with what to do
            from engine.sources.connect import sqlite_file_problem
            if problem := sqlite_file_problem(exc, conn.engine):
                return step(f"query:{entity.name}", title, "fail", f"{problem[0]}: {problem[1]}", problem[2],
                            time.perf_counter() - t0)
        return step(f"query:{entity.name}", title, "fail", f"{cause.code}: {message_of(exc)[:300]}",
                    hints_for(cause, tenant.id, entity.query_at), time.perf_counter() - t0)
    took = time.perf_counter() - t0
    if mapper is not None:                      # every row mapped: what the users' gate is made of
        mapper.out.settle_duplicates()
        mapped[entity.name] = mapper.out
    detail = f"{counted(rows, 'row')} in {took:.2f} s, {counted(len(columns), 'column')}"
    if missing:
        return step(f"query:{entity.name}", title, "fail",
                    f"{detail}; the mapping reads {', '.join(missing)}, which the query does not return",
                    ("add the columns to the query's SELECT list, or correct the mapping "
                     f"(`idwell-sync discover {tenant.id} TABLE` lists a table's columns)",
                     "die Spalten in die SELECT-Liste der Abfrage aufnehmen oder das Mapping korrigieren "
                     f"(`idwell-sync discover {tenant.id} TABELLE` zeigt die Spalten einer Tabelle)"), took)
    detail += "; every column the mapping reads is there" if used is not None else ""
    if mapper is None:                          # the users' gate is not known: see _mapper
        detail += "; the mapping is not checked over the rows: the occupancies, which decide which persons are mapped, could not be"
    if rows == 0:
        return step(f"query:{entity.name}", title, "warn", f"{detail}; the query returns no rows",
                    ("check the query's WHERE clause and that the login sees the rows",
                     "die WHERE-Bedingung der Abfrage prüfen und ob der Login die Zeilen sehen darf"), took)
    return step(f"query:{entity.name}", title, "ok", detail, seconds=took)


def _scan(entity: str, columns: list[str], rows, t: Probe) -> None:
    for row in rows:
        for name, value in zip(columns, row):
            if isinstance(value, str) and not value.isascii():
                key = f"{entity}.{name}"
                if MOJIBAKE.search(value):
                    t.garbled[key] = t.garbled.get(key, 0) + 1
                else:
                    t.texts[key] = t.texts.get(key, 0) + 1


def _umlauts(conn, t: Probe) -> Step:
    title = UMLAUTS_TITLE
    hint = ("read NVARCHAR, or VARCHAR with a Latin-1/CP1252 collation, through a driver that converts to Unicode "
            "(docs/sqlserver.md: ODBC Driver 18, or FreeTDS with ClientCharset=UTF-8); data garbled in the ERP "
            "itself must be corrected there",
            "NVARCHAR bzw. VARCHAR mit Latin-1/CP1252-Sortierung über einen Treiber lesen, der nach Unicode wandelt "
            "(docs/sqlserver.md: ODBC Driver 18 oder FreeTDS mit ClientCharset=UTF-8); im ERP selbst verfälschte "
            "Daten müssen dort korrigiert werden")
    sql = ROUND_TRIP.get(t.backend)
    detail = ""
    if sql:
        try:
            got = _scalar_row(conn, sql)
        except Exception as exc:
            conn.rollback()
            return step("umlauts", title, "warn", f"the round trip could not run: {message_of(exc)[:200]}", hint)
        wrong = [v for v in got if v != UMLAUTS]
        if wrong:
            return step("umlauts", title, "fail", f"sent {UMLAUTS!r}, received {wrong[0]!r}", hint)
        detail = f"{UMLAUTS!r} arrives intact"
    if t.garbled:
        worst = sorted(t.garbled.items(), key=lambda kv: -kv[1])[:3]
        where = ", ".join(f"{k} ({counted(n, 'value')})" for k, n in worst)
        return step("umlauts", title, "warn", f"{detail}; garbled text (e.g. 'Ã¼' for 'ü') in {where}".lstrip("; "), hint)
    seen = sum(t.texts.values())
    data = f"{counted(seen, 'text value')} with umlauts or other non-ASCII letters read cleanly" if seen else "no non-ASCII text in the data"
    return step("umlauts", title, "ok", "; ".join(x for x in (detail, data) if x))


def _clock(conn, t: Probe) -> Step:
    title = CLOCK
    queries = {"mssql": "SELECT SYSUTCDATETIME()", "postgresql": "SELECT CAST(now() AT TIME ZONE 'UTC' AS timestamp)"}
    if t.backend not in queries:
        return skipped("clock", title, "not applicable: no database server" if t.backend == "sqlite" else f"not checked for {t.backend}")
    before = dt.datetime.now(dt.timezone.utc)
    try:
        server: Any = _scalar_row(conn, queries[t.backend])[0]
    except Exception as exc:
        conn.rollback()
        return step("clock", title, "warn", f"could not read the server clock: {message_of(exc)[:200]}")
    after = dt.datetime.now(dt.timezone.utc)
    local = before + (after - before) / 2
    skew = (server.replace(tzinfo=dt.timezone.utc) - local).total_seconds()
    detail = f"server clock {'ahead of' if skew > 0 else 'behind'} this machine by {abs(skew):.0f} s"
    if abs(skew) > 120:
        return step("clock", title, "warn", detail,
                    ("synchronise the server's clock (NTP); contract dates and move-out dates are compared with the "
                     "sync server's date", "die Uhr des Servers synchronisieren (NTP); Vertrags- und Auszugsdaten werden "
                     "mit dem Datum des Sync-Servers verglichen"))
    return step("clock", title, "ok", detail)
