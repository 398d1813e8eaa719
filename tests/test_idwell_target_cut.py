"""The idwell target against answers cut off on their way: a proxy or gateway between the sync
server and the portal that passes on a 200 whose JSON body it cut short (with a Content-Length
that fits the cut body, so that HTTP sees nothing wrong). Lost like a dropped connection: asked
for again, counted in the summary's `retries`, and given up with a message that says so. A batch
sent again keeps its Idempotency-Key, so that the portal answers it from its memory of the key
instead of applying it twice.

The portal is the sandbox's import API (engine.sandbox.ImportApi over a portal store, with its
Idempotency-Key memory and write log) behind a real HTTP server on 127.0.0.1 that cuts the
answers a test names.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Iterator

import pytest

from engine.errors import ExitCode, TargetError
from engine.sandbox import ImportApi, WriteLog, read_write_log
from engine.targets._http_client import ApiClient
from engine.targets._store_portal import PortalStore
from engine.targets.base import Change
from engine.targets.idwell import IdwellTarget
from local_http import serving

TOKEN = "tok-cut-answers-5150"


class Portal:
    """The import API on 127.0.0.1; `cut[request]` answers to `METHOD /path` (no query) are cut
    in half before they leave, after the API handled the request (a batch is applied)."""

    def __init__(self, api: ImportApi, base_url: str, cut: Counter, seen: list):
        self.api, self.base_url, self.cut, self.seen = api, base_url, cut, seen


@contextmanager
def portal(tmp_path, *, content_type: str | None = None) -> Iterator[Portal]:
    """`content_type`: every answer sent with this Content-Type instead of the API's (a proxy's page)."""
    api = ImportApi(PortalStore(tmp_path / "portal.sqlite"), {TOKEN: "acme"}, "acme",
                    WriteLog(tmp_path / "portal.writes.jsonl"))
    cut: Counter = Counter()
    seen: list[tuple[str, str | None]] = []          # (request, Idempotency-Key)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = f"{self.command} {self.path.split('?')[0]}"
            seen.append((request, self.headers.get("Idempotency-Key")))
            reply = api.handle(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            data, headers = reply.body, dict(reply.headers)
            if content_type is not None:
                data, headers = b"<html><body><h1>Please log in</h1></body></html>", {"Content-Type": content_type}
            elif cut[request] > 0:
                cut[request] -= 1
                data = data[:len(data) // 2]
            self.send_response(reply.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

    try:
        with serving(Handler) as server:
            yield Portal(api, f"http://127.0.0.1:{server.server_address[1]}/import/v1", cut, seen)
    finally:
        api.store.close()
        api.write_log.close()


def target(base_url: str, max_retries: int = 3) -> IdwellTarget:
    client = ApiClient(base_url, TOKEN, tenant="acme", token_ref="${env:IDWELL_TOKEN_ACME}",
                       max_retries=max_retries, sleep=lambda s: None)
    return IdwellTarget(client, tenant="acme", concurrency=1)


def building(i: int) -> dict:
    return {"external_id": f"B{i}", "name": f"Haus {i}", "street": "Hauptstr.", "house_number": str(i),
            "postal_code": "10115", "city": "Berlin", "country": "DE"}


def test_a_listing_page_cut_off_once_is_asked_for_again_and_counted(tmp_path):
    with portal(tmp_path) as p:
        p.api.store.batch("buildings", [building(i) for i in range(1200)], [])     # two pages of 1000
        p.cut["GET /import/v1/buildings"] = 1
        sync = target(p.base_url)
        try:
            read = list(sync.read("buildings"))
            retries = sync.retries()
        finally:
            sync.close()
    assert sorted(r["external_id"] for r in read) == sorted(f"B{i}" for i in range(1200))
    assert [r for r, _ in p.seen] == ["GET /import/v1/buildings"] * 3          # the first page twice, then the second
    assert retries["requests"] == 1 and retries["by_reason"] == {"body not valid JSON": 1}


def test_a_batch_whose_answer_was_cut_after_it_was_applied_is_answered_from_the_portals_memory(tmp_path):
    """The resend carries the first attempt's Idempotency-Key: the portal answers it as it
    answered the first time (201 created), and writes nothing again."""
    changes = [Change("buildings", "create", f"B{i}", building(i)) for i in range(3)]
    with portal(tmp_path) as p:
        p.cut["POST /import/v1/buildings/batch"] = 1
        sync = target(p.base_url)
        try:
            outcomes = sync.apply(changes)
            retries = sync.retries()
        finally:
            sync.close()
        assert [(o.change.external_id, o.ok, o.status) for o in outcomes] == \
            [("B0", True, 201), ("B1", True, 201), ("B2", True, 201)]       # the first answer, not 200 replaced
        first, again = p.seen
        assert first[0] == again[0] == "POST /import/v1/buildings/batch" and first[1] and first[1] == again[1]
        writes = list(read_write_log(p.api.write_log.path))
    assert [(w["external_id"], w["status"]) for w in writes] == [("B0", 201), ("B1", 201), ("B2", 201)]
    assert retries["by_reason"] == {"body not valid JSON": 1}


def test_answers_cut_off_every_time_give_up_naming_the_request_the_attempts_and_what_to_do(tmp_path):
    changes = [Change("buildings", "create", "B1", building(1))]
    with portal(tmp_path) as p:
        p.cut["POST /import/v1/buildings/batch"] = 99
        sync = target(p.base_url, max_retries=2)
        try:
            with pytest.raises(TargetError) as caught:
                sync.apply(changes)
        finally:
            sync.close()
        assert len(p.seen) == 3 and len({key for _, key in p.seen}) == 1       # one key for every attempt
        assert len(list(read_write_log(p.api.write_log.path))) == 1            # applied once
    error = caught.value
    assert error.exit_code == ExitCode.TARGET and error.retriable
    assert f"the import API at {p.base_url} answered POST /buildings/batch, but the answer could not be read " \
           "as JSON after 3 attempts (last: 200 with " in error.message
    assert "bytes of application/json: " in error.message
    assert "cut off or garbled on its way" in error.hint and "proxy or gateway" in error.hint
    assert "no results list" not in error.message and "base_url" not in error.hint
    assert error.in_flight == changes                # sent, its answer never read: unconfirmed
    assert TOKEN not in str(error)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_html_page_instead_of_json_stops_at_once_naming_what_came(tmp_path, method):
    """A login page or a proxy's page is not asked for again (it would come again, as it stops the
    API source at once): the message names what came, the hint where to look."""
    with portal(tmp_path, content_type="text/html; charset=utf-8") as p:
        sync = target(p.base_url)
        try:
            with pytest.raises(TargetError) as caught:
                if method == "GET":
                    list(sync.read("buildings"))
                else:
                    sync.apply([Change("buildings", "create", "B1", building(1))])
            retries = sync.retries()
        finally:
            sync.close()
    assert len(p.seen) == 1 and retries is None
    path = "/buildings" if method == "GET" else "/buildings/batch"
    error = caught.value
    assert error.exit_code == ExitCode.TARGET and not error.retriable
    assert f"answered {method} {path} with 200 and text/html, not JSON" in error.message
    assert "login page" in error.hint and "base_url" in error.hint
