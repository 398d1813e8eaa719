"""Target `idwell`: the iDWELL import API over HTTP (engine/contract/idwell-import-api.yaml).

  read(entity)    pages through GET /{resource}?limit=1000&cursor=...
  apply(changes)  writes through POST /{resource}/batch. Consecutive changes of one entity and
                  kind (upsert or delete) form a group; a group is cut into batches of
                  `batch_size`, which go out in parallel (at most `concurrency` at once); the next
                  group starts when the previous one is done, so the caller's dependency order
                  holds. Upserts send the full record, deletes the external_ids.

Every batch carries an Idempotency-Key: a hash of the tenant, this run (a random id drawn when the
target is opened), the apply call and the batch's content. A batch retried after a lost or cut-off
answer gets the first answer back instead of being applied twice; a later run, or the pipeline's
second attempt at refused records, writes again.

Retries, Retry-After, the rate limit and 401/403 live in engine.targets._http_client. Refusals
of single records (400 invalid, 404 not_found, 409 email_taken, unknown_reference,
has_dependents) come back as Outcome(ok=False, ...) and the run goes on.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Iterator, Sequence

from engine.config.secrets import SecretError
from engine.contract import not_utf8
from engine.errors import SecretReferenceError, TargetError
from engine.targets._http_client import Answer, ApiClient, says_json
from engine.targets.base import Change, Outcome, Progress

PAGE_SIZE = 1000
MAX_BATCH = 500
MAX_PAGES = 100_000          # a bound on one listing (1e8 records); a cursor loop ends earlier


class IdwellTarget:
    name = "idwell"

    def __init__(self, client: ApiClient, *, tenant: str, batch_size: int = MAX_BATCH, concurrency: int = 4,
                 run_id: str | None = None):
        self.client = client
        self.tenant = tenant
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.concurrency = max(1, concurrency)
        self.run_id = run_id or uuid.uuid4().hex
        self._calls = itertools.count(1)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"idwell-{tenant}")

    # -- read --------------------------------------------------------------------------------
    def read(self, entity: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"limit": PAGE_SIZE} | ({"cursor": cursor} if cursor is not None else {})
            answer = self.client.send("GET", f"/{entity}", params=params)
            if answer.response.status_code != 200:
                raise self._unexpected("GET", f"/{entity}", answer)
            page = self._payload("GET", f"/{entity}", answer)
            items, cursor = (page.get("items"), page.get("next_cursor")) if isinstance(page, dict) else (None, None)
            if not isinstance(items, list):
                raise self._unexpected("GET", f"/{entity}", answer, "no items list in the answer")
            if not all(isinstance(item, dict) and isinstance(item.get("external_id"), str) for item in items):
                raise self._unexpected("GET", f"/{entity}", answer, "an item that is not a record with an "
                                       "external_id")       # else: a crash, or a delete of external_id null
            yield from items
            if cursor is None:
                return
            if cursor in seen:
                raise self._unexpected("GET", f"/{entity}", answer, f"the cursor {cursor!r} came back twice")
            seen.add(cursor)
        raise TargetError(f"tenant '{self.tenant}': listing {entity} did not end after {MAX_PAGES} pages")

    # -- apply -------------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change], progress: Progress | None = None) -> list[Outcome]:
        """Batches sent `concurrency` at a time, a group (entity and action) after the other. A
        failure or an interruption part-way carries the outcomes of every batch answered before
        it (`partial_outcomes`) and the changes of the batches sent but not answered (`in_flight`:
        the portal may have written them or not; the next run sees which)."""
        call = next(self._calls)
        outcomes: list[Outcome | None] = [None] * len(changes)
        futures: dict = {}
        ends: dict = {}                   # future -> the end of its batch in `changes`
        taken: set = set()

        def take(f) -> None:              # a batch's answer into `outcomes`
            taken.add(f)
            lo = futures[f]
            batch_outcomes = f.result()
            outcomes[lo:lo + len(batch_outcomes)] = batch_outcomes
            if progress is not None:
                progress(len(batch_outcomes))
        try:
            for start, end in _groups(changes):
                futures = {}
                for lo in range(start, end, self.batch_size):
                    hi = min(lo + self.batch_size, end)
                    future = self._pool.submit(self._send, changes[lo:hi], call)
                    futures[future], ends[future] = lo, hi
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    failure = next((f.exception() for f in done if f.exception() is not None), None)
                    for f in done:
                        if f.exception() is None:
                            take(f)
                    if failure is not None:
                        raise failure
        except BaseException as exc:
            in_flight: list[Change] = []
            for f in futures:
                if f not in taken and f.done() and not f.cancelled() and f.exception() is None:
                    take(f)
                if f not in taken and not f.cancel():      # sent (answered with an error, or still going)
                    in_flight += changes[futures[f]:ends[f]]
            exc.partial_outcomes = [o for o in outcomes if o is not None]
            exc.in_flight = in_flight
            raise
        return outcomes  # type: ignore[return-value]

    def _send(self, batch: Sequence[Change], call: int) -> list[Outcome]:
        entity, deleting = batch[0].entity, batch[0].action == "delete"
        body = {"delete": [c.external_id for c in batch]} if deleting else {"upsert": [_record(c) for c in batch]}
        path = f"/{entity}/batch"
        try:
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except UnicodeEncodeError:      # a text that is no Unicode (a lone surrogate from an API source's JSON)
            return _without_unencodable(batch, lambda rest: self._send(rest, call))
        answer = self.client.send("POST", path, content=content, headers={
            "Content-Type": "application/json", "Idempotency-Key": self._key(entity, call, content)})
        status = answer.response.status_code
        if status == 413 and len(batch) > 1:          # the portal accepts fewer operations than we sent
            half = len(batch) // 2
            return self._send(batch[:half], call) + self._send(batch[half:], call)
        if status == 400:
            error = _error(self._payload("POST", path, answer))
            return [Outcome(c, False, 400, error.get("code") or "invalid", error.get("message"), error.get("field"))
                    for c in batch]
        if status != 200:
            raise self._unexpected("POST", path, answer)
        payload = self._payload("POST", path, answer)
        results = payload.get("results") if isinstance(payload, dict) else None
        if not isinstance(results, list):
            raise self._unexpected("POST", path, answer, "no results list in the answer")
        return _outcomes(batch, results, "delete" if deleting else "upsert")

    def _key(self, entity: str, call: int, content: bytes) -> str:
        """The batch's Idempotency-Key: the same for every retry of this request, new for a new run or call."""
        h = hashlib.sha256(f"{self.tenant}\0{self.run_id}\0{call}\0{entity}\0".encode())
        h.update(content)
        return h.hexdigest()[:40]

    def _payload(self, method: str, path: str, answer: Answer) -> Any:
        """The answer's JSON body. One that is not JSON at all (an HTML page: a proxy's error or
        login page, a web server at the wrong base_url) stops the run at once, unretried, as it
        stops the API source: asking again brings the same page. (A body that says JSON but does
        not parse, cut off on its way, was asked for again by the client.)"""
        response = answer.response
        if response.content and not says_json(response):
            kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
            raise TargetError(f"tenant '{self.tenant}': the import API at {self.client.base_url} answered "
                              f"{method} {path} with {response.status_code} and {kind}, not JSON",
                              hint="check the target's base_url (it ends in /import/v1): is it the import API, "
                                   "not a login page or a proxy's page? If a proxy between the sync server and "
                                   "the portal answers, ask whoever runs it")
        return answer.json

    def _unexpected(self, method: str, path: str, answer: Answer, why: str | None = None) -> TargetError:
        response = answer.response
        error = _error(answer.json)
        detail = why or f"{response.status_code} {error.get('code') or response.reason_phrase}" + \
            (f": {error['message']}" if error.get("message") else "")
        if response.status_code >= 500 and why is None:     # one not retried: 501, 505, 507, ...
            return TargetError(f"tenant '{self.tenant}': the import API at {self.client.base_url} answered "
                               f"{method} {path} with {detail}", retriable=True,
                               hint="the portal failed on its side: the next run retries everything not written; "
                                    "if it goes on, ask iDWELL")
        return TargetError(f"tenant '{self.tenant}': unexpected answer from the import API at "
                           f"{self.client.base_url} to {method} {path}: {detail}",
                           hint="check the target's base_url (it ends in /import/v1)")

    def retries(self) -> dict | None:
        """The requests sent again so far (timeouts, 429, 5xx, answers cut off on their way) and
        the time waited before them; None when every request was answered the first time."""
        client = self.client
        if not client.retried:
            return None
        return {"requests": sum(client.retried.values()), "waited_s": round(client.waited, 1),
                "by_reason": dict(client.retried.most_common())}

    def close(self) -> None:
        self.client.stop()                  # batches waiting to be retried give up: closing does not wait for them
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def _groups(changes: Sequence[Change]) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of consecutive changes with the same entity and kind (upsert or delete)."""
    start, n = 0, len(changes)
    while start < n:
        entity, deleting = changes[start].entity, changes[start].action == "delete"
        end = start + 1
        while end < n and changes[end].entity == entity and (changes[end].action == "delete") == deleting:
            end += 1
        yield start, end
        start = end


def _without_unencodable(batch: Sequence[Change], send) -> list[Outcome]:
    """The changes of a batch whose texts UTF-8 cannot encode (a lone surrogate) refused here, as
    the portal refuses a record it cannot read, each naming its field; the others sent (`send`)."""
    refused, rest = [], []
    for c in batch:
        values = {"external_id": c.external_id} if c.action == "delete" else _record(c)
        bad = not_utf8(values)
        if bad is None:
            rest.append(c)
        else:
            refused.append(Outcome(c, False, 400, "invalid", f"'{bad}' is not valid Unicode (it holds a lone "
                                                             "surrogate): correct the text in the ERP", bad))
    return refused + (send(rest) if rest else [])


def _record(c: Change) -> dict[str, Any]:
    record = c.record or {}
    return record if record.get("external_id") == c.external_id else {**record, "external_id": c.external_id}


def _outcomes(batch: Sequence[Change], results: list, op: str) -> list[Outcome]:
    by_id = {}
    for r in results:
        if isinstance(r, dict) and r.get("op", op) == op:
            by_id.setdefault(r.get("external_id"), r)
    out = []
    for i, c in enumerate(batch):
        r = results[i] if i < len(results) and isinstance(results[i], dict) \
            and results[i].get("external_id") == c.external_id else by_id.get(c.external_id)
        if r is None:
            out.append(Outcome(c, False, 502, "unavailable", "the portal's batch answer did not mention this record"))
            continue
        status = r.get("status") if isinstance(r.get("status"), int) else 502
        if 200 <= status < 300:
            out.append(Outcome(c, True, status))
        else:
            error = r.get("error") if isinstance(r.get("error"), dict) else {}
            out.append(Outcome(c, False, status, error.get("code"), error.get("message"), error.get("field")))
    return out


def _error(payload: Any) -> dict[str, Any]:
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def open_idwell(tenant, *, read_only: bool = False) -> IdwellTarget:
    """The TARGETS entry: the tenant's `target: {type: idwell, base_url, token, ...}` (reading
    it writes nothing: `read_only` changes nothing here)."""
    cfg = tenant.target
    ref = ", ".join(cfg.token.references) or "(inline token)"
    try:
        token = cfg.token.resolve_header()
    except SecretError as exc:
        raise SecretReferenceError(f"tenant '{tenant.id}': target token: {exc}", hint=exc.hint) from None
    client = ApiClient(cfg.base_url, token, tenant=tenant.id, token_ref=ref, timeout=cfg.timeout,
                       max_retries=cfg.max_retries, concurrency=cfg.concurrency, rate_limit=cfg.rate_limit)
    return IdwellTarget(client, tenant=tenant.id, batch_size=cfg.batch_size, concurrency=cfg.concurrency)
