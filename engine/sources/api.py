"""The API source: DOMUS Cloud Connect (or any JSON REST API) read page by page with httpx.

Declared per entity in the mapping: `endpoint`, `record_selector` (jmespath into the response
body) and `paginator` (none, page_number, offset, cursor, link_header; see PAGINATORS). Records
are dicts (nested JSON); mapping expressions read them with dotted paths.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections import Counter
from http import HTTPStatus
from typing import Any, Callable, Iterator

import httpx
import jmespath

from engine.config.model import ApiSource, EntityMapping, Paginator
from engine.config.secrets import SecretError
from engine.content_type import says_json
from engine.errors import SecretReferenceError, SourceError
from engine.redact import remember
from engine.retry_after import RETRY_AFTER_MAX, asked, retry_after, too_long, wait_for
from engine.sources._readings import Readings

log = logging.getLogger(__name__)
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_ATTEMPTS = 6
TOKEN_MARGIN = 30.0          # seconds: an OAuth token is replaced this long before it ends, at most ...
TOKEN_MARGIN_SHARE = 0.25    # ... and at most this share of its lifetime (expires_in 20: used for 15 s)
TOKEN_LIFETIME = 3600.0      # seconds, for a token whose expires_in is missing or unusable


def _look(tenant_id: str) -> str:
    """Where to see what the API answers, with the tenant's own commands."""
    return (f"idwell-sync doctor {tenant_id} asks each endpoint for its first page; idwell-sync discover {tenant_id} "
            "lists the fields of the records each endpoint answers")


class _Auth(httpx.Auth):
    """API key header, bearer token, or OAuth2 client credentials (token fetched and refreshed).
    `retry(reason, seconds)` waits before a token request is sent again, and counts it.

    An OAuth token is used until shortly before it ends: `expires_in` seconds after its request
    was sent, less the smaller of TOKEN_MARGIN and a quarter of that lifetime, so that a token
    that lives 20 s is used for 15 s, one that lives an hour for 59.5 min. A token whose
    expires_in is missing or null is used for TOKEN_LIFETIME (RFC 6749 leaves its lifetime to the
    server's documentation); so is one whose expires_in is not a number of seconds above 0
    (`"soon"`, 0, -5, true), with a warning: fetching a token for every request because of it
    would flood the login service. A numeric string ("20") is a number. Whatever the lifetime,
    an API that refuses the token (401) gets a new one, once per request."""

    def __init__(self, source: ApiSource, tenant_id: str, retry: Callable[[str, float], None]):
        self.source, self.tenant_id, self._retry = source, tenant_id, retry
        self._token: str | None = None
        self._expires = 0.0
        self._warned = False

    def _secret(self, secret, *, header: bool = False) -> str:
        try:
            return secret.resolve_header() if header else secret.resolve()
        except SecretError as exc:
            raise SecretReferenceError(f"tenant '{self.tenant_id}': source auth: {exc}", hint=exc.hint) from None

    def _oauth_token(self, force: bool = False) -> str:
        if force or self._token is None or time.monotonic() >= self._expires:
            a = self.source.auth
            data = {"grant_type": "client_credentials", "client_id": a.client_id,
                    "client_secret": self._secret(a.client_secret)}
            if a.scope:
                data["scope"] = a.scope
            for attempt in range(1, MAX_ATTEMPTS + 1):     # a token endpoint is as flaky as the API
                sent = time.monotonic()
                try:
                    r = httpx.post(a.token_url, data=data, timeout=self.source.timeout)
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    if attempt == MAX_ATTEMPTS:
                        raise _transport_error(exc, f"tenant '{self.tenant_id}': the token endpoint",
                                               a.token_url, attempts=attempt) from None
                    self._retry(f"token {_transport_reason(exc)}", _backoff(attempt))
                    continue
                if r.status_code in RETRY_STATUS:
                    after = retry_after(r)
                    if too_long(after):
                        raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered "
                                          f"{r.status_code} and asked {asked(r, after)}, longer than the "
                                          f"{RETRY_AFTER_MAX:.0f} s a run waits for an answer: the run stops here",
                                          cause="unknown", retriable=True, hint=_WAIT_HINTS["token"])
                    if attempt < MAX_ATTEMPTS:
                        self._retry(f"token {_status_reason(r.status_code)}", wait_for(after, _backoff(attempt)))
                        continue
                break
            if r.status_code in RETRY_STATUS or r.status_code >= 500:
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered "
                                  f"{r.status_code} after {attempt} attempts", cause="unknown", retriable=True,
                                  hint="the API's login service is failing on its side: the next run tries again; "
                                       "if it goes on, ask the vendor")
            if r.status_code != 200:
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered "
                                  f"{r.status_code}", cause="login_failed",
                                  hint=f"check client_id and the secret {a.client_secret}")
            try:
                body = r.json()
                token, expires_in = body["access_token"], body.get("expires_in")
                if not isinstance(token, str) or not token:
                    raise TypeError
            except (ValueError, TypeError, KeyError, AttributeError):
                raise SourceError(f"tenant '{self.tenant_id}': the token endpoint {a.token_url} answered 200 "
                                  f"with {r.headers.get('content-type', 'no content type')} but no OAuth token "
                                  "(a JSON object with access_token and expires_in)", cause="login_failed",
                                  hint="check auth.token_url: is it the API's OAuth token endpoint, not a login "
                                       "page or proxy?") from None
            self._token = token
            remember(self._token)           # a secret too, for as long as it is valid
            lifetime = _lifetime(expires_in)
            if lifetime is None:
                if expires_in is not None and not self._warned:
                    self._warned = True
                    log.warning("tenant '%s': the token endpoint %s gave its token an expires_in of %s, not a "
                                "number of seconds above 0: the token is used for up to %d minutes, and replaced "
                                "sooner if the API refuses it", self.tenant_id, a.token_url,
                                json.dumps(expires_in)[:40], TOKEN_LIFETIME // 60)
                lifetime = TOKEN_LIFETIME
            self._expires = sent + lifetime - min(TOKEN_MARGIN, lifetime * TOKEN_MARGIN_SHARE)
        return self._token

    def auth_flow(self, request: httpx.Request):
        a = self.source.auth
        if a.type == "api_key":
            request.headers[a.header] = self._secret(a.key, header=True)
        elif a.type == "bearer":
            request.headers["Authorization"] = f"Bearer {self._secret(a.token, header=True)}"
        else:
            request.headers["Authorization"] = f"Bearer {self._oauth_token()}"
        response = yield request
        if response.status_code == 401 and a.type == "oauth2_client_credentials":
            request.headers["Authorization"] = f"Bearer {self._oauth_token(force=True)}"
            yield request


class ApiExtractor:
    def __init__(self, source: ApiSource, tenant_id: str, *, run_date: dt.date, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.source, self.tenant_id, self.run_date = source, tenant_id, run_date
        self._sleep = sleep                     # the waits before retries
        self.retried: Counter = Counter()       # why a request was sent again -> how often
        self.waited = 0.0                       # seconds spent waiting before those retries
        self.recovered: dict[str, int] = {}     # entity -> records only the second reading of its pages had
        self._client = httpx.Client(base_url=source.base_url.rstrip("/") + "/",
                                    auth=_Auth(source, tenant_id, self._wait_to_retry),
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

    def _wait_to_retry(self, reason: str, seconds: float) -> None:
        self.retried[reason] += 1
        self.waited += seconds
        self._sleep(seconds)

    def batches(self, entity: EntityMapping, extra_params: dict[str, Any]) -> Iterator[tuple[None, list[dict]]]:
        """The entity's records page by page. Once every page is read, a name the mapping reads
        that no record had is warned about: in JSON a misspelt or wrongly cased name is not an
        error, it reads as null in every record (for a query, binding a column that the query
        does not return fails instead).

        Pages by position (page_number, offset, and next-page links that count pages or records:
        engine.sources._readings.positional) are read a second time, unless the paginator's
        `verify` is false: a record removed in the ERP while the pages are read moves the ones
        after it back, so that the first record of the next page lands on a page read already
        and the first reading misses it. Taken for deleted, it would be archived in the portal
        until the next run. A record added moves them on, so that one comes again on the next
        page, with other values if it changed meanwhile, as a second ERP record with its key
        would. Which records of the two readings are mapped, and why by their external_id, not
        by the mapping's `key` (which may name less than the record): engine.sources._readings.
        A record removed for good is in neither and is deleted as before; one removed while the
        pages are read is at worst deleted a run later. A cursor names the last record read, so
        that nothing moves under it, and so does a next-page link that names one (?after=...):
        read once."""
        unread, seen = UnreadPaths(entity), 0
        readings = Readings(entity.paginator, _id_getter(entity))
        for link, records in self._pages(entity):
            records = readings.first(records, link)
            unread.see(records)
            seen += len(records)
            yield None, records
        for records in self._second_reading(entity, readings):
            unread.see(records)
            seen += len(records)
            yield None, records
        records = readings.held()
        if records:
            yield None, records
        self._moved(entity, readings)
        missing = unread.missing() if seen else []
        if missing:
            log.warning("tenant '%s': %s: no record from %s has %s; what reads it is null in every record. "
                        "Correct the name in the mapping (names are case-sensitive), unless the API leaves "
                        "the field out when it is empty", self.tenant_id, entity.name, entity.endpoint,
                        "; ".join(missing))

    def _second_reading(self, entity: EntityMapping, readings: Readings) -> Iterator[list[dict]]:
        """The second reading of pages by position (batches), page by page, as `readings` takes
        it; how many records the first had missed goes to `recovered`, and a warning names the
        first (by its ERP key)."""
        if not readings.second_reading:
            return
        for _, records in self._pages(entity):
            records = readings.second(records)
            if records:
                yield records
        missed = len(readings.recovered)
        if missed:
            self.recovered[entity.name] = missed
            one = missed == 1
            log.warning("tenant '%s': %s: the second reading of %s found %d record%s that the first had missed (%s): "
                        "records were removed in the ERP while the pages were read, moving the ones after them back "
                        "onto pages read already (or %s added meanwhile); %s kept, not taken for deleted",
                        self.tenant_id, entity.name, entity.endpoint, missed, "" if one else "s",
                        _key_of(entity, readings.recovered[0]), "it was" if one else "they were",
                        "it is" if one else "they are")

    def _moved(self, entity: EntityMapping, readings: Readings) -> None:
        """The warning about records that came again on a later page and were read once."""
        moved, changed = readings.moved, readings.changed
        if not moved:
            return
        log.warning("tenant '%s': %s: %d record%s from %s came again on a later page (%s): the records changed "
                    "while their pages were read (a record added before them moves them on); each is read once"
                    + (f" ({changed} with other values, taken as the page it came on first had them: the next run "
                       "reads the change)" if changed else "") + ". "
                    + ("A record removed meanwhile moves them back: the second reading of the pages finds what "
                       "that made the first miss" if readings.second_reading else
                       "One removed meanwhile moves them back, so that a record may be missing from this run "
                       "(the paginator's verify is off): the next run reads it again"),
                    self.tenant_id, entity.name, len(moved), "" if len(moved) == 1 else "s", entity.endpoint,
                    _key_of(entity, moved[0]))

    def _pages(self, entity: EntityMapping) -> Iterator[tuple[httpx.URL | None, list[dict]]]:
        """Each page's records, with the next-page link (link_header) that led to the page: None
        for the first page, and for the other paging styles."""
        params = {**self.source.params, **entity.params}
        selector = jmespath.compile(entity.record_selector) if entity.record_selector else None
        pager = entity.paginator or Paginator(type="none")
        url: str | None = entity.endpoint.lstrip("/")
        link: httpx.URL | None = None
        page, offset, cursor = pager.start, 0, None
        size = self.source.page_size
        previous: list | None = None          # the last page's records: a page that repeats them ends or fails
        short_at: int | None = None           # the page_number page that came back short (the end, or a cap)
        seen_cursors: set = set()
        capped = False
        for _ in range(1_000_000):
            query = dict(params)
            if pager.type == "page_number":
                query[pager.page_param or "page"] = page
                query[pager.size_param or "pageSize"] = size
            elif pager.type == "offset":
                query[pager.offset_param or "offset"] = offset
                query[pager.size_param or "limit"] = size
            elif pager.type == "cursor" and cursor:
                query[pager.cursor_param or "cursor"] = cursor
            response, body = self._get_json(url, query if pager.type != "link_header" or page == pager.start else None,
                                            entity.name)
            records = selector.search(body) if selector else body
            if not isinstance(records, list):
                raise SourceError(f"tenant '{self.tenant_id}': entity '{entity.name}': the record selector "
                                  f"{entity.record_selector!r} did not yield a list from {entity.endpoint}",
                                  cause="config", hint=f"check record_selector against a response ({_look(self.tenant_id)})")
            odd = next((r for r in records if not isinstance(r, dict)), records)
            if odd is not records:
                raise SourceError(f"tenant '{self.tenant_id}': entity '{entity.name}': {entity.endpoint} answered "
                                  f"a record that is not a JSON object: {json.dumps(odd)[:40]}",
                                  cause="config", hint=f"check record_selector against a response "
                                                       f"({_look(self.tenant_id)}): it must select the list of the "
                                                       "records themselves")
            if pager.type in ("page_number", "offset") and records and records == previous:
                if len(records) < size:
                    return                      # the last page again: the API repeats it past the end
                where, parameter = (f"page {page}", "page") if pager.type == "page_number" else (f"offset {offset}", "offset")
                raise self._paging_error(entity, f"{where} answered the same records as the page before: the API "
                                         f"ignores the {parameter} parameter",
                                         "check the paginator's parameter names against the API's documentation")
            if short_at is not None and records:
                raise self._paging_error(entity, f"page {short_at} answered {len(previous or ())} records for "
                                         f"{pager.size_param or 'pageSize'}={size}, and page {page} more: the API "
                                         f"caps its pages at {len(previous or ())} records, so page numbers for "
                                         f"{size} would skip records",
                                         f"set source.page_size to {len(previous or ())} (or less)")
            if records:
                yield link, records
            if pager.type == "none":
                return
            if pager.type in ("page_number", "offset"):
                if not records:                 # asked past the end: every page is read
                    return
                if pager.type == "offset" and previous is not None and len(previous) < size and not capped:
                    capped = True               # offsets count records: reading on is right, said once
                    log.warning("tenant '%s': %s: %s answers at most %d records for a limit of %d; reading on "
                                "until an empty page (set source.page_size to %d to save requests)", self.tenant_id,
                                entity.name, entity.endpoint, len(previous), size, len(previous))
                if len(records) < size and pager.type == "page_number":
                    short_at = page             # the last page, or the API caps its pages: the next one says
                page, offset, previous = page + 1, offset + len(records), records
            elif pager.type == "cursor":
                cursor = jmespath.search(pager.cursor_path or "next_cursor", body)
                if not cursor:
                    return
                if str(cursor) in seen_cursors:
                    raise self._paging_error(entity, f"the cursor {str(cursor)[:40]!r} came back a second time: "
                                             "the pages would repeat without end",
                                             f"check cursor_path against a response ({_look(self.tenant_id)})")
                seen_cursors.add(str(cursor))
            else:
                nxt = response.links.get("next", {}).get("url")
                if not nxt:
                    return
                link = response.url.join(nxt)
                url, page = self._same_origin(link, entity.name), page + 1
                if url in seen_cursors:
                    raise self._paging_error(entity, "the next-page link points to a page read already: the "
                                             "pages would repeat without end", "ask the vendor about the API's Link header")
                seen_cursors.add(url)
        raise SourceError(f"tenant '{self.tenant_id}': entity '{entity.name}': pagination did not end", cause="config")

    def _get_json(self, url: str, params: dict | None, entity: str) -> tuple[httpx.Response, Any]:
        """A page and its body. A body that its content type calls JSON but that does not parse (cut
        off or garbled on its way, by a gateway or proxy or the API itself) is asked for again, as a
        body that cannot be decoded is; any other answer that is not JSON stops the extract at once.
        The page has MAX_ATTEMPTS in all, whatever made it ask again."""
        attempt = 0
        while attempt < MAX_ATTEMPTS:
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
                if attempt < MAX_ATTEMPTS:
                    self._wait_to_retry("body not valid JSON", _backoff(attempt))
                    continue
                query = response.request.url.query.decode("ascii", "replace")
                raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': GET {response.request.url.path}"
                                  f"{'?' + query if query else ''} answered {response.status_code} with {content_type}, "
                                  f"but the body is not valid JSON after {attempt} attempts "
                                  f"({len(response.content)} bytes: {str(exc)[:120]})", cause="undecodable",
                                  retriable=True,
                                  hint="the answer was cut off or garbled on its way (by a proxy or gateway in between, "
                                       "or by the API itself): the next run tries again; if it goes on, ask the vendor, "
                                       "or whoever runs the proxy or gateway") from None
        raise AssertionError("unreachable")

    def _paging_error(self, entity: EntityMapping, problem: str, hint: str) -> SourceError:
        """Paging that cannot end well: stopped, so that the run neither loops for hours nor takes a
        part of the records for all of them."""
        return SourceError(f"tenant '{self.tenant_id}': entity '{entity.name}': {entity.endpoint}: {problem}",
                           cause="config", hint=hint)

    def _same_origin(self, link: httpx.URL, entity: str) -> str:
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
        so far, plus one) up to MAX_ATTEMPTS."""
        for attempt in range(first, MAX_ATTEMPTS + 1):
            if self._interval:
                wait = self._last + self._interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last = time.monotonic()
            try:
                r = self._client.get(url, params=params)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                if attempt == MAX_ATTEMPTS:
                    raise _transport_error(exc, f"tenant '{self.tenant_id}': entity '{entity}'",
                                           self.source.base_url, attempts=attempt) from None
                self._wait_to_retry(_transport_reason(exc), _backoff(attempt))
                continue
            if r.status_code in RETRY_STATUS:
                after = retry_after(r)
                if too_long(after):
                    query = r.request.url.query.decode("ascii", "replace")
                    raise SourceError(f"tenant '{self.tenant_id}': entity '{entity}': GET {r.request.url.path}"
                                      f"{'?' + query if query else ''} answered {r.status_code} and asked "
                                      f"{asked(r, after)}, longer than the {RETRY_AFTER_MAX:.0f} s a run waits for "
                                      "an answer: the run stops here", cause="unknown", retriable=True,
                                      hint=_WAIT_HINTS[429 if r.status_code == 429 else 503])
                if attempt < MAX_ATTEMPTS:
                    self._wait_to_retry(_status_reason(r.status_code), wait_for(after, _backoff(attempt)))
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
                                  + (f" after {attempt} attempts" if r.status_code in RETRY_STATUS else ""),
                                  cause="unknown", retriable=r.status_code in RETRY_STATUS or r.status_code >= 500,
                                  hint="the API failed on its side: the next run tries again; if it goes on, ask the "
                                       "vendor" if r.status_code >= 500 else
                                       "the API refused more requests (429 Too Many Requests): the next run tries "
                                       "again; set source.rate_limit (requests per second) below the API's limit, "
                                       "or ask the vendor what it is" if r.status_code == 429 else
                                       "check the endpoint and its parameters against the API's documentation "
                                       f"({_look(self.tenant_id)})")
            return r, attempt
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._client.close()


def read_paths(entity: EntityMapping) -> set[tuple[str, ...]]:
    """The plain paths into a record (('name',), ('address', 'city')) that the mapping of
    `entity` reads: its key, fields, contract and filters (Expr.paths)."""
    from engine.expr import compile_expression
    names = [compile_expression(name) for name in (*entity.key, *(f.field for f in entity.filters if f.field))]
    paths: set[tuple[str, ...]] = set()
    for expr in [*names, *entity.fields.values(), entity.contract, *(f.expr for f in entity.filters)]:
        if expr is not None:
            paths |= expr.paths
    return paths


class UnreadPaths:
    """The paths the mapping of an entity reads that none of the API's records seen so far
    has (`see` each page's records; `missing()` says which, with what each may be meant as)."""

    def __init__(self, entity: EntityMapping):
        self._missing = read_paths(entity)
        self._keys: dict[tuple[str, ...], set[str]] = {}     # a missing path's parent -> the keys seen there

    def see(self, records: list) -> None:
        for record in records:
            if not self._missing:
                return
            for path in list(self._missing):
                node: Any = record
                for depth, name in enumerate(path):
                    if not isinstance(node, dict):
                        break
                    if name not in node:
                        self._keys.setdefault(path[:depth], set()).update(node)
                        break
                    node = node[name]
                else:
                    self._missing.discard(path)

    def missing(self) -> list[str]:
        """"'address.City' (did you mean 'city'?)" for each path no record had, sorted."""
        import difflib
        out = []
        for path in sorted(self._missing):
            depth = next((d for d in range(len(path) - 1, -1, -1) if path[:d] in self._keys), 0)
            keys = sorted(self._keys.get(path[:depth], ()))
            name = path[depth]
            close = [k for k in keys if k.casefold() == name.casefold()] or \
                difflib.get_close_matches(name, keys, n=1, cutoff=0.75)
            out.append(f"'{'.'.join(path)}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return out


def _backoff(attempt: int) -> float:
    return min(30.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _id_getter(entity: EntityMapping) -> Callable[[dict], Any]:
    """A record's external_id as the mapping makes it (engine.mapping.Mapper): the identity the
    portal and the plan know the record by."""
    from engine.erp_keys import _as_text
    get = entity.fields["external_id"].bind(None)

    def id_of(record: dict) -> Any:
        value = get(record)
        return None if value is None else _as_text(value)
    return id_of


def _key_of(entity: EntityMapping, record: dict) -> str:
    """The record's ERP key as findings name it (the mapping's own key getter), for a warning:
    `key 100100`, `key 5000045/1000040`, an empty part as `(empty)`."""
    from engine.erp_keys import _key_getter
    return "key " + _key_getter(entity.key, None)(record)


def _lifetime(expires_in: Any) -> float | None:
    """A token's lifetime in seconds from its expires_in (a number, or a numeric string), if it is
    one above 0 and finite; else None."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float, str)):
        return None
    try:
        seconds = float(expires_in)
    except (ValueError, OverflowError):
        return None
    return seconds if 0 < seconds < float("inf") else None


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


def _transport_error(exc: Exception, what: str, base_url: str, *, attempts: int | None = None) -> SourceError:
    """A request that found no answer (or one that cannot be decoded), with its cause (dns, timeout,
    unreachable, undecodable), how many times it was sent (`attempts`) and what to do."""
    from engine.classify import classify, message_of
    said = message_of(exc.__cause__ or exc)[:200] or type(exc).__name__
    tries = f" after {attempts} attempts" if attempts and attempts > 1 else ""
    if isinstance(exc, httpx.DecodingError):
        return SourceError(f"{what}: the answer from {base_url} cannot be decoded{tries} ({said})",
                           cause="undecodable", retriable=True, hint=_TRANSPORT_HINTS["undecodable"])
    cause = "timeout" if isinstance(exc, httpx.TimeoutException) else classify(exc.__cause__ or exc).code
    cause = cause if cause in _TRANSPORT_HINTS else "unreachable"
    return SourceError(f"{what}: no answer from {base_url}{tries} ({cause}: {said})", cause=cause, retriable=True,
                       hint=_TRANSPORT_HINTS.get(cause, _UNREACHABLE_HINT))


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
