"""The HTTP session of the `idwell` target: bearer auth, a request rate limit, retries.

`ApiClient.request` is the one place where the target talks to the import API. It
  * waits for the per-tenant rate limit (requests per second, shared by all worker threads);
  * retries 429 and 500/502/503/504 answers, timeouts, dropped connections, a proxy that refuses
    the request, an answer whose body cannot be decoded and one whose Content-Type says JSON but
    whose body does not parse (cut off or garbled on its way, as the API source asks again for
    one) with exponential backoff and jitter (engine.backoff, the API source's rule too). A retry
    sends the same request, headers included: a batch keeps its Idempotency-Key, so that one the
    portal applied but whose answer was lost or cut is answered from the portal's memory of the
    key, not applied twice;
  * honours Retry-After on 429, and on a 5xx that sends one (a 503 for maintenance), as the API
    source does (engine.retry_after: the longer of the backoff and the Retry-After; one longer
    than RETRY_AFTER_MAX gives up at once, naming the server's wait), and makes every thread of
    the client wait that long (the limit, or the outage, is the tenant's, not the request's);
  * turns 401 and 403 into a fatal TargetError at once, naming the tenant and the token's
    reference (e.g. ${env:IDWELL_TOKEN_ACME}), never the token;
  * gives up after `max_retries` retries (engine.backoff.RETRIES by default) with a retriable
    TargetError;
  * stops retrying once `stop()` was called (the target is closed: a run stopped by SIGTERM or
    a failure elsewhere), also in the middle of a wait, so that closing never waits for backoffs.
Every other answer (2xx, 400, 404, 409, 413, ...) goes back to the caller as it came; its body,
if it says JSON, parses (one that is not JSON at all, an HTML page, is for the caller to name).
`send` gives it back as an Answer with the body parsed once (the check above parsed it);
`request` gives the httpx.Response alone.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any, Callable

import httpx

from engine import content_type
from engine.backoff import BACKOFF_BASE, RETRIES, backoff
from engine.errors import TargetError
from engine.plural import counted
from engine.retry_after import RETRY_AFTER_MAX, asked, retry_after, too_long, wait_for

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class RateLimiter:
    """At most `rate` requests per second across threads; `pause(s)` holds every thread for s seconds."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


_UNREAD = object()


class Answer:
    """An answer of the import API (`response`) and its JSON body (`json`), parsed once: by the
    client's check for a body that says JSON, else (an empty body, an HTML page) when first asked
    for; None for a body that is empty or does not parse."""

    def __init__(self, response: httpx.Response, body: Any = _UNREAD):
        self.response, self._body = response, body

    @property
    def json(self) -> Any:
        if self._body is _UNREAD:
            try:
                self._body = self.response.json()
            except ValueError:
                self._body = None
        return self._body


class ApiClient:
    def __init__(self, base_url: str, token: str, *, tenant: str, token_ref: str, timeout: float = 30.0,
                 max_retries: int = RETRIES, concurrency: int = 4, rate_limit: float | None = None,
                 transport: httpx.BaseTransport | None = None, backoff_base: float = BACKOFF_BASE,
                 sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url.rstrip("/")
        self.tenant, self.token_ref = tenant, token_ref
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self._stopping = threading.Event()
        sleep = self._stopping.wait if sleep is time.sleep else sleep     # a wait that stop() ends
        self.limiter = RateLimiter(rate_limit, sleep=sleep)
        self._sleep = sleep
        self._rng = random.Random()
        self._counted = threading.Lock()
        self.retried: Counter = Counter()       # why a request was sent again -> how often
        self.waited = 0.0                       # seconds spent waiting before those retries
        self._http = httpx.Client(
            base_url=self.base_url + "/", timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                     "User-Agent": "idwell-sync"},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.send(method, path, params=params, json=json, content=content, headers=headers).response

    def send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             json: Any = None, content: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        last = reason = ""
        answered: int | None = None         # the last attempt's status; None: it had no answer
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._counted:
                    self.retried[reason] += 1
                    self.waited += wait
                self._sleep(wait)
            self.limiter.wait()
            if self._stopping.is_set():
                raise TargetError(f"tenant '{self.tenant}': stopped before {method} /{path.lstrip('/')} was "
                                  f"answered{f' (last: {last})' if last else ''}",
                                  hint="the next run writes what this one did not", retriable=True)
            try:
                response = self._http.request(method, path.lstrip("/"), params=params, json=json, content=content,
                                              headers=headers)
            except (httpx.TransportError, httpx.DecodingError) as exc:     # a ProxyError (407) too: no answer
                reason = type(exc).__name__        # counted by kind; the error says the whole of it
                last = f"{reason}: {exc}" if str(exc) else reason
                answered = None
                wait = backoff(attempt, self._rng, self.backoff_base)
                continue
            status = response.status_code
            if status in (401, 403):
                raise self._auth_error(response)
            if status == 429 or status in RETRY_STATUSES:
                last = reason = "429 rate_limited" if status == 429 else \
                    f"{status} {_error_code(response) or response.reason_phrase}"
                answered = status
                after = retry_after(response)
                if too_long(after):
                    raise TargetError(
                        f"tenant '{self.tenant}': the import API at {self.base_url} answered {method} "
                        f"/{path.lstrip('/')} with {last} and asked {asked(response, after)}, longer than the "
                        f"{RETRY_AFTER_MAX:.0f} s a run waits for an answer: the run stops here",
                        hint="the portal limits this tenant's requests and will not answer sooner; the next run "
                             "writes what this one did not" if status == 429 else
                             "the portal is down (maintenance?) for longer than a run waits; the next run writes "
                             "what this one did not", retriable=True)
                wait = wait_for(after, backoff(attempt, self._rng, self.backoff_base))
                if status == 429 or after is not None:
                    self.limiter.pause(wait)    # the limit, or the outage, holds every thread
                continue
            body, cut = _read_json(response)
            if cut is not None:             # cut off or garbled on its way: lost like a dropped connection
                reason = "body not valid JSON"
                last = f"{status} with {cut}"
                answered = status
                wait = backoff(attempt, self._rng, self.backoff_base)
                continue
            return Answer(response, body)
        request = f"{method} /{path.lstrip('/')}"
        attempts = self.max_retries + 1
        if reason == "body not valid JSON":
            raise TargetError(
                f"tenant '{self.tenant}': the import API at {self.base_url} answered {request}, but the answer "
                f"could not be read as JSON after {counted(attempts, 'attempt')} (last: {last})",
                hint="the answer was cut off or garbled on its way, by a proxy or gateway between the sync server "
                     "and the portal (or by the portal itself): the next run retries everything not written; if it "
                     "goes on, ask whoever runs the proxy or gateway, or iDWELL", retriable=True)
        if answered is None:
            what = f"did not answer {request} after {counted(attempts, 'attempt')} (last: {last})"
        else:
            what = f"answered {request} with {last} after {counted(attempts, 'attempt')}"
        raise TargetError(
            f"tenant '{self.tenant}': the import API at {self.base_url} {what}",
            hint="the portal refused more requests: the next run retries everything not written; set "
                 "target.rate_limit (requests per second) below the portal's limit, or ask iDWELL what it is"
            if answered == 429 else
            "the portal or the network is down or overloaded; the next run retries everything not written",
            retriable=True)

    def _auth_error(self, response: httpx.Response) -> TargetError:
        if response.status_code == 401:
            what = "refused the token (401 unauthorized)"
            hint = f"check that the token referenced as {self.token_ref} is set and still valid"
        else:
            what = "answered 403 forbidden: the token belongs to another customer"
            hint = f"check that {self.token_ref} holds this tenant's token for this base_url"
        return TargetError(f"tenant '{self.tenant}': the import API at {self.base_url} {what}; "
                           f"token {self.token_ref}", hint=hint)

    def stop(self) -> None:
        """No more attempts: a request waiting to be retried gives up at once (one being sent
        ends when it is answered or times out)."""
        self._stopping.set()

    def close(self) -> None:
        self.stop()
        self._http.close()


def says_json(response: httpx.Response) -> bool:
    """The answer's Content-Type says JSON (engine.content_type.says_json, as the API source reads it)."""
    return content_type.says_json(response.headers.get("content-type", ""))


def _read_json(response: httpx.Response) -> tuple[Any, str | None]:
    """The body parsed, if its Content-Type calls it JSON, and what is wrong with one that does
    not parse (`812 bytes of application/json: Expecting ',' delimiter: line 1 column 813 (char
    812)`, which quotes none of the body). An empty body and one that does not claim to be JSON
    (an HTML page: the caller says what it is) are left unread, with no problem."""
    if not response.content or not says_json(response):
        return _UNREAD, None
    try:
        return response.json(), None
    except ValueError as exc:           # UnicodeDecodeError too
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        return _UNREAD, f"{len(response.content)} bytes of {kind}: {str(exc)[:120]}"


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except Exception:  # noqa: BLE001 - any unreadable body simply has no code
        return None
