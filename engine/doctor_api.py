"""Doctor steps for an API source (DOMUS Cloud Connect or any JSON REST API): DNS, TCP,
authentication, and the first page of every endpoint against the mapping's fields, with how a
run reads the endpoint's pages (once, or twice: engine.sources._readings)."""
from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import httpx

from engine.config.model import ApiSource, EntityMapping, Tenant
from engine.doctor import DNS_HINT_API, Step, check_dns, check_tcp, endpoint_of_url, skipped, step
from engine.errors import ConfigError, SecretReferenceError, SourceError
from engine.plural import counted
from engine.sources._readings import cursor_param, position_param, read_twice
from engine.sources.unread_paths import UnreadPaths

PAGE = 20   # records asked for per endpoint: enough to see the fields, little load on the API


def api_steps(tenant: Tenant, transport=None) -> Iterator[Step]:
    source: ApiSource = tenant.source
    endpoint = endpoint_of_url(source.base_url)
    if endpoint is None:
        yield step("dns", "DNS", "fail", f"source.base_url has no host: {source.base_url}")
        return
    host, port = endpoint
    dns = check_dns(host, DNS_HINT_API)
    yield dns
    tcp = check_tcp(host, port, source.timeout) if dns.status != "fail" else skipped("tcp", f"TCP {host}:{port}", "not run: DNS failed")
    yield tcp
    if tcp.status in ("fail", "skip"):
        why = f"not run: {'DNS' if dns.status == 'fail' else 'TCP'} failed"
        yield skipped("auth", "authentication / Anmeldung", why)
        yield from _endpoints_not_run(tenant, why)
        return
    from engine.references import tenant_today
    from engine.sources.api import ApiExtractor
    small = dataclasses.replace(source, page_size=min(source.page_size, PAGE), rate_limit=None)
    extractor = ApiExtractor(small, tenant.id, run_date=tenant_today(tenant), transport=transport)
    try:
        first = True
        for entity in tenant.entities.values():
            result = _first_page(extractor, entity)
            if first:
                yield _auth_step(result)
                first = False
                if _refused(result):
                    yield from _endpoints_not_run(tenant, "not run: authentication failed")
                    return
            yield _endpoint_step(entity, _mapped(tenant, entity, result, extractor.run_date))
    finally:
        extractor.close()


def _endpoints_not_run(tenant: Tenant, why: str) -> Iterator[Step]:
    """Every endpoint's step, as not run (the checklist keeps its steps and their numbers)."""
    for entity in tenant.entities.values():
        yield skipped(f"endpoint:{entity.name}", _endpoint_title(entity), why)


def _first_page(extractor, entity):
    """(records, seconds, the next-page link the pages are judged by) of the first page, or the
    error it failed with."""
    t0 = time.perf_counter()
    try:
        records, link = extractor.first_page(entity)
        return records, time.perf_counter() - t0, link
    except (SourceError, SecretReferenceError, ConfigError) as exc:    # ConfigError: an expression a record breaks
        return exc


def _mapped(tenant: Tenant, entity: EntityMapping, result, run_date):
    """The first page's result, or the run's error (exit 3) for the first of its records that
    breaks an expression of the mapping: each field, filter and contract expression is computed
    for each record as a run computes it (engine.discover_fields; the external_id's error is
    raised while the page is read)."""
    if isinstance(result, Exception):
        return result
    from engine.discover_fields import check_records, sample_gate
    gate, ungated = sample_gate(tenant, entity, run_date)
    check = check_records(entity, result[0], None, gate, ungated)
    if not check.broken:
        return result
    errors = [e for record in check.broken for e in record.errors]
    certain = [e for e in errors if not ungated or e.what == "external_id" or e.what.startswith("filter ")]
    if certain:                # computed for every person: a run stops on it
        return certain[0].for_tenant(tenant.id)
    return _Unless(errors[0].for_tenant(tenant.id))


class _Unless(Exception):
    """A person's field that the first page breaks where the users' gate decides whether a run
    computes it: a run maps only the persons a contract in the window names, which the first page
    cannot tell."""

    def __init__(self, error: ConfigError):
        super().__init__(error.message)
        self.error = error


def _auth_step(result) -> Step:
    title = "authentication / Anmeldung"
    if isinstance(result, SecretReferenceError):     # not sent: the secret is to be set, not asked of the vendor
        return step("auth", title, "fail", result.message,
                    (result.hint or "set the secret the tenant references on the sync server",
                     "das Secret, auf das der Tenant verweist, auf dem Sync-Server setzen oder korrigieren "
                     "(siehe den Schritt secrets)"))
    if _refused(result):
        return step("auth", title, "fail", result.message,
                    ("check the API credentials the tenant references (key, token or client secret) with the ERP vendor",
                     "die referenzierten API-Zugangsdaten (Key, Token oder Client-Secret) beim ERP-Anbieter prüfen"))
    if isinstance(result, Exception):
        return skipped("auth", title, "not decided: the first endpoint failed for another reason (below)")
    return step("auth", title, "ok", "the API accepted the credentials")


_GERMAN_HINTS = (     # the source's own hints (engine.sources._api_requests), by how they begin
    ("the API limits requests", "die API begrenzt die Anfragen und antwortet nicht früher: der nächste Lauf versucht "
     "es wieder; source.rate_limit (Anfragen pro Sekunde) unter das Limit der API setzen oder den ERP-Anbieter "
     "nach dem Limit fragen"),
    ("the API refused more requests", "die API hat weitere Anfragen abgelehnt (429): der nächste Lauf versucht es "
     "wieder; source.rate_limit unter das Limit der API setzen oder den ERP-Anbieter fragen"),
    ("the API is down", "die API ist länger nicht erreichbar (Wartung?), als ein Lauf wartet: der nächste Lauf "
     "versucht es wieder; hält es an, den ERP-Anbieter fragen"),
    ("the API's login service", "der Anmeldedienst der API ist nicht erreichbar oder begrenzt die Anfragen: der "
     "nächste Lauf versucht es wieder; hält es an, den ERP-Anbieter fragen"),
    ("the API failed on its side", "die API meldet einen Fehler auf ihrer Seite: der nächste Lauf versucht es "
     "wieder; hält es an, den ERP-Anbieter fragen (die Meldung nennt die Anfrage)"),
    ("the answer was cut off", "die Antwort kam abgeschnitten oder verfälscht an (Proxy oder Gateway dazwischen, "
     "oder die API selbst): der nächste Lauf versucht es wieder; hält es an, den ERP-Anbieter bzw. den Betreiber "
     "des Proxys fragen"),
    ("the answer's body does not match", "der Inhalt der Antwort passt nicht zu ihrem Content-Encoding: den "
     "ERP-Anbieter bzw. den Betreiber eines Proxys oder Gateways dazwischen fragen, wer ihn verändert"),
    ("the host in source.base_url does not resolve", "der Hostname in source.base_url wird nicht aufgelöst: ihn "
     "prüfen oder den ERP-Anbieter nach der Adresse der API fragen"),
    ("the API's TLS certificate is not trusted", "dem TLS-Zertifikat der API wird hier nicht vertraut: die "
     "CA-Zertifikate des Sync-Servers prüfen, und ob ein Proxy dazwischen das Zertifikat ersetzt"),
    ("the API did not answer in time", "die API hat nicht rechtzeitig geantwortet: den Netzweg vom Sync-Server "
     "(Proxy, Firewall) und den Status des Anbieters prüfen; ist sie nur langsam, source.timeout erhöhen"),
    ("the API cannot be reached", "die API ist vom Sync-Server aus nicht erreichbar: den Netzweg (Proxy, Firewall) "
     "und den Status des Anbieters prüfen"),
    ("check base_url and endpoint", "base_url und Endpoint prüfen: antwortet dort die API, nicht eine Anmelde- "
     "oder Proxy-Seite?"),
    ("set base_url to the address it redirects to", "base_url auf die Adresse setzen, auf die umgeleitet wird "
     "(oft https:// statt http://): der Sync folgt keinen Umleitungen, damit die Zugangsdaten nie an eine andere "
     "Adresse gehen"),
    ("ask the vendor why the API pages", "den ERP-Anbieter fragen, warum die API auf eine andere Adresse "
     "weiterblättert; ist es die eigene Adresse der API, sie als base_url eintragen"),
)


def german_hint(hint: str) -> str:
    """The German line for a hint of the API source, for the customer's IT: its own words where
    known; else what to do with the English line, which names the request and the answer."""
    more = ("; source.max_retries erhöhen (bis 20), wenn die API länger braucht, um sich zu erholen"
            if "source.max_retries is" in hint and "the most it can be" not in hint else "")
    for start, german in _GERMAN_HINTS:
        if hint.startswith(start):
            return german + more
    return "die Meldung oben (Englisch) an den ERP-Anbieter weitergeben: sie nennt die Anfrage und die Antwort"


def _refused(result) -> bool:
    """Whether the first page failed for the credentials: refused by the API, or not to be sent
    (a secret that is not set, or cannot be a header)."""
    return isinstance(result, SecretReferenceError) or getattr(result, "cause", "") == "login_failed"


def _endpoint_title(entity) -> str:
    return f"endpoint {entity.endpoint} ({entity.name})"


def _endpoint_step(entity, result) -> Step:
    name, title = f"endpoint:{entity.name}", _endpoint_title(entity)
    if isinstance(result, _Unless):
        return step(name, title, "warn", result.error.message + " (a run computes it only for a person with a "
                    "contract in the contract window, and stops then, exit 3)",
                    (result.error.hint + "; if the person has no current contract, the run skips it",
                     "den Ausdruck in den Overrides des Tenants oder im Mapping korrigieren (docs/functions.md); "
                     "ohne aktuellen Vertrag überspringt der Lauf die Person"))
    if isinstance(result, ConfigError):         # an expression of the mapping that a record of the page breaks
        return step(name, title, "fail", result.message,
                    (result.hint, "den Ausdruck in den Overrides des Tenants oder im Mapping korrigieren "
                                  "(docs/functions.md)"))
    if isinstance(result, Exception):
        own = getattr(result, "hint", None)       # the error's own advice (a server that keeps failing: max_retries)
        return step(name, title, "fail", getattr(result, "message", str(result)),
                    (own, german_hint(own)) if own else
                    ("check the endpoint and record_selector in the mapping", "Endpoint und record_selector im Mapping prüfen"))
    records, took, link = result
    reading = pages_reading(entity, link)
    if not records:
        return step(name, title, "warn", "the first page holds no records",
                    ("check the endpoint's parameters and that the account sees data",
                     "die Parameter des Endpoints prüfen und ob das Konto Daten sieht"), took, reading)
    used = entity.source_names()
    unread = UnreadPaths(entity)
    unread.see(records)
    missing = unread.missing()
    detail = f"{counted(len(records), 'record')} on the first page in {took:.2f} s"
    if missing:
        return step(name, title, "warn", f"{detail}; no record has {'; '.join(missing)}",
                    ("compare the mapping's field names with a response: names are case-sensitive "
                     "(or the field is empty on this page)",
                     "die Feldnamen des Mappings mit einer Antwort vergleichen: Groß- und Kleinschreibung "
                     "zählt (oder das Feld ist auf dieser Seite leer)"), took, reading)
    return step(name, title, "ok", detail + ("; every field the mapping reads is there" if used is not None else ""),
                seconds=took, note=reading)


_MOVE = "move when records are added or removed in the ERP while the pages are read"
_SNAPSHOT = "(verify: false reads them once, for an API that serves a snapshot)"


def pages_reading(entity: EntityMapping, link: httpx.URL | None) -> str:
    """How a run reads the endpoint's pages, once or twice (engine.sources._readings.read_twice),
    and why; for next-page links judged by `link`, the first one, what to set if that is wrong."""
    pager = entity.paginator
    kind, verify = (pager.type, pager.verify) if pager else ("none", None)
    twice = read_twice(pager, link)
    if kind == "none":
        return "pages: read once, because the endpoint has no paginator (one request)"
    if kind == "cursor":
        return "pages: read once, because a cursor names the last record read, so that nothing moves under it"
    if verify is not None:
        return f"pages: read {'twice' if twice else 'once'}, because the paginator's verify is {str(verify).lower()}"
    if kind in ("page_number", "offset"):
        what = "page numbers" if kind == "page_number" else "offsets"
        return f"pages: read twice, because {what} count positions, which {_MOVE} {_SNAPSHOT}"
    if link is None:
        return ("pages: read once, because the first page names no next page; with more pages a run reads "
                "them twice if the first next-page link counts pages or records (?page=, ?offset=), else once: "
                "set verify in the entity's paginator to decide")
    shown = "?" + link.query.decode("ascii", "replace")
    counter, cursor = position_param(link), cursor_param(link)
    if cursor is not None:
        besides = f" (its '{counter}' only numbers the page)" if counter is not None else ""
        return (f"pages: read once, because the first next-page link ({shown}) names the last record read by "
                f"'{cursor}'{besides}, so that nothing moves under it. If the API's pages count positions all "
                "the same, set verify: true in the entity's paginator")
    if counter is not None:
        return (f"pages: read twice, because the first next-page link ({shown}) counts pages or records by "
                f"'{counter}', and such pages {_MOVE} {_SNAPSHOT}")
    return (f"pages: read once, because the first next-page link ({shown}) has no parameter taken to count "
            "pages or records (such as page, offset, $skip or startIndex), so it is taken to name the last "
            "record read. If the API's links count pages or records by another name, set verify: true in the "
            "entity's paginator")
