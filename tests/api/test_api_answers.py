"""What the API source makes of answers a well-behaved API does not give, against a real HTTP
server on 127.0.0.1: a Retry-After it cannot wait for as written, a body that cannot be decoded,
records that are not JSON objects. Each is waited for, retried or an error of the run that says
what happened (exit 4), never an internal error (exit 70)."""
from __future__ import annotations

import email.utils
import math
import time

import pytest

from engine.config.model import ApiAuth
from engine.config.secrets import Secret
from engine.errors import ExitCode, SourceError
from pages_server import Server, read_ids

KEY = "answers-key-0815"
OK = {"/v1/objects": ([{"id": 1}, {"id": 2}], None)}


@pytest.fixture
def auth(monkeypatch) -> ApiAuth:
    monkeypatch.setenv("ANSWERS_KEY", KEY)
    return ApiAuth(type="api_key", key=Secret("${env:ANSWERS_KEY}"))


def throttled(retry_after: str) -> tuple[int, dict, bytes]:
    return 429, {"Retry-After": retry_after}, b'{"error": "slow down"}'


def test_a_negative_retry_after_is_no_wait(auth):
    with Server(OK) as api:
        api.gets = [throttled("-1")]
        assert read_ids(api.url, auth) == [1, 2]
        assert len(api.seen) == 2


def test_a_retry_after_given_as_a_date_is_waited_for(auth):
    """An API that throttles for 4 s, saying so as an HTTP date: seven quick attempts (backoff
    alone) would all be refused within those 4 s."""
    until: list[float] = []

    def answer(path):
        until.append(until[0] if until else math.ceil(time.time()) + 4)
        if time.time() < until[0]:
            api.gets.append(answer)
            return throttled(email.utils.formatdate(until[0], usegmt=True))
        return 200, {}, b'{"data": [{"id": 1}]}'
    with Server({}) as api:
        api.gets = [answer]
        assert read_ids(api.url, auth) == [1]
    assert len(api.seen) <= 3


def test_a_body_that_cannot_be_decoded_is_retried_then_an_error_that_says_so(auth, monkeypatch):
    """A gateway that labels a plain body as gzip: asked again, then stopped with what to ask."""
    monkeypatch.setattr("engine.sources._api_requests.backoff", lambda attempt: 0.0)
    garbled = (200, {"Content-Encoding": "gzip"}, b'{"data": [{"id": 1}]}')
    with Server(OK) as api:
        api.gets = [garbled]
        assert read_ids(api.url, auth) == [1, 2], "asked again"
        api.gets = [garbled] * 7
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
    error = caught.value
    assert error.exit_code == ExitCode.SOURCE and error.retriable and error.cause == "undecodable"
    assert f"tenant 'api-test': entity 'buildings': GET /v1/objects: the answer from {api.url} cannot be decoded " \
        "after 7 attempts (" in error.message                # the request named, as a refused one is
    assert "Content-Encoding" in error.hint


@pytest.mark.parametrize("data, shown", [(b'[1, 2]', '1'), (b'[{"id": 1}, "x"]', '"x"'),
                                         (b'[{"id": 1}, null]', "null")])
def test_records_that_are_not_json_objects_stop_the_extract_naming_one(auth, data, shown):
    with Server(OK) as api:
        api.gets = [(200, {}, b'{"data": ' + data + b'}')]
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
    assert caught.value.exit_code == ExitCode.SOURCE
    assert f"entity 'buildings': /v1/objects answered a record that is not a JSON object: {shown}" \
        in caught.value.message


def test_an_api_that_keeps_throttling_is_named_with_the_setting_that_helps(auth, monkeypatch):
    """Not "check the endpoint and its parameters": they were right, the requests too many."""
    monkeypatch.setattr("engine.sources._api_requests.backoff", lambda attempt: 0.0)
    with Server(OK) as api:
        api.gets = [throttled("0")] * 7
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
    error = caught.value
    assert "GET /v1/objects answered 429 after 7 attempts" in error.message and error.retriable
    assert "source.rate_limit" in error.hint and "check the endpoint" not in error.hint


@pytest.mark.parametrize("answer", [(200, {}, b'{"items": [{"id": 1}]}'), (404, {}, b'{"error": "no such endpoint"}')])
def test_what_to_check_names_doctor_and_discover_for_a_response(auth, answer):
    """Doctor reads the first page of each endpoint; discover lists the fields of its records: the
    commands named with the tenant's id, as the user types them."""
    with Server(OK) as api:
        api.gets = [answer]
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
    assert "idwell-sync doctor api-test asks each endpoint for its first page" in caught.value.hint
    assert "idwell-sync discover api-test lists the fields of the records each endpoint answers" in caught.value.hint
    assert "TENANT" not in caught.value.hint
    assert "SQL sources only" not in caught.value.hint


def test_json_in_the_charset_its_content_type_names_is_read_in_it(auth):
    """A legacy API that answers windows-1252 and says so: JSON all the same, umlauts included."""
    body = '{"data": [{"id": 1, "name": "Müller"}]}'.encode("cp1252")
    with Server(OK) as api:
        api.gets = [(200, {"Content-Type": "application/json; charset=windows-1252"}, body)]
        assert read_ids(api.url, auth) == [1]


def test_a_redirect_names_where_it_points_and_what_to_set(auth):
    """http:// where the API moved to https://: the error names the new address and base_url, not
    'answered 301 with no content type, not JSON'."""
    with Server(OK) as api:
        api.gets = [(301, {"Location": "https://api.example.invalid/v1/objects"}, b"")]
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
    assert caught.value.exit_code == ExitCode.SOURCE
    assert "/v1/objects answered 301, a redirect to https://api.example.invalid/v1/objects" in caught.value.message
    assert "set base_url" in caught.value.hint and KEY not in str(caught.value)


def test_a_json_answer_cut_off_is_asked_again_then_an_error_that_says_so(auth, monkeypatch):
    """A body that its content type calls JSON but that ends mid-way (a gateway or proxy that
    cut it off): asked again, then stopped saying so, not sent to check base_url for a login page."""
    monkeypatch.setattr("engine.sources._api_requests.backoff", lambda attempt: 0.0)
    cut = (200, {}, b'{"data": [{"id": 1}, {"i')
    with Server(OK) as api:
        api.gets = [cut]
        assert read_ids(api.url, auth) == [1, 2], "asked again"
        api.gets = [cut] * 7
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
        assert len(api.seen) == 2 + 7
    error = caught.value
    assert error.exit_code == ExitCode.SOURCE and error.retriable and error.cause == "undecodable"
    assert "entity 'buildings': GET /v1/objects answered 200 with application/json, but the body is not " \
           "valid JSON after 7 attempts (24 bytes: " in error.message
    assert "next run tries again" in error.hint and "base_url" not in error.hint


def test_a_page_that_is_not_json_is_named_with_its_content_type(auth):
    """A login or maintenance page in HTML: not asked again, named as what it is."""
    with Server(OK) as api:
        api.gets = [(200, {"Content-Type": "text/html"}, b"<html>Wartung</html>")]
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
        assert len(api.seen) == 1
    assert "entity 'buildings': /v1/objects answered 200 with text/html, not JSON" in caught.value.message
    assert "check base_url and endpoint" in caught.value.hint


def test_a_page_has_seven_attempts_in_all_whatever_made_it_ask_again(auth, monkeypatch):
    """A 503 and a body cut off, by turns: seven attempts for the page, as for one kind alone, not
    seven for each cut-off body's request (up to 49, each after a Retry-After of up to 5 minutes)."""
    monkeypatch.setattr("engine.sources._api_requests.backoff", lambda attempt: 0.0)
    unavailable, cut = (503, {}, b'{"error": "try again"}'), (200, {}, b'{"data": [{"id": 1}, {"i')
    with Server(OK) as api:
        api.gets = [cut] + [unavailable, cut] * 3
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
        assert len(api.seen) == 7
    assert "the body is not valid JSON after 7 attempts" in caught.value.message
    with Server(OK) as api:
        api.gets = [unavailable] + [cut, unavailable] * 3
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, auth)
        assert len(api.seen) == 7
    assert "GET /v1/objects answered 503 after 7 attempts" in caught.value.message
