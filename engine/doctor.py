"""`idwell-sync doctor`: the customer's IT checklist, step by step, read-only.

`run_doctor(tenant)` yields one `Step` at a time, in the order the customer's IT works through
the list: secrets, DNS, TCP, driver, encryption, login, read-only permissions, each query,
umlauts, clock, and the target. Each step is ok, warn, fail or skip (not applicable, or not
reached because an earlier step failed) and carries what to do in English and German. The
source-specific steps live in engine.doctor_sql and engine.doctor_api. Nothing is written: SQL
sources are opened read-only, the target is only read.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal
from urllib.parse import urlsplit

from engine.classify import CAUSES, Cause
from engine.config.model import IdwellTarget, LocalTarget, Tenant
from engine.config.secrets import MISSING_SECRET_HINT, SecretError, tenant_secrets, unresolved
from engine.plural import counted
from engine.redact import redact

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Step:
    name: str                 # stable id: secrets, dns, tcp, driver, encryption, login, permissions, query:<entity>, ...
    title: str
    status: Status
    detail: str
    hint_en: str = ""
    hint_de: str = ""
    seconds: float | None = None
    note: str = ""            # what else the step found out, on a line of its own (an endpoint's reading)


def step(name: str, title: str, status: Status, detail: str, hint: Cause | tuple[str, str] | None = None,
         seconds: float | None = None, note: str = "") -> Step:
    """A step's result; its detail and note masked (engine.redact), as they may quote a driver's
    message or a link the API sent."""
    en, de = (hint.hint_en, hint.hint_de) if isinstance(hint, Cause) else (hint or ("", ""))
    return Step(name, title, status, redact(detail), en, de, None if seconds is None else round(seconds, 3),
                redact(note))


def skipped(name: str, title: str, why: str) -> Step:
    return Step(name, title, "skip", why)


def run_doctor(tenant: Tenant) -> Iterator[Step]:
    """Every step for this tenant, in checklist order."""
    yield check_secrets(tenant)
    if tenant.source.type == "sql":
        from engine.doctor_sql import sql_steps
        yield from sql_steps(tenant)
    else:
        from engine.doctor_api import api_steps
        yield from api_steps(tenant)
    yield check_target(tenant)


def failed(steps: list[Step]) -> bool:
    return any(s.status == "fail" for s in steps)


# --- steps every tenant has ------------------------------------------------------------------

def check_secrets(tenant: Tenant) -> Step:
    title = "secrets resolve / Secrets auflösbar"
    refs = [(where, s) for where, s in tenant_secrets(tenant) if s.references]
    if not refs:
        return step("secrets", title, "ok", "the tenant references no secrets")
    if problems := unresolved(refs):            # every reference, as plan, run and discover name them
        hint = MISSING_SECRET_HINT if not any(h for _, h in problems) else \
            tuple("; ".join(dict.fromkeys(h or default for _, h in problems)) for default in MISSING_SECRET_HINT)
        return step("secrets", title, "fail", "; ".join(text for text, _ in problems), hint)
    if problem := password_problem(tenant):
        return step("secrets", title, "fail", *problem)
    names = [r for _, s in refs for r in s.references]
    resolve = "resolves" if len(names) == 1 else "resolve"
    return step("secrets", title, "ok", f"{counted(len(names), 'reference')} {resolve}: {', '.join(names)}")


def password_problem(tenant: Tenant) -> tuple[str, tuple[str, str]] | None:
    """Why the SQL Server password, which resolves, cannot be written into the connection string of
    the tenant's driver (FreeTDS and a '}'), and what to do; None when it can, or does not resolve."""
    from engine.sources.odbc import password_problem as problem
    server = getattr(tenant.source, "server", None)
    if server is None:
        return None
    try:
        return problem(server, server.password.resolve())
    except SecretError:
        return None


DNS_HINT_API = ("the host name does not resolve: check the host in source.base_url, or ask the vendor for "
                "the API's address",
                "der Hostname lässt sich nicht auflösen: den Host in source.base_url prüfen oder den Anbieter "
                "nach der Adresse der API fragen")
"""check_dns's advice for an API source (CAUSES['dns'] speaks of source.host and SQL Server)."""


def check_dns(host: str, hint: Cause | tuple[str, str] | None = None) -> Step:
    title = f"DNS: {host}"
    if _is_ip(host):
        return step("dns", title, "ok", f"{host} is an IP address, no lookup needed")
    t0 = time.perf_counter()
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return step("dns", title, "fail", f"{host} does not resolve: {exc}", hint or CAUSES["dns"],
                    time.perf_counter() - t0)
    addresses = sorted({i[4][0] for i in infos})
    return step("dns", title, "ok", f"{host} -> {', '.join(addresses[:4])}", seconds=time.perf_counter() - t0)


def check_tcp(host: str, port: int, timeout: float, where: str = "source.url") -> Step:
    """A TCP connection to host:port; a port above 65535 (`where` it is written) fails without one."""
    from engine.sources.odbc_dsn import port_problem
    title = f"TCP {host}:{port}"
    if problem := port_problem(port, where):
        return step("tcp", title, "fail", problem,
                    (f"write the database server's TCP port (1-65535) in {where}",
                     f"den TCP-Port des Datenbankservers (1-65535) in {where} eintragen"))
    firewall = (f"open TCP {port} in the customer's firewall and NAT for the sync server's addresses, "
                "and make sure the server listens on that port",
                f"TCP {port} in Firewall und NAT des Kunden für die Adressen des Sync-Servers freigeben "
                "und prüfen, dass der Server auf diesem Port lauscht")
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.timeout:
        return step("tcp", title, "fail", f"no answer within {timeout:g} s (packets are dropped: a firewall or NAT)",
                    firewall, time.perf_counter() - t0)
    except ConnectionRefusedError:
        return step("tcp", title, "fail", f"connection refused: nothing listens on {host}:{port}",
                    firewall, time.perf_counter() - t0)
    except OSError as exc:
        return step("tcp", title, "fail", f"cannot connect: {exc.strerror or exc}", firewall, time.perf_counter() - t0)
    took = time.perf_counter() - t0
    return step("tcp", title, "ok", f"connected in {took * 1000:.0f} ms", seconds=took)


def check_target(tenant: Tenant) -> Step:
    target = tenant.target
    if target is None:
        return skipped("target", "target / Ziel", "the tenant declares no target")
    if isinstance(target, LocalTarget):
        return _check_local_target(target.path)
    return check_idwell_target(target)


def _check_local_target(path: Path) -> Step:
    title = f"target / Ziel: local store {path}"
    hint = ("make the directory writable for the user that runs the sync, or change target.path",
            "das Verzeichnis für den Benutzer des Syncs beschreibbar machen oder target.path ändern")
    if path.exists():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            return step("target", title, "fail", f"{path} exists but is not a writable file", hint)
        with open(path, "rb") as f:
            head = f.read(16)
        if head and head != b"SQLite format 3\x00":
            return step("target", title, "fail", f"{path} is not an SQLite file",
                        ("point target.path at the portal store (an SQLite file) or at a new path",
                         "target.path auf den Portal-Store (eine SQLite-Datei) oder einen neuen Pfad zeigen lassen"))
        return step("target", title, "ok", f"{path} exists and is writable")
    parent = path.parent if str(path.parent) else Path(".")
    existing = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        return step("target", title, "fail", f"cannot create {path}: {existing} is not writable", hint)
    return step("target", title, "ok", f"{path} will be created on the first run ({existing} is writable)")


def check_idwell_target(target: IdwellTarget, get: Callable | None = None) -> Step:
    import httpx
    url = target.base_url.rstrip("/") + "/buildings"
    title = f"target / Ziel: iDWELL import API {target.base_url}"
    try:
        token = target.token.resolve_header()
    except SecretError as exc:
        return step("target", title, "fail", str(exc), ("provide the token the tenant references",
                                                         "das referenzierte Token bereitstellen"))
    t0 = time.perf_counter()
    try:
        r = (get or httpx.get)(url, params={"limit": 1}, timeout=target.timeout,
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    except httpx.HTTPError as exc:
        return step("target", title, "fail", f"GET {url} failed: {type(exc).__name__}",
                    ("check that the sync server can reach the import API (proxy, firewall, DNS)",
                     "prüfen, dass der Sync-Server die Import-API erreicht (Proxy, Firewall, DNS)"), time.perf_counter() - t0)
    took = time.perf_counter() - t0
    if r.status_code in (401, 403):
        what = "the token is not valid" if r.status_code == 401 else "the token belongs to another customer"
        return step("target", title, "fail", f"GET {url}?limit=1 answered {r.status_code}: {what}",
                    (f"ask iDWELL for this customer's import token and store it where {target.token} points",
                     f"bei iDWELL das Import-Token dieses Kunden anfordern und dort ablegen, wohin {target.token} zeigt"), took)
    if r.status_code == 429 or r.status_code >= 500:
        return step("target", title, "warn", f"GET {url}?limit=1 answered {r.status_code} (busy or down; runs retry)",
                    ("try again later; if it persists, contact iDWELL support",
                     "später erneut versuchen; wenn es bleibt, den iDWELL-Support kontaktieren"), took)
    if r.status_code != 200:
        return step("target", title, "fail", f"GET {url}?limit=1 answered {r.status_code}",
                    ("check target.base_url (it ends in /import/v1)", "target.base_url prüfen (endet auf /import/v1)"), took)
    return step("target", title, "ok", f"the token is accepted (GET /buildings?limit=1: 200 in {took * 1000:.0f} ms)", seconds=took)


# --- output ----------------------------------------------------------------------------------

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def format_step(index: int, s: Step) -> str:
    lines = [f"[{MARK[s.status]}] {index:>2}. {s.title}: {s.detail}"]
    if s.note:
        lines.append(f"            {s.note}")
    if s.hint_en and s.status in ("warn", "fail"):
        lines.append(f"            what to do: {s.hint_en}")
        lines.append(f"            was tun:    {s.hint_de}")
    return "\n".join(lines)


def summary_line(steps: list[Step]) -> str:
    count = {k: sum(1 for s in steps if s.status == k) for k in MARK}
    verdict = "FAILED" if count["fail"] else "passed"
    warnings = f"{count['warn']} warning" + ("" if count["warn"] == 1 else "s")
    return f"doctor {verdict}: {count['fail']} failed, {warnings}, {count['ok']} ok, {count['skip']} skipped"


def to_json(tenant: Tenant, steps: list[Step]) -> str:
    return json.dumps({"tenant": tenant.id, "ok": not failed(steps), "steps": [asdict(s) for s in steps]},
                      ensure_ascii=False, indent=2)


def endpoint_of_url(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False
