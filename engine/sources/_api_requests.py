"""The API source's requests: a GET for a page and the POST for an OAuth token, each sent again
after a 429 or 500/502/503/504 answer, no answer, a body that cannot be decoded, or (a page) a
JSON body cut off on its way, up to the source's `max_retries` + 1 attempts in all (7 by default:
engine.backoff.RETRIES), after the longer of a backoff and the answer's Retry-After
(engine.backoff: the import API target's rule too; engine.retry_after: one longer than
RETRY_AFTER_MAX stops at once). Every wait is counted by its reason for the run summary
(`ApiRequests.retries`); an answer that is not to be retried becomes a SourceError that says what
failed and what to do.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from http import HTTPStatus
from typing import Any, Callable

import httpx

from engine.backoff import backoff
from engine.config.model import ApiSource
from engine.content_type import says_json
from engine.errors import SourceError
from engine.plural import counted
from engine.retry_after import RETRY_AFTER_MAX, asked, retry_after, too_long, wait_for

RETRY_STATUS = {429, 500, 502, 503, 504}


def look_hint(tenant_id: str) -> str:
    """Where to see what the API answers, with the tenant's own commands."""
    return (f"idwell-sync doctor {tenant_id} asks each endpoint for its first page; idwell-sync discover {tenant_id} "
            "lists the fields of the records each endpoint answers")


class ApiRequests:
    """The source's HTTP session (base_url, `auth`, timeout, the rate limit) and the requests sent
    again so far. `wait_to_retry(reason, seconds)` waits before a request is sent again, and counts
    it (the token requests of `auth` too)."""

    def __init__(self, source: ApiSource, tenant_id: str, auth: httpx.Auth, *,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep):
        self.source, self.tenant_id = source, tenant_id
        self.attempts = source.max_retries + 1  # a page's attempts in all, whatever made it ask again
        self._sleep = sleep                     # the waits before retries
        self.retried: Counter = Counter()       # why a request was sent again -> how often
        self.waited = 0.0                       # seconds spent waiting before those retries
        self._client = httpx.Client(base_url=source.base_url.rstrip("/") + "/", auth=auth,
                                    timeout=source.timeout, transport=transport,
                                    headers={"Accept": "application/json", "User-Agent": "idwell-sync"})
        self._interval = 1.0 / source.rate_limit if source.rate_limit else 0.0
        self._last = 0.0

    def retries(self) -> dict | None:
        """The requests sent again so far (429, 5xx, timeouts, dropped connections, bodies that
        cannot be read; a token request as `token ...`) and the time waited before them, for the
        run summary (`source_retries`, docs/summary.md); None when each was answered the first time."""
        if not self.retried:
            return None
        return {"requests": sum(self.retried.values()), "waited_s": round(self.waited, 1),
                "by_reason": dict(self.retried.most_common())}

    def wait_to_retry(self, reason: str, seconds: float) -> None:
        self.retried[reason] += 1
        self.waited += seconds
        self._sleep(seconds)

    def get_json(self, url: str, params: dict | None, entity: str) -> tuple[httpx.Response, Any]:
        """A page and its body. A body that its content type calls JSON but that does not parse (cut
        off or garbled on its way, by a gateway or proxy or the API itself) is asked for again, as a
        body that cannot be decoded is; any other answer that is not JSON stops the extract at once.
        The page has `attempts` in all, whatever made it ask again."""
        attempt = 0
        while attempt < self.attempts:
            response, attempt = self._get(url, params, entity, attempt + 1)
            try:                            # in the charset the answer names (httpx's json() reads UTF-8 only)
                return response, json.loads(response.text) if response.charset_encoding else response.json()
            except ValueError as exc:
                if response.is_redirect:
                    raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': {response.request.url.path} "
                                      f"answered {response.status_code}, a redirect to "
                                      f"{response.headers.get('location')}", cause="config",
                                      hint="set base_url to the address it redirects to (often https:// for http://); "
                                           "the engine does not follow redirects, so that the API's credentials "
                                           "never go to another address") from None
                content_type = response.headers.get("content-type", "no content type")
                if not says_json(content_type):
                    raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': {response.request.url.path} "
                                      f"answered {response.status_code} with {content_type}, not JSON", cause="unknown",
                                      hint="check base_url and endpoint: is it the API, not a login or proxy page?") from None
                if attempt < self.attempts:
                    self.wait_to_retry("body not valid JSON", backoff(attempt - 1))
                    continue
                query = response.request.url.query.decode("ascii", "replace")
                raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': GET {response.request.url.path}"
                                  f"{'?' + query if query else ''} answered {response.status_code} with {content_type}, "
                                  f"but the body is not valid JSON after {counted(attempt, 'attempt')} "
                                  f"({counted(len(response.content), 'byte')}: {str(exc)[:120]})", cause="undecodable",
                                  retriable=True,
                                  hint="the answer was cut off or garbled on its way (by a proxy or gateway in between, "
                                       "or by the API itself): the next run tries again; if it goes on, ask the vendor, "
                                       "or whoever runs the proxy or gateway"
                                       + retries_hint(self.source.max_retries)) from None
        raise AssertionError("unreachable")

    def same_origin(self, link: httpx.URL, entity: str) -> str:
        """A next-page link, refused unless it stays on base_url's scheme, host and port: every
        request carries the credentials, which must not go to another server (nor in clear text)."""
        base = self._client.base_url
        if (link.scheme, link.host, link.port) != (base.scheme, base.host, base.port):
            shown = f"{link.scheme}://{link.host}" + (f":{link.port}" if link.port else "")
            raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': the API's next-page link (Link header) "
                              f"points to {shown}, not to {self.source.base_url}; the credentials are not sent "
                              "to another server, so the extract stops here", cause="config",
                              hint="ask the vendor why the API pages to another address; if that address is the "
                                   "API's own, make it the source's base_url")
        return str(link)

    def _get(self, url: str, params: dict | None, entity: str, first: int = 1) -> tuple[httpx.Response, int]:
        """The answer to GET `url` and the attempt it came with: from `first` (the page's attempts
        so far, plus one) up to `attempts`."""
        for attempt in range(first, self.attempts + 1):
            if self._interval:
                wait = self._last + self._interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last = time.monotonic()
            try:
                r = self._client.get(url, params=params)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if attempt == self.attempts:
                    raise _transport_error(exc, f"tenant '{self.tenant_id}': entity '{entity}'{_request_of(exc)}",
                                           self.source.base_url, attempts=attempt,
                                           max_retries=self.source.max_retries) from None
                self.wait_to_retry(_transport_reason(exc), backoff(attempt - 1))
                continue
            if r.status_code in RETRY_STATUS:
                after = retry_after(r)
                if too_long(after):
                    query = r.request.url.query.decode("ascii", "replace")
                    raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': GET {r.request.url.path}"
                                      f"{'?' + query if query else ''} answered {r.status_code} and asked "
                                      f"{asked(r, after)}, longer than the {RETRY_AFTER_MAX:.0f} s a run waits for "
                                      "an answer: the extract stops here", cause="unknown", retriable=True,
                                      hint=_WAIT_HINTS[429 if r.status_code == 429 else 503])
                if attempt < self.attempts:
                    self.wait_to_retry(_status_reason(r.status_code), wait_for(after, backoff(attempt - 1)))
                    continue
            if r.status_code in (401, 403):
                ref = self.source.auth.key or self.source.auth.token or self.source.auth.client_secret
                raise SourceError(f"tenant '{self.tenant_id}': the API refused the credentials ({r.status_code}) "
                                  f"for {self.source.base_url}", cause="login_failed",
                                  hint=f"check the credential referenced as {ref}")
            if r.status_code >= 400:
                query = r.request.url.query.decode("ascii", "replace")
                raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': GET {r.request.url.path}"
                                  f"{'?' + query if query else ''} answered {r.status_code}"
                                  + (f" after {counted(attempt, 'attempt')}" if r.status_code in RETRY_STATUS else ""),
                                  cause="unknown", retriable=r.status_code in RETRY_STATUS or r.status_code >= 500,
                                  hint="the API failed on its side: the next run tries again; if it goes on, ask the "
                                       "vendor" + (retries_hint(self.source.max_retries)
                                                   if r.status_code in RETRY_STATUS else "")
                                       if r.status_code >= 500 else
                                       "the API refused more requests (429 Too Many Requests): the next run tries "
                                       "again; set source.rate_limit (requests per second) below the API's limit, "
                                       "or ask the vendor what it is" if r.status_code == 429 else
                                       "check the endpoint and its parameters against the API's documentation "
                                       f"({look_hint(self.tenant_id)})")
            return r, attempt
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()


def retries_hint(max_retries: int) -> str:
    """The end of the hint of an error after the retries (the source's `max_retries`): how to give
    an API that recovers slowly more attempts."""
    said = f"; source.max_retries is {max_retries} ({counted(max_retries + 1, 'attempt')} in all)"
    if max_retries >= 20:                   # the schema's maximum: more attempts cannot be given
        return said + ", the most it can be"
    return said + ": raise it (up to 20) for an API that takes longer to recover"


def post_token(url: str, data: dict, *, timeout: float, tenant_id: str, source: ApiSource,
               retry: Callable[[str, float], None]) -> tuple[httpx.Response, int, float]:
    """The token endpoint's answer to a token request, the attempt it came with and when that
    attempt was sent (time.monotonic), with the source's max_retries + 1 attempts in all.
    `retry(reason, seconds)` waits before it is sent again."""
    attempts = source.max_retries + 1
    for attempt in range(1, attempts + 1):     # a token endpoint is as flaky as the API
        sent = time.monotonic()
        try:
            r = httpx.post(url, data=data, timeout=timeout)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if attempt == attempts:
                raise _transport_error(exc, f"tenant '{tenant_id}': the token endpoint", url,
                                       attempts=attempt, max_retries=source.max_retries) from None
            retry(f"token {_transport_reason(exc)}", backoff(attempt - 1))
            continue
        if r.status_code in RETRY_STATUS:
            after = retry_after(r)
            if too_long(after):
                raise SourceError(f"tenant '{tenant_id}': the token endpoint {url} answered "
                                  f"{r.status_code} and asked {asked(r, after)}, longer than the "
                                  f"{RETRY_AFTER_MAX:.0f} s a run waits for an answer: the extract stops here",
                                  cause="unknown", retriable=True, hint=_WAIT_HINTS["token"])
            if attempt < attempts:
                retry(f"token {_status_reason(r.status_code)}", wait_for(after, backoff(attempt - 1)))
                continue
        break
    return r, attempt, sent


_WAIT_HINTS = {
    429: "the API limits requests and will not answer sooner: the next run tries again; set source.rate_limit "
         "(requests per second) below the API's limit, or ask the vendor what it is",
    503: "the API is down (maintenance?) for longer than a run waits: the next run tries again; if it goes on, "
         "ask the vendor",
    "token": "the API's login service is down or limits requests for longer than a run waits: the next run "
             "tries again; if it goes on, ask the vendor",
}


_TRANSPORT_HINTS = {
    "dns": "the host in source.base_url does not resolve: check it, or ask the vendor for the API's address",
    "tls_certificate": "the API's TLS certificate is not trusted here: check the sync server's CA certificates, "
                       "and whether a proxy in between replaces the certificate",
    "timeout": "the API did not answer in time: check the sync server's network path to it (proxy, "
               "firewall) and the vendor's status; raise source.timeout if it is only slow",
    "undecodable": "the answer's body does not match its Content-Encoding (e.g. gzip): ask the vendor, or "
                   "whoever runs a proxy or gateway in between, which of them alters it",
}
_UNREACHABLE_HINT = ("the API cannot be reached from the sync server: check the network path to it (proxy, "
                     "firewall) and the vendor's status")


def _request_of(exc: Exception) -> str:
    """': GET /path?query' of the request that found no answer, as a refused one is named ('' where
    httpx does not know it)."""
    try:
        url = exc.request.url
    except (AttributeError, RuntimeError):      # httpx raises RuntimeError for an error without its request
        return ""
    query = url.query.decode("ascii", "replace")
    return f": GET {url.path}{'?' + query if query else ''}"


def _transport_error(exc: Exception, what: str, base_url: str, *, attempts: int = 1,
                     max_retries: int | None = None) -> SourceError:
    """A request that found no answer (or one that cannot be decoded), with its cause (dns, timeout,
    unreachable, undecodable), how many times it was sent (`attempts`) and what to do (with the
    source's `max_retries`, where more attempts may help)."""
    from engine.classify import classify, message_of
    more = retries_hint(max_retries) if max_retries is not None else ""
    said = message_of(exc.__cause__ or exc)[:200] or type(exc).__name__
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(exc, httpx.DecodingError):
        return SourceError(f"{what}: the answer from {base_url} cannot be decoded{tries} ({said})",
                           cause="undecodable", retriable=True,
                           hint=_TRANSPORT_HINTS["undecodable"] + more)
    cause = "timeout" if isinstance(exc, httpx.TimeoutException) else classify(exc.__cause__ or exc).code
    cause = cause if cause in _TRANSPORT_HINTS else "unreachable"
    hint = _TRANSPORT_HINTS.get(cause, _UNREACHABLE_HINT)
    if cause in ("timeout", "unreachable"):     # a DNS name or a certificate that fails does not pass with more tries
        hint += more
    return SourceError(f"{what}: no answer from {base_url}{tries} ({cause}: {said})", cause=cause, retriable=True,
                       hint=hint)


def _status_reason(status: int) -> str:
    """A retried answer as the run summary counts it: `429 Too Many Requests`, `503 Service
    Unavailable` (the standard phrase, not the server's, so that runs count alike)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _transport_reason(exc: Exception) -> str:
    """A request retried without an answer, as the run summary counts it."""
    if isinstance(exc, httpx.DecodingError):
        return "body not decodable"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.CloseError)):
        return "dropped connection"
    if isinstance(exc, httpx.ConnectError):
        return "no connection"
    if isinstance(exc, httpx.ProxyError):
        return "proxy refused"
    return type(exc).__name__
