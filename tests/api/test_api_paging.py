"""The link_header paginator against real HTTP servers on 127.0.0.1: it follows the API's `Link:
<...>; rel="next"` from page to page, and never sends the credentials to another server."""
from __future__ import annotations

import pytest

from engine.config.model import ApiAuth
from engine.config.secrets import Secret
from engine.errors import SourceError
from pages_server import Server, read_ids

KEY = "paging-key-0815"


def extract(base_url: str, monkeypatch) -> list[int]:
    monkeypatch.setenv("PAGING_KEY", KEY)
    return read_ids(base_url, ApiAuth(type="api_key", key=Secret("${env:PAGING_KEY}")), "link_header")


def test_link_header_pages_are_followed_relative_and_absolute(monkeypatch):
    with Server({}) as api:
        api.pages.update({"/v1/objects": ([{"id": 1}, {"id": 2}], "/v1/objects?after=2"),
                          "/v1/objects?after=2": ([{"id": 3}], f"{api.url}/v1/objects?after=3"),
                          "/v1/objects?after=3": ([{"id": 4}], None)})
        assert extract(api.url, monkeypatch) == [1, 2, 3, 4]
        assert [path for path, _ in api.seen] == ["/v1/objects", "/v1/objects?after=2", "/v1/objects?after=3"]
        assert all(key == KEY for _, key in api.seen)


def test_a_next_link_to_another_server_stops_the_extract_without_sending_it_the_key(monkeypatch):
    with Server({}) as api, Server({"/steal": ([{"id": 99}], None)}) as other:
        api.other_url = other.url
        api.pages.update({"/v1/objects": ([{"id": 1}], "/v1/objects?after=1"),
                          "/v1/objects?after=1": ([{"id": 2}], "{other}/steal")})
        with pytest.raises(SourceError) as caught:
            extract(api.url, monkeypatch)
        assert other.seen == [], "the other server must not be asked, with or without the key"
        message = str(caught.value)
        assert f"points to {other.url}, not to {api.url}" in message and "entity 'buildings'" in message
        assert KEY not in message
