"""Retry-After, one rule for both HTTP clients (engine.retry_after): the API source reading the
ERP and the idwell target reading the portal, each against the same real HTTP server on
127.0.0.1 that answers 429 or 503 first. The waits are recorded, not slept (each client takes
a `sleep`), so that a test of a five-minute wait takes no time."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.config.model import ApiAuth, ApiSource, EntityMapping, Paginator
from engine.config.secrets import Secret
from engine.errors import ExitCode, SyncError
from engine.expr import compile_expression
from engine.sources.api import ApiExtractor
from engine.targets._http_client import ApiClient
from engine.targets.idwell import IdwellTarget
from local_http import ServedInThread

KEY = "retry-after-key-4711"
BODY = json.dumps({"data": [{"id": 1}], "items": [{"external_id": "B1"}], "next_cursor": None}).encode()
"""A page both clients read: the source's records under `data`, the portal's under `items`."""


class Throttling(ServedInThread):
    """Answers each request with the next of `steps` ((status, Retry-After or None)), then 200."""

    def __init__(self, *steps: tuple[int, str | None]):
        self.steps, self.requests = list(steps), []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with lock:
                    outer.requests.append(self.path)
                    status, after = outer.steps.pop(0) if outer.steps else (200, None)
                body = BODY if status == 200 else b'{"error": {"code": "unavailable", "message": "later"}}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if after is not None:
                    self.send_header("Retry-After", after)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@dataclass
class Read:
    error: SyncError | None
    retries: dict | None            # the summary's source_retries / retries
    exit_code: ExitCode             # what a run that fails so exits with


def read_source(server: Throttling) -> Read:
    source = ApiSource(type="api", base_url=server.url, auth=ApiAuth(type="api_key", key=Secret("${env:RA_KEY}")),
                       timeout=5)
    entity = EntityMapping(name="buildings", fields={"external_id": compile_expression("to_string(id)")},
                           key=("id",), endpoint="/v1/objects", record_selector="data",
                           paginator=Paginator(type="none"))
    extractor = ApiExtractor(source, "acme", run_date=dt.date(2026, 6, 1), sleep=lambda s: None)
    try:
        assert [r["id"] for _, records in extractor.batches(entity, {}) for r in records] == [1]
        error = None
    except SyncError as exc:
        error = exc
    finally:
        extractor.close()
    return Read(error, extractor.retries(), ExitCode.SOURCE)


def read_target(server: Throttling) -> Read:
    client = ApiClient(f"{server.url}/import/v1", KEY, tenant="acme", token_ref="${env:RA_KEY}",
                       sleep=lambda s: None)
    target = IdwellTarget(client, tenant="acme")
    try:
        assert [r["external_id"] for r in target.read("buildings")] == ["B1"]
        error = None
    except SyncError as exc:
        error = exc
    finally:
        target.close()
    return Read(error, target.retries(), ExitCode.TARGET)


@pytest.fixture(params=[read_source, read_target], ids=["source", "target"])
def read(request, monkeypatch):
    monkeypatch.setenv("RA_KEY", KEY)
    return request.param


@pytest.fixture
def away_from_gmt():
    """The machine's clock in New Zealand (UTC+12 or +13): an HTTP-date read as local time is
    half a day off."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Auckland"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def http_date(seconds_ahead: float, form: str = "imf") -> str:
    when = time.time() + seconds_ahead
    if form == "imf":
        return email.utils.formatdate(when, usegmt=True)      # Sun, 06 Nov 1994 08:49:37 GMT
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(when)).replace(" 0", "  ", 1)  # asctime


@pytest.mark.parametrize("status, after", [(429, "120"), (503, "300"), (429, "299.5")])
def test_a_retry_after_of_up_to_five_minutes_is_waited_for_as_asked(read, status, after):
    """Not cut to a minute (the source did), not sooner than the server asked."""
    with Throttling((status, after)) as server:
        got = read(server)
    assert got.error is None and len(server.requests) == 2
    assert got.retries["requests"] == 1 and got.retries["waited_s"] == pytest.approx(float(after), abs=0.05)


@pytest.mark.parametrize("form", ["imf", "asctime"])
def test_a_retry_after_given_as_an_http_date_is_waited_for_until_then(read, form, away_from_gmt):
    """All forms of an HTTP-date, in GMT whatever the machine's time zone (asctime's form names
    no zone: read as local time it was 12 or 13 hours off, in the past, and not waited for)."""
    with Throttling((503, http_date(100, form))) as server:
        got = read(server)
    assert got.error is None and len(server.requests) == 2
    assert 97 <= got.retries["waited_s"] <= 100.5


@pytest.mark.parametrize("status, after, asked", [
    (429, "3600", "to wait 3600 s (Retry-After: 3600)"), (503, "301", "to wait 301 s (Retry-After: 301)"),
    (503, "1e999", "to wait without end (Retry-After: 1e999)")])
def test_a_retry_after_beyond_five_minutes_stops_at_once_naming_the_servers_wait(read, status, after, asked):
    """Neither waited for (a night run does not hold its tenant's window for one answer) nor cut
    short (asked sooner, the server refuses again): the run stops, retriable, and says how long
    the server asked it to wait."""
    with Throttling((status, after), (200, None)) as server:
        got = read(server)
    assert len(server.requests) == 1, "not asked again"
    assert got.retries is None, "nothing waited for"
    error = got.error
    assert error is not None and error.retriable and error.exit_code == got.exit_code
    stops = "the extract stops here" if read is read_source else "the run stops here"     # doctor reads a source too
    assert f" {status}" in error.message and f"asked {asked}, longer than the 300 s a run waits for an " \
        f"answer: {stops}" in error.message
    assert "the next run" in error.hint


def test_a_retry_after_date_beyond_five_minutes_stops_at_once_quoting_the_date(read):
    date = http_date(7200)
    with Throttling((503, date)) as server:
        got = read(server)
    assert len(server.requests) == 1 and got.error is not None
    assert f"(Retry-After: {date}), longer than the 300 s a run waits" in got.error.message


@pytest.mark.parametrize("status, after", [(503, "0"), (503, "0.001"), (429, "0"), (502, "-3"), (504, None)])
def test_a_failing_or_throttling_server_is_not_asked_again_sooner_than_the_backoff(read, status, after):
    """A Retry-After shorter than the backoff (or none) waits the backoff: never at once."""
    with Throttling((status, after), (status, after)) as server:
        got = read(server)
    assert got.error is None and len(server.requests) == 3
    assert got.retries["requests"] == 2 and got.retries["waited_s"] >= 0.2


@pytest.mark.parametrize("after", ["nan", "soon", "", "Mon, 99 Foo 2026 25:00:00 GMT"])
def test_a_retry_after_that_is_neither_seconds_nor_a_date_counts_as_absent(read, after):
    """The backoff, not a crash and not a wait of NaN seconds (the summary is JSON: NaN is not)."""
    with Throttling((429, after), (429, after)) as server:
        got = read(server)
    assert got.error is None and len(server.requests) == 3
    assert 0.2 <= got.retries["waited_s"] < 5
    json.dumps(got.retries, allow_nan=False)
