"""The idwell target's HTTP session against real servers on 127.0.0.1 that answer what no import
API should: a proxy that refuses the connection, a body that cannot be decoded, a listing whose
items are not records. Each is an error of the run that names what happened (exit 5), never an
internal error (exit 70)."""
from __future__ import annotations

from http.server import BaseHTTPRequestHandler

import pytest

from engine.errors import ExitCode, TargetError
from engine.targets._http_client import ApiClient
from engine.targets.base import Change
from engine.targets.idwell import IdwellTarget
from local_http import serving

TOKEN = "tok-http-side-4711"


def target(base_url: str) -> IdwellTarget:
    client = ApiClient(base_url, TOKEN, tenant="acme", token_ref="${env:IDWELL_TOKEN_ACME}", max_retries=2,
                       backoff_base=0.01)
    return IdwellTarget(client, tenant="acme")


def replying(status: int, body: bytes, headers: dict[str, str] | None = None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        seen: list[str] = []

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.seen.append(f"GET {self.path}")
            self.reply()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.seen.append(f"POST {self.path}")
            self.reply()

        def do_CONNECT(self):
            self.seen.append(f"CONNECT {self.path}")
            self.reply()

        def reply(self):
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    return Handler


def test_a_proxy_that_refuses_the_connection_is_a_target_error_naming_its_answer(monkeypatch):
    handler = replying(407, b"", {"Proxy-Authenticate": 'Basic realm="corp"'})
    with serving(handler) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sync = target("https://portal.example/import/v1")
        try:
            with pytest.raises(TargetError) as caught:
                sync.apply([Change("buildings", "create", "B1", {"external_id": "B1", "name": "Haus 1"})])
        finally:
            sync.close()
    assert handler.seen == ["CONNECT portal.example:443"] * 3, "retried as a request without an answer"
    assert caught.value.exit_code == ExitCode.TARGET and caught.value.retriable
    assert "did not answer POST /buildings/batch after 3 attempts (last: ProxyError: 407 Proxy Authentication " \
           "Required)" in caught.value.message
    assert TOKEN not in str(caught.value)


def reading_buildings_fails(handler) -> pytest.ExceptionInfo:
    """Reads the portal's buildings from a server answering with `handler`; the TargetError it raises."""
    with serving(handler) as api:
        sync = target(f"http://127.0.0.1:{api.server_address[1]}/import/v1")
        try:
            with pytest.raises(TargetError) as caught:
                list(sync.read("buildings"))
        finally:
            sync.close()
    return caught


def test_an_answer_that_cannot_be_decoded_is_a_target_error():
    """A gateway that labels a plain body as gzip: httpx cannot decode it."""
    handler = replying(200, b'{"items": [], "next_cursor": null}', {"Content-Encoding": "gzip"})
    caught = reading_buildings_fails(handler)
    assert caught.value.exit_code == ExitCode.TARGET and "(last: DecodingError: " in caught.value.message
    assert len(handler.seen) == 3


@pytest.mark.parametrize("items", [b'[1]', b'[{"name": "Haus 1"}]', b'[{"external_id": null, "name": "Haus 1"}]'])
def test_a_listing_whose_items_are_not_records_with_an_external_id_is_a_target_error(items):
    """Not a crash while comparing, nor a planned delete of external_id null."""
    caught = reading_buildings_fails(replying(200, b'{"items": ' + items + b', "next_cursor": null}'))
    assert caught.value.exit_code == ExitCode.TARGET
    assert "to GET /buildings: an item that is not a record with an external_id" in caught.value.message


@pytest.mark.parametrize("status, code, hint", [
    (503, "unavailable", "the portal or the network is down or overloaded"),
    (429, "rate_limited", "set target.rate_limit (requests per second) below the portal's limit")])
def test_a_portal_that_answers_a_retried_status_to_the_end_is_named_with_its_answer(status, code, hint):
    """It answered, so not 'did not answer'; the API source says 'answered 503 after 7 attempts'
    alike. A 429 names the setting that helps, as the source's does."""
    handler = replying(status, b'{"error": {"code": "%s", "message": "later"}}' % code.encode())
    caught = reading_buildings_fails(handler)
    assert len(handler.seen) == 3
    error = caught.value
    assert error.exit_code == ExitCode.TARGET and error.retriable
    assert f"answered GET /buildings with {status} {code} after 3 attempts" in error.message
    assert "did not answer" not in error.message and hint in error.hint


def test_a_5xx_that_is_not_retried_is_the_portals_failure_not_a_wrong_base_url():
    """507 Insufficient Storage: given up at once (as the API source does), and the hint does not
    send anyone to check base_url."""
    handler = replying(507, b'{"error": {"code": "unavailable", "message": "disk full"}}')
    caught = reading_buildings_fails(handler)
    assert len(handler.seen) == 1
    error = caught.value
    assert error.exit_code == ExitCode.TARGET and error.retriable
    assert "answered GET /buildings with 507 unavailable: disk full" in error.message
    assert "failed on its side" in error.hint and "base_url" not in error.hint
