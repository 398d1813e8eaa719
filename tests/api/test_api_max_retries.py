"""`source.max_retries`: how often the API source sends a request again after a 429 or 5xx answer,
no answer or a body cut off on its way; 6 by default, 7 attempts in all (pinned by
test_api_retries_reported against the same server). Against the Cloud Connect stand-in (a real
HTTP server on 127.0.0.1) answering 503, run as the scheduler runs it (`idwell-sync run`, a
process of its own)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cloud_connect import CloudConnect
from test_api_doctor_pages import _doctor
from test_api_retries_reported import _cli
from test_api_source import KEY, _tenant


def _api_tenant(folder: Path, cc: CloudConnect, max_retries: int) -> Path:
    return _tenant(folder, "flaky", {"type": "api", "base_url": cc.url, "page_size": 100, "max_retries": max_retries,
                                     "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                   "domus-api", "client")


def test_a_run_gives_up_after_max_retries_and_says_how_often_it_asked_and_what_to_do(erp, tmp_path):
    with CloudConnect(str(erp), KEY, fail_every=1, fail_status=503) as cc:
        proc = _cli(tmp_path, "run", str(_api_tenant(tmp_path, cc, max_retries=2)))
    assert proc.returncode == 4, proc.stderr
    assert cc.requests == 3, "the first request and 2 retries"
    assert "entity 'buildings': GET /api/v1/objects?page=1&pageSize=100 answered 503 after 3 attempts" in proc.stderr
    assert "source.max_retries is 2 (3 attempts in all): raise it (up to 20)" in proc.stderr


def test_max_retries_0_sends_each_request_once(erp, tmp_path):
    with CloudConnect(str(erp), KEY, fail_every=1, fail_status=503) as cc:
        proc = _cli(tmp_path, "run", str(_api_tenant(tmp_path, cc, max_retries=0)))
    assert proc.returncode == 4, proc.stderr
    assert cc.requests == 1
    assert "GET /api/v1/objects?page=1&pageSize=100 answered 503 after 1 attempt" in proc.stderr
    assert "source.max_retries is 0 (1 attempt in all)" in proc.stderr


def test_a_request_that_fails_max_retries_times_is_still_read(erp, tmp_path):
    """The retries are the setting's: 2 failures in a row are outlasted by max_retries 2, and the
    run's summary counts them."""
    with CloudConnect(str(erp), KEY, fail_first=2, fail_status=503) as cc:
        proc = _cli(tmp_path, "run", str(_api_tenant(tmp_path, cc, max_retries=2)), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["source_retries"]["by_reason"] == {"503 Service Unavailable": 2}


def test_doctor_and_discover_read_with_the_tenants_retries_and_name_the_setting(erp, tmp_path):
    with CloudConnect(str(erp), KEY, fail_every=1, fail_status=503) as cc:
        tenant = _api_tenant(tmp_path, cc, max_retries=1)
        doctor = _doctor(tmp_path, tenant)
        asked = cc.requests
        discover = subprocess.run([sys.executable, "-m", "engine", "discover", str(tenant)], cwd=tmp_path,
                                  capture_output=True, text=True, timeout=120,
                                  env={"PATH": "/usr/bin:/bin", "CC_KEY": KEY, "HOME": str(tmp_path)})
    assert doctor.returncode != 0
    assert "answered 503 after 2 attempts" in doctor.stdout
    assert "source.max_retries is 1 (2 attempts in all)" in doctor.stdout
    hints = [line for line in doctor.stdout.splitlines() if "was tun:" in line]
    assert hints and not any("record_selector" in line for line in hints), \
        "the German advice follows the error's own hint, not the one for a wrong endpoint"
    # in German words of its own, for the customer's IT, with the setting
    assert any("die API meldet einen Fehler auf ihrer Seite" in line and "source.max_retries erhöhen" in line
               for line in hints), hints
    assert discover.returncode == 4
    assert "answered 503 after 2 attempts" in discover.stderr
    assert "source.max_retries is 1 (2 attempts in all)" in discover.stderr
    assert cc.requests - asked == 2, "discover stops at the first endpoint that keeps failing"


def test_a_request_without_an_answer_is_named_as_a_refused_one_is(tmp_path):
    """Nothing listens at base_url: the run names the entity and the request it sent (as for a 503),
    not only the API's address."""
    from pgcluster import free_port
    url = f"http://127.0.0.1:{free_port()}/api/v1"
    tenant = _tenant(tmp_path, "flaky", {"type": "api", "base_url": url, "page_size": 100, "max_retries": 0,
                                         "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                     "domus-api", "client")
    proc = _cli(tmp_path, "run", str(tenant))
    assert proc.returncode == 4, proc.stderr
    assert f"entity 'buildings': GET /api/v1/objects?page=1&pageSize=100: no answer from {url} (unreachable: " \
        in proc.stderr, proc.stderr


def test_doctor_with_the_secret_not_set_says_to_set_it_not_to_ask_the_vendor(erp, tmp_path):
    with CloudConnect(str(erp), KEY) as cc:
        tenant = _api_tenant(tmp_path, cc, max_retries=0)
        doctor = subprocess.run([sys.executable, "-m", "engine", "doctor", str(tenant)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})      # no CC_KEY
    assert doctor.returncode == 1
    assert "CC_KEY" in doctor.stdout and "ERP vendor" not in doctor.stdout and "ERP-Anbieter" not in doctor.stdout
    assert "auf dem Sync-Server setzen" in doctor.stdout, doctor.stdout


def test_the_advice_after_the_retries_does_not_say_to_raise_max_retries_already_at_its_most():
    """At source.max_retries 20 (the schema's maximum) the advice cannot be to raise it up to 20;
    below it, it is."""
    from engine.sources._api_requests import retries_hint
    assert "raise it (up to 20)" in retries_hint(19)
    at_most = retries_hint(20)
    assert "raise it" not in at_most and "source.max_retries is 20 (21 attempts in all), the most it can be" in at_most


def test_every_advice_of_the_api_source_has_its_german_line_in_doctor():
    """doctor's German line for the customer's IT: each fixed advice of the API source has words of
    its own (a new advice without them would fall back to 'pass the English message on')."""
    from engine.doctor_api import german_hint
    from engine.sources import _api_requests as api
    fallback = german_hint("an advice nobody wrote")
    advice = [*api._WAIT_HINTS.values(), *api._TRANSPORT_HINTS.values(), api._UNREACHABLE_HINT]
    assert [a for a in advice if german_hint(a) == fallback] == []
    assert german_hint(api._WAIT_HINTS[503] + api.retries_hint(6)).endswith("source.max_retries erhöhen (bis 20), "
                                                                            "wenn die API länger braucht, um sich zu "
                                                                            "erholen")
    assert "max_retries" not in german_hint(api._WAIT_HINTS[503] + api.retries_hint(20))
