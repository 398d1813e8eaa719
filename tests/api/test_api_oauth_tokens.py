"""How often the API source asks an OAuth token endpoint for a token, against an identity
provider and an API on 127.0.0.1 (one real HTTP server): a token is used until shortly before it
ends, whatever its lifetime, and an expires_in the source cannot use as a lifetime neither stops
the run nor makes it fetch a token for every page."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from engine.config.model import ApiAuth, ApiSource, EntityMapping, Paginator
from engine.config.secrets import Secret
from engine.demo.cloud_connect import answer_json
from engine.expr import compile_expression
from engine.sources.api import ApiExtractor
from local_http import ServedInThread

CLIENT_SECRET = "client-secret-0815"
PAGES = 5
MISSING = object()


class IdentityAndApi(ServedInThread):
    """POST /token issues tok-1, tok-2, ... with `expires_in` (MISSING: none in the answer); a
    token is refused (401) once `lives` seconds have passed since it was issued (None: never).
    GET /v1/objects?page=N answers page N of PAGES (a Link to the next), after `delay[N]`
    seconds. `pages`: (page, token) of every GET, `issued`: the tokens issued."""

    def __init__(self, expires_in, *, lives: float | None = None, delay: dict[int, float] | None = None):
        self.expires_in, self.lives, self.delay = expires_in, lives, delay or {}
        self.issued: dict[str, float] = {}
        self.pages: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: dict, headers: dict | None = None):
                answer_json(self, status, body, headers)

            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                if form.get("client_secret") != [CLIENT_SECRET]:
                    return self.answer(401, {"error": "invalid_client"})
                with outer._lock:
                    token = f"tok-{len(outer.issued) + 1}"
                    outer.issued[token] = time.monotonic()
                body = {"access_token": token, "token_type": "Bearer"}
                if outer.expires_in is not MISSING:
                    body["expires_in"] = outer.expires_in
                self.answer(200, body)

            def do_GET(self):
                page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                with outer._lock:
                    outer.pages.append((page, token))
                    issued = outer.issued.get(token)
                if issued is None or (outer.lives is not None and time.monotonic() - issued > outer.lives):
                    return self.answer(401, {"error": "invalid_token"})
                time.sleep(outer.delay.get(page, 0))
                link = {"Link": f'</v1/objects?page={page + 1}>; rel="next"'} if page < PAGES else {}
                self.answer(200, {"data": [{"id": page}]}, link)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def tokens_by_page(self) -> list[str]:
        """The token each page was answered with (a page refused and asked again: its last)."""
        return list({page: token for page, token in self.pages}.values())


@pytest.fixture(autouse=True)
def client_secret(monkeypatch):
    monkeypatch.setenv("OAUTH_SECRET", CLIENT_SECRET)


def read_pages(server: IdentityAndApi) -> list[int]:
    auth = ApiAuth(type="oauth2_client_credentials", token_url=f"{server.url}/token", client_id="sync",
                   client_secret=Secret("${env:OAUTH_SECRET}"))
    source = ApiSource(type="api", base_url=server.url, auth=auth, timeout=5)
    entity = EntityMapping(name="buildings", fields={"external_id": compile_expression("to_string(id)")},
                           key=("id",), endpoint="/v1/objects", record_selector="data",
                           paginator=Paginator(type="link_header", verify=False))    # each page once
    extractor = ApiExtractor(source, "oauth-test", run_date=dt.date(2026, 6, 1))
    try:
        return [r["id"] for _, records in extractor.batches(entity, {}) for r in records]
    finally:
        extractor.close()


def test_a_short_lived_token_is_used_for_every_page_while_it_is_valid():
    """expires_in 20, below the 30 s the source keeps in hand for a long-lived token: the pages,
    read in well under 15 s, need one token, not one each."""
    with IdentityAndApi(20) as server:
        assert read_pages(server) == list(range(1, PAGES + 1))
    assert list(server.issued) == ["tok-1"]
    assert server.tokens_by_page() == ["tok-1"] * PAGES


def test_a_token_is_replaced_shortly_before_it_ends():
    """expires_in 2: used for 1.5 s. Page 2 takes 1.7 s to answer, so page 3 needs a new token,
    fetched before the API would have refused the old one."""
    with IdentityAndApi(2, lives=2, delay={2: 1.7}) as server:
        assert read_pages(server) == list(range(1, PAGES + 1))
    assert server.tokens_by_page() == ["tok-1", "tok-1", "tok-2", "tok-2", "tok-2"]
    assert len(server.pages) == PAGES, "no page was refused"


@pytest.mark.parametrize("expires_in, warned", [
    (MISSING, False), (None, False), ("20", False), (0, True), (-5, True), ("soon", True), (True, True),
    ("NaN", True), ({"seconds": 20}, True)],
    ids=["missing", "null", "numeric-string", "zero", "negative", "text", "true", "nan", "object"])
def test_an_expires_in_that_is_no_lifetime_is_an_hour_and_one_token_for_the_run(expires_in, warned, caplog):
    """Not a login failure (the token itself is fine), and not a token for every page: missing or
    null (RFC 6749 makes expires_in optional) is taken for an hour without a word; a value that
    is not a number of seconds above 0 too, with a warning that quotes it."""
    with caplog.at_level(logging.WARNING, logger="engine.sources.api"):
        with IdentityAndApi(expires_in) as server:
            assert read_pages(server) == list(range(1, PAGES + 1))
    assert list(server.issued) == ["tok-1"]
    warnings = [r.getMessage() for r in caplog.records if "expires_in" in r.getMessage()]
    if warned:
        assert warnings == [f"tenant 'oauth-test': the token endpoint {server.url}/token gave its token an "
                            f"expires_in of {json.dumps(expires_in)}, not a number of seconds above 0: the token "
                            "is used for up to 60 minutes, and replaced sooner if the API refuses it"]
    else:
        assert warnings == []


def test_a_token_the_api_refuses_before_the_hour_is_replaced():
    """No expires_in, and the API ends the token after 1 s: the page refused (401) is asked
    again with a new token, and the run goes on."""
    with IdentityAndApi(MISSING, lives=1, delay={2: 1.2}) as server:
        assert read_pages(server) == list(range(1, PAGES + 1))
    assert list(server.issued) == ["tok-1", "tok-2"]
    assert server.pages[2] == (3, "tok-1") and server.pages[3] == (3, "tok-2"), "refused once, then asked again"
