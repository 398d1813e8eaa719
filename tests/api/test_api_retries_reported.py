"""The API source's retries are in the run's summary, as the import API's are: a run that the
ERP's API throttled or failed says so (`source_retries`, a line of the text summary, the run's
row in the run history) before a night comes when it fails on it. Against the Cloud Connect
stand-in (a real HTTP server on 127.0.0.1) with 429 and 503 answers injected, run as the
scheduler runs it (`idwell-sync run`, a process of its own)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from cloud_connect import CloudConnect
from engine.state import StateStore
from test_api_source import KEY, _tenant

REASONS = {429: "429 Too Many Requests", 503: "503 Service Unavailable"}


def _api_tenant(folder: Path, cc: CloudConnect) -> Path:
    return _tenant(folder, "flaky", {"type": "api", "base_url": cc.url, "page_size": 100,
                                     "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                   "domus-api", "client")


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "CC_KEY": KEY, "HOME": str(folder)}
    return subprocess.run([sys.executable, "-m", "engine", *args, "--state", f"sqlite:///{folder / 'state.sqlite'}"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def _failed_during(cc: CloudConnect, *args) -> tuple[subprocess.CompletedProcess, Counter]:
    before = Counter(cc.failed)
    proc = _cli(*args)
    return proc, Counter(cc.failed) - before


def test_throttling_and_failures_of_the_erp_api_are_counted_in_summary_text_and_run_history(erp, tmp_path):
    with CloudConnect(str(erp), KEY, fail_every=14, fail_status=(429, 503), retry_after="1") as cc:
        tenant = _api_tenant(tmp_path, cc)
        proc, failed = _failed_during(cc, tmp_path, "run", str(tenant), "--json")
        assert proc.returncode == 0, proc.stderr
        assert failed[429] and failed[503], "the server should have throttled and failed"
        retries = json.loads(proc.stdout)["source_retries"]
        assert retries["by_reason"] == {REASONS[status]: n for status, n in failed.items()}
        assert retries["requests"] == failed.total()
        assert retries["waited_s"] >= failed.total() * 1.0, "each Retry-After: 1 was waited for, and counted"
        assert json.loads(proc.stdout)["retries"] is None, "the local target retries nothing"

        state = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
        try:
            recorded = state.runs("flaky")[0]
        finally:
            state.close()
        assert recorded.status == "ok" and recorded.summary["source_retries"] == retries

        proc, failed = _failed_during(cc, tmp_path, "run", str(tenant))
        assert proc.returncode == 0, proc.stderr
        times = "once" if failed.total() == 1 else f"{failed.total()} times"
        line = next(line for line in proc.stdout.splitlines() if "the ERP's API" in line)
        assert line.startswith(f"  the ERP's API was asked again {times} (")
        for status, n in failed.items():
            assert f"{REASONS[status]} {n}" in line
        assert line.endswith("s waiting: the ERP's server or the network was throttling or failing")

        proc, failed = _failed_during(cc, tmp_path, "run", str(tenant), "--quiet")
        assert failed.total() > 0
        assert (proc.returncode, proc.stdout) == (0, ""), "a night that went well mails nothing, retried or not"

        proc, failed = _failed_during(cc, tmp_path, "plan", str(tenant), "--json", "--no-out")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["source_retries"]["requests"] == failed.total() > 0


def test_a_run_the_erp_api_answered_at_once_has_no_retry_line(erp, tmp_path):
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _api_tenant(tmp_path, cc)
        proc = _cli(tmp_path, "run", str(tenant))
        assert proc.returncode == 0, proc.stderr
        assert "asked again" not in proc.stdout and "writes applied" in proc.stdout
        proc = _cli(tmp_path, "run", str(tenant), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source_retries"] is None


def test_an_erp_api_that_keeps_failing_stops_the_run_naming_the_attempts_and_the_last_answer(erp, tmp_path):
    """Exit 4 before anything is written; the message (on standard error, in the history) says
    how often the request was sent and what came back the last time."""
    with CloudConnect(str(erp), KEY, fail_every=1, fail_status=503) as cc:
        tenant = _api_tenant(tmp_path, cc)
        proc = _cli(tmp_path, "run", str(tenant))
    assert proc.returncode == 4, proc.stderr
    assert "entity 'buildings': GET /api/v1/objects?page=1&pageSize=100 answered 503 after 7 attempts" in proc.stderr
    state = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        recorded = state.runs("flaky")[0]
    finally:
        state.close()
    assert recorded.status == "failed" and "answered 503 after 7 attempts" in recorded.message


def test_each_kind_of_retry_is_counted_by_its_reason_token_requests_too(monkeypatch):
    """What the summary's source_retries counts, answer by answer: a token endpoint failing, a
    429 whose Retry-After is waited for, a dropped connection, a JSON body cut off on its way."""
    import datetime as dt

    from engine.config.model import ApiAuth, ApiSource, EntityMapping, Paginator
    from engine.config.secrets import Secret
    from engine.expr import compile_expression
    from engine.sources.api import ApiExtractor
    from pages_server import Server

    monkeypatch.setattr("engine.sources._api_requests.backoff", lambda attempt: 0.0)
    monkeypatch.setenv("OAUTH_SECRET", "client-secret-4711")
    with Server({"/v1/objects": ([{"id": 1}, {"id": 2}], None)}) as api:
        api.posts = [(503, "application/json", b'{"error": "try again"}')]
        api.post = (200, "application/json", b'{"access_token": "tok-abc-123", "expires_in": 600}')
        api.gets = [(429, {"Retry-After": "1"}, b'{"error": "slow down"}'), None, (200, {}, b'{"data": [{"id": 1}, {"i')]
        auth = ApiAuth(type="oauth2_client_credentials", token_url=f"{api.url}/token", client_id="sync",
                       client_secret=Secret("${env:OAUTH_SECRET}"))
        source = ApiSource(type="api", base_url=api.url, auth=auth, timeout=5)
        entity = EntityMapping(name="buildings", fields={"external_id": compile_expression("to_string(id)")},
                               key=("id",), endpoint="/v1/objects", record_selector="data",
                               paginator=Paginator(type="none"))
        extractor = ApiExtractor(source, "api-test", run_date=dt.date(2026, 6, 1))
        try:
            assert extractor.retries() is None
            assert [r["id"] for _, records in extractor.batches(entity, {}) for r in records] == [1, 2]
            retries = extractor.retries()
        finally:
            extractor.close()
    assert retries == {"requests": 4, "waited_s": 1.0,
                       "by_reason": {"token 503 Service Unavailable": 1, "429 Too Many Requests": 1,
                                     "dropped connection": 1, "body not valid JSON": 1}}
