"""What the API source says when its credentials cannot be had: an OAuth token endpoint that is
not there or answers something other than a token, a secret file that is not text. Each is an
error of the run with what to do (exit 4 or 3), never an internal error (exit 70)."""
from __future__ import annotations

import socket

import pytest

from engine.config.model import ApiAuth
from engine.config.secrets import Secret
from engine.errors import ExitCode, SecretReferenceError, SourceError
from pages_server import Server, read_ids

CLIENT_SECRET = "client-secret-4711"


def oauth(token_url: str) -> ApiAuth:
    return ApiAuth(type="oauth2_client_credentials", token_url=token_url, client_id="sync",
                   client_secret=Secret("${env:OAUTH_SECRET}"))


@pytest.fixture(autouse=True)
def client_secret(monkeypatch):
    monkeypatch.setenv("OAUTH_SECRET", CLIENT_SECRET)


def test_a_token_endpoint_that_answers_a_token_lets_the_extract_run():
    with Server({"/v1/objects": ([{"id": 1}], None)}) as api:
        api.post = (200, "application/json", b'{"access_token": "tok-abc-123", "expires_in": 600}')
        assert read_ids(api.url, oauth(f"{api.url}/token")) == [1]


@pytest.mark.parametrize("answer", [(200, "text/html", b"<html>Anmeldung</html>"),
                                    (200, "application/json", b'{"error": "none"}'),
                                    (200, "application/json", b'["tok"]')])
def test_a_token_endpoint_answering_no_token_is_a_login_failure_that_says_what_to_check(answer):
    with Server({"/v1/objects": ([{"id": 1}], None)}) as api:
        api.post = answer
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, oauth(f"{api.url}/token"))
    error = caught.value
    assert f"the token endpoint {api.url}/token answered 200 with {answer[1]} but no OAuth token" in str(error)
    assert error.exit_code == ExitCode.SOURCE and "check auth.token_url" in error.hint
    assert [path for path, _ in api.seen] == ["/token"], "no request to the API without a token"


TOKEN = (200, "application/json", b'{"access_token": "tok-abc-123", "expires_in": 600}')
UNAVAILABLE = (503, "application/json", b'{"error": "try again"}')


def test_a_token_endpoint_that_fails_once_is_asked_again():
    with Server({"/v1/objects": ([{"id": 1}], None)}) as api:
        api.posts, api.post = [UNAVAILABLE, (500, "text/plain", b"oops")], TOKEN
        assert read_ids(api.url, oauth(f"{api.url}/token")) == [1]
        assert [path for path, _ in api.seen] == ["/token", "/token", "/token", "/v1/objects"]


def test_a_token_endpoint_that_keeps_failing_does_not_send_the_team_to_check_the_secret():
    """A token request has the source's max_retries, as a page has."""
    with Server({}) as api:
        api.post = UNAVAILABLE
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, oauth(f"{api.url}/token"), max_retries=2)
    assert f"the token endpoint {api.url}/token answered 503 after 3 attempts" in caught.value.message
    assert [path for path, _ in api.seen] == ["/token"] * 3
    assert "failing on its side" in caught.value.hint and "secret" not in caught.value.hint
    assert "source.max_retries is 2 (3 attempts in all)" in caught.value.hint
    assert caught.value.exit_code == ExitCode.SOURCE


def test_a_token_endpoint_that_is_not_there_is_named_not_base_url():
    with socket.socket() as s, Server({}) as api:      # bound, not listening: refused, and no one else's port
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        with pytest.raises(SourceError) as caught:
            read_ids(api.url, oauth(f"http://127.0.0.1:{closed}/token"), max_retries=1)
    assert f"the token endpoint: no answer from http://127.0.0.1:{closed}/token after 2 attempts" in str(caught.value)
    assert caught.value.exit_code == ExitCode.SOURCE
    assert api.seen == []


def test_a_secret_file_that_is_not_utf8_is_a_reference_error_naming_the_file(tmp_path):
    key = tmp_path / "api.key"
    key.write_bytes(b"\xff\xfeS\x00E\x00C\x00")          # saved as UTF-16 by an editor
    with Server({"/v1/objects": ([{"id": 1}], None)}) as api:
        with pytest.raises(SecretReferenceError) as caught:
            read_ids(api.url, ApiAuth(type="api_key", key=Secret("${file:api.key}", tmp_path)))
    assert f"secret file {key} (referenced as ${{file:api.key}}) is not UTF-8 text" in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert api.seen == []
