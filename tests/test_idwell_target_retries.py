"""Retry rules of the idwell target's HTTP session, with httpx.MockTransport and a recorded sleep.

The real-server behaviour (faults injected by a sandbox process) is pinned in
tests/sandbox/test_sandbox_sync.py; these tests pin the decisions: what is retried, how long it
waits, and what is given up.
"""
from __future__ import annotations

import random

import httpx
import pytest

from engine.errors import TargetError
from engine.targets._http_client import ApiClient, RateLimiter, backoff
from engine.targets.base import Change
from engine.targets.idwell import IdwellTarget

BASE = "https://portal.example/import/v1"


def client(handler, sleeps: list, **kw) -> ApiClient:
    return ApiClient(BASE, "secret-token-xyz", tenant="acme", token_ref="${env:IDWELL_TOKEN_ACME}",
                     transport=httpx.MockTransport(handler), sleep=sleeps.append, **kw)


def answers(*steps):
    """A handler that plays `steps` in order: a status, (status, headers), or an exception class."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen) - 1, len(steps) - 1)]
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("connection dropped", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        body = {"items": [], "next_cursor": None} if status == 200 else {"error": {"code": "x", "message": "m"}}
        return httpx.Response(status, json=body, headers=headers)
    return handler, seen


def test_retry_after_is_honoured_on_429():
    handler, seen = answers((429, {"Retry-After": "7"}), 200)
    sleeps = []
    assert client(handler, sleeps).request("GET", "/users").status_code == 200
    assert len(seen) == 2 and 7.0 in sleeps


def test_retry_after_is_honoured_on_503_and_holds_every_thread():
    handler, seen = answers((503, {"Retry-After": "12"}), 200)
    sleeps, clock = [], [100.0]
    api = client(handler, sleeps)
    api.limiter._clock = lambda: clock[0]
    assert api.request("GET", "/users").status_code == 200
    assert len(seen) == 2 and 12.0 in sleeps
    assert api.limiter._next >= 112.0        # the next request of any thread waits for the outage too


def test_a_retry_after_of_0_on_a_5xx_still_waits_the_backoff():
    handler, seen = answers((503, {"Retry-After": "0"}), (503, {"Retry-After": "0"}), 200)
    sleeps = []
    assert client(handler, sleeps).request("GET", "/users").status_code == 200
    assert len(seen) == 3 and all(s > 0 for s in sleeps) and sleeps[1] > sleeps[0] / 2


def test_5xx_timeouts_and_dropped_connections_are_retried_with_growing_waits():
    handler, seen = answers(503, httpx.RemoteProtocolError, httpx.ReadTimeout, 502, 504, 200)
    sleeps = []
    assert client(handler, sleeps).request("GET", "/users").status_code == 200
    assert len(seen) == 6 and len(sleeps) == 5
    assert sleeps[-1] > sleeps[0]                      # exponential: the fifth wait outgrows the first


def test_backoff_has_jitter_and_a_ceiling():
    rng = random.Random(1)
    waits = {round(backoff(3, rng), 6) for _ in range(20)}
    assert len(waits) > 1 and all(1.0 <= w <= 2.0 for w in waits)   # base 0.25 * 2^3 = 2: half fixed, half random
    assert backoff(30, rng) <= 30.0


def test_gives_up_after_max_retries_with_a_retriable_error_that_hides_the_token():
    handler, seen = answers(503)
    with pytest.raises(TargetError) as err:
        client(handler, [], max_retries=3).request("POST", "/users/batch", json={})
    assert len(seen) == 4 and err.value.retriable
    assert "503" in str(err.value) and "secret-token-xyz" not in str(err.value)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusal_is_not_retried(status):
    handler, seen = answers(status)
    with pytest.raises(TargetError) as err:
        client(handler, []).request("GET", "/users")
    assert len(seen) == 1 and not err.value.retriable
    assert "${env:IDWELL_TOKEN_ACME}" in str(err.value) and "secret-token-xyz" not in str(err.value)


def test_4xx_answers_go_back_to_the_caller_unretried():
    handler, seen = answers(409)
    assert client(handler, []).request("PUT", "/users/P1", json={}).status_code == 409
    assert len(seen) == 1


def test_rate_limit_spaces_requests():
    now = [0.0]
    waited = []

    def sleep(s):
        waited.append(s)
        now[0] += s
    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        limiter.wait()
    assert now[0] == pytest.approx(2.0)                # 9 requests at 4/s: the 9th starts after 2 s
    limiter.pause(5.0)
    limiter.wait()
    assert now[0] == pytest.approx(7.0)


def test_same_batch_retried_keeps_its_key_and_a_new_apply_call_gets_a_new_one():
    keys = []
    calls = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        calls[0] += 1
        keys.append(request.headers["Idempotency-Key"])
        if calls[0] == 1:
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "m"}})
        return httpx.Response(200, json={"results": [{"external_id": "P1", "op": "upsert", "status": 201}]})
    target = IdwellTarget(client(handler, []), tenant="acme", run_id="run-1")
    change = Change("users", "create", "P1", {"external_id": "P1", "last_name": "M"})
    try:
        assert target.apply([change])[0].ok
        assert keys[0] == keys[1]                      # the retry of one batch: the same key
        target.apply([change])
        assert keys[2] != keys[1]                      # the next apply call writes again
    finally:
        target.close()


def test_a_413_splits_the_batch():
    sizes = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json
        ops = json.loads(request.content)["delete"]
        sizes.append(len(ops))
        if len(ops) > 2:
            return httpx.Response(413, json={"error": {"code": "too_large", "message": "m"}})
        return httpx.Response(200, json={"results": [{"external_id": i, "op": "delete", "status": 204} for i in ops]})
    target = IdwellTarget(client(handler, []), tenant="acme", batch_size=5, concurrency=1)
    try:
        outcomes = target.apply([Change("users", "delete", f"P{i}") for i in range(5)])
    finally:
        target.close()
    assert [o.change.external_id for o in outcomes] == [f"P{i}" for i in range(5)]
    assert all(o.ok for o in outcomes) and sizes == [5, 2, 3, 1, 2]    # halved until accepted


def test_closing_the_target_ends_the_retries_of_batches_in_flight():
    """A run stopped (SIGTERM) or failing elsewhere closes the target while a batch waits to be
    retried against a portal that answers 503: the batch gives up at once instead of going
    through its remaining attempts and backoffs (minutes, with a real portal down)."""
    import threading
    from http.server import BaseHTTPRequestHandler

    from local_http import serving

    seen = []

    class Down(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            body = b'{"error": {"code": "unavailable", "message": "down"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serving(Down) as server:
        api = ApiClient(f"http://127.0.0.1:{server.server_port}/import/v1", "token", tenant="acme",
                        token_ref="${env:T}", max_retries=6, backoff_base=4.0)
        target = IdwellTarget(api, tenant="acme", concurrency=1)
        failed: list[BaseException] = []

        def apply() -> None:
            try:
                target.apply([Change("buildings", "create", "B1", {"external_id": "B1", "name": "Haus"})])
            except BaseException as exc:
                failed.append(exc)
        worker = threading.Thread(target=apply)
        worker.start()
        while not seen:
            worker.join(0.01)
        target.close()
        worker.join(60)
        assert not worker.is_alive()
        assert seen == ["/import/v1/buildings/batch"], "no attempt after the target was closed"
        assert isinstance(failed[0], TargetError) and "stopped before POST /buildings/batch" in failed[0].message
        assert "503" in failed[0].message
