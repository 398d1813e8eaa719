"""The import API's contract over a PortalStore, independent of the HTTP plumbing.

`ImportApi.handle(method, target, headers, body)` answers one request below the base path
(/import/v1) as the spec says: bearer auth (401 without or with an unknown token, 403 for a token
of another customer), GET pages with an opaque cursor, PUT and DELETE of one record, and the
batch endpoint (upserts first, then deletes, in order; per-item results; a repeated
Idempotency-Key returns the first answer; 413 over 500 operations). The record rules and the 409
rules are the PortalStore's, so the local target and the sandbox answer alike.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from engine import contract
from engine.sandbox._writelog import WriteLog
from engine.targets._store_portal import PortalStore

BASE_PATH = "/import/v1"
BATCH_MAX = 500               # the spec: "Up to 500 operations in one request"
REPLAYS_KEPT = 20_000         # Idempotency-Keys remembered (oldest forgotten first)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> "Reply":
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(status, data, {"Content-Type": "application/json", **(headers or {})})


def error(status: int, code: str, message: str, field_: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    err = {"code": code, "message": message} | ({"field": field_} if field_ else {})
    return Reply.json(status, {"error": err}, headers)


def parse_tokens(given: list[str], customer: str) -> dict[str, str]:
    """token -> customer; 'acme:secret' is a token of customer acme, a bare 'secret' one of `customer`."""
    out = {}
    for item in given:
        owner, sep, token = item.partition(":")
        out[token if sep else owner] = owner if sep else customer
    return out


class ImportApi:
    def __init__(self, store: PortalStore, tokens: Mapping[str, str], customer: str, write_log: WriteLog | None = None):
        self.store = store
        self.tokens = dict(tokens)
        self.customer = customer
        self.write_log = write_log
        self._replays: OrderedDict[tuple[str, str, str], Reply] = OrderedDict()
        self._batch_lock = threading.Lock()

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply:
        url = urlsplit(target)
        denied = self._auth(headers.get("authorization"))
        if denied is not None:
            return denied
        raw = url.path[len(BASE_PATH):].strip("/").split("/") if url.path.startswith(BASE_PATH + "/") else []
        if not raw or not 1 <= len(raw) <= 2 or unquote(raw[0]) not in contract.RESOURCES:
            return error(404, "not_found", f"no such resource: {url.path}. Valid paths are "
                                           f"{BASE_PATH}/{{{'|'.join(contract.RESOURCES)}}}[/batch|/{{external_id}}]")
        resource = unquote(raw[0])
        if len(raw) == 1:
            return self.list(resource, url.query) if method == "GET" else _not_allowed("GET")
        try:
            external_id = unquote(raw[1], errors="strict")
        except UnicodeDecodeError:
            return error(400, "invalid", "the external_id in the path is not UTF-8 after percent-decoding", "external_id")
        if method == "POST" and raw[1] == "batch":
            return self.batch(resource, headers.get("idempotency-key"), body)
        if not 1 <= len(external_id) <= 200:
            return error(400, "invalid", "the external_id in the path must have 1 to 200 characters", "external_id")
        if method == "PUT":
            return self.put(resource, external_id, body)
        if method == "DELETE":
            return self.delete(resource, external_id)
        return _not_allowed("POST" if raw[1] == "batch" else "PUT, DELETE")

    def _auth(self, header: str | None) -> Reply | None:
        scheme, _, token = (header or "").partition(" ")
        owner = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if owner is None:
            return error(401, "unauthorized", "a valid bearer token is required",
                         headers={"WWW-Authenticate": 'Bearer realm="import-api"'})
        if owner != self.customer:
            return error(403, "forbidden", f"this token belongs to another customer ({owner}), not to {self.customer}")
        return None

    # -- endpoints ---------------------------------------------------------------------------
    def list(self, resource: str, query: str) -> Reply:
        params = parse_qs(query, keep_blank_values=True)
        limit_text = params.get("limit", [None])[-1]
        cursor = params.get("cursor", [None])[-1]
        try:
            limit = int(limit_text) if limit_text is not None else None
        except ValueError:
            return error(400, "invalid", f"limit must be an integer, got {limit_text!r}", "limit")
        try:
            page = self.store.list_page(resource, cursor, limit)
        except ValueError as exc:
            return error(400, "invalid", str(exc), "cursor" if "cursor" in str(exc) else "limit")
        return Reply.json(200, page)

    def put(self, resource: str, external_id: str, body: bytes) -> Reply:
        record, problem = _read_json(body)
        if problem:
            return problem
        result = self.store.put(resource, external_id, record)
        if not result.ok:
            return Reply.json(result.status, {"error": result.error})
        self._log(resource, [(external_id, "upsert", result.status, record)], None)
        return Reply.json(result.status, self.store.get(resource, external_id))

    def delete(self, resource: str, external_id: str) -> Reply:
        result = self.store.delete(resource, external_id)
        if not result.ok:
            return Reply.json(result.status, {"error": result.error})
        self._log(resource, [(external_id, "delete", result.status, None)], None)
        return Reply(204)

    def batch(self, resource: str, key: str | None, body: bytes) -> Reply:
        payload, problem = _read_json(body)
        if problem:
            return problem
        if not isinstance(payload, dict):
            return error(400, "invalid", "the batch body must be an object with 'upsert' and/or 'delete'")
        unknown = sorted(set(payload) - {"upsert", "delete"})
        if unknown:             # a client's misspelt 'upserts' would otherwise pass as an empty batch
            return error(400, "invalid", f"unknown key {unknown[0]!r} in the batch body: it holds 'upsert' "
                                         "and/or 'delete'", unknown[0])
        upsert, delete = payload.get("upsert", []), payload.get("delete", [])
        if not isinstance(upsert, list):
            return error(400, "invalid", "'upsert' must be a list of records", "upsert")
        if not isinstance(delete, list) or not all(isinstance(i, str) for i in delete):
            return error(400, "invalid", "'delete' must be a list of external_ids (strings)", "delete")
        if len(upsert) + len(delete) > BATCH_MAX:
            return error(413, "too_large", f"{len(upsert) + len(delete)} operations in one batch; "
                                           f"the limit is {BATCH_MAX}")
        slot = (self.customer, resource, key) if key else None
        with self._batch_lock:
            if slot is not None and slot in self._replays:
                self._replays.move_to_end(slot)
                return self._replays[slot]
            results = self.store.batch(resource, upsert, delete)
            reply = Reply.json(200, {"results": [
                {"external_id": ext, "op": op, "status": r.status} | ({"error": r.error} if not r.ok else {})
                for ext, op, r in results]})
            if slot is not None:
                self._replays[slot] = reply
                if len(self._replays) > REPLAYS_KEPT:
                    self._replays.popitem(last=False)
            self._log(resource, _applied(results, upsert), key)
        return reply

    def _log(self, resource: str, writes: list[tuple[str, str, int, Any]], key: str | None) -> None:
        if self.write_log is not None and writes:
            self.write_log.append(resource, writes, key)


def _applied(results: list, upsert: list) -> list[tuple[str, str, int, Any]]:
    """The accepted operations of a batch as (external_id, op, status, record)."""
    out = []
    for i, (ext, op, r) in enumerate(results):
        if r.ok:
            out.append((ext, op, r.status, upsert[i] if op == "upsert" else None))
    return out


def _read_json(body: bytes) -> tuple[Any, Reply | None]:
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_not_json) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        return None, error(400, "invalid", f"the body is not JSON in UTF-8: {exc}")
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return None, error(400, "invalid", "the body contains an unpaired UTF-16 surrogate escape")
    return value, None


def _not_json(name: str) -> Any:
    """Python's json reads NaN, Infinity and -Infinity; JSON has no such values."""
    raise ValueError(f"{name} is not a JSON value")


def _not_allowed(allow: str) -> Reply:
    return error(405, "invalid", f"method not allowed here; allowed: {allow}", headers={"Allow": allow})
