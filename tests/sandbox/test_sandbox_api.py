"""The sandbox process over raw HTTP: the contract's rules as a client of the import API meets them."""
from __future__ import annotations

import httpx
import pytest

from engine.sandbox import read_write_log
from engine.sandbox.process import sandbox_process

TOKEN = "t-sandbox-1"                 # conftest.py starts the sandbox with it
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(sandbox):
    with httpx.Client(base_url=sandbox.base_url + "/", headers=AUTH, timeout=10) as c:
        yield c


def building(i):
    return {"external_id": f"B{i}", "name": f"Haus {i}"}


def test_bearer_auth(sandbox):
    with httpx.Client(base_url=sandbox.base_url + "/", timeout=10) as c:
        none = c.get("users")
        wrong = c.get("users", headers={"Authorization": "Bearer nope"})
        other = c.get("users", headers={"Authorization": "Bearer t-other-9"})
        ok = c.get("users", headers=AUTH)
    assert (none.status_code, none.json()["error"]["code"]) == (401, "unauthorized")
    assert wrong.status_code == 401
    assert (other.status_code, other.json()["error"]["code"]) == (403, "forbidden")
    assert ok.status_code == 200 and ok.json() == {"items": [], "next_cursor": None}


def test_list_pages_with_an_opaque_cursor(api):
    for start in range(0, 1200, 400):
        assert api.post("buildings/batch", json={"upsert": [building(i) for i in range(start, start + 400)]}).status_code == 200
    seen, cursor, pages = [], None, 0
    while pages < 10:
        page = api.get("buildings", params={"limit": 500} | ({"cursor": cursor} if cursor else {})).json()
        pages += 1
        seen += [r["external_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(f"B{i}" for i in range(1200))
    assert api.get("buildings", params={"cursor": "not-a-cursor"}).status_code == 400
    assert api.get("buildings", params={"limit": 1001}).status_code == 400


def test_batch_applies_upserts_then_deletes_in_order_with_per_item_results(api):
    api.post("buildings/batch", json={"upsert": [building(1), building(2)]})
    api.put("units/U1", json={"external_id": "U1", "building_id": "B1", "number": "01"})
    r = api.post("buildings/batch", json={
        "delete": ["B1", "B2", "B9"],
        "upsert": [building(3), {"external_id": "B4"}, building(2) | {"name": "Haus zwei"}]})
    assert r.status_code == 200
    results = [(x["external_id"], x["op"], x["status"], x.get("error", {}).get("code")) for x in r.json()["results"]]
    assert results == [("B3", "upsert", 201, None), ("B4", "upsert", 400, "invalid"), ("B2", "upsert", 200, None),
                       ("B1", "delete", 409, "has_dependents"), ("B2", "delete", 204, None),
                       ("B9", "delete", 404, "not_found")]
    assert sorted(b["external_id"] for b in api.get("buildings").json()["items"]) == ["B1", "B3"]


def test_every_409_rule(api):
    api.post("buildings/batch", json={"upsert": [building(1)]})
    api.post("users/batch", json={"upsert": [{"external_id": "P1", "last_name": "A", "email": "Anna@Example.org"}]})
    units = api.post("units/batch", json={"upsert": [{"external_id": "U1", "building_id": "B0", "number": "1"}]})
    users = api.post("users/batch", json={"upsert": [{"external_id": "P2", "last_name": "B", "email": " anna@example.ORG "}]})
    occ = api.put("occupancies/O1", json={"external_id": "O1", "user_id": "P1", "unit_id": "U9", "role": "tenant"})
    api.put("units/U2", json={"external_id": "U2", "building_id": "B1", "number": "2"})
    api.put("occupancies/O2", json={"external_id": "O2", "user_id": "P1", "unit_id": "U2", "role": "owner"})
    del_user, del_unit = api.delete("users/P1"), api.delete("units/U2")
    assert units.json()["results"][0]["error"]["code"] == "unknown_reference"
    taken = users.json()["results"][0]
    assert (taken["status"], taken["error"]["code"], taken["error"]["conflicting_external_id"]) == (409, "email_taken", "P1")
    assert (occ.status_code, occ.json()["error"]["code"], occ.json()["error"]["field"]) == (409, "unknown_reference", "unit_id")
    assert (del_user.status_code, del_user.json()["error"]["code"]) == (409, "has_dependents")
    assert del_unit.status_code == 409
    assert api.delete("occupancies/O2").status_code == 204 and api.delete("users/P1").status_code == 204
    assert api.post("users/batch", json={"upsert": [{"external_id": "P2", "last_name": "B", "email": "anna@example.org"}]}
                    ).json()["results"][0]["status"] == 201   # the e-mail is free once its holder is archived


def test_put_and_delete_one_record(api):
    assert api.put("buildings/B1", json=building(1)).status_code == 201
    assert api.put("buildings/B1", json=building(1) | {"city": "Köln"}).status_code == 200
    mismatch = api.put("buildings/B2", json=building(1))
    assert (mismatch.status_code, mismatch.json()["error"]["field"]) == (400, "external_id")
    assert api.delete("buildings/B1").status_code == 204
    assert api.get("buildings").json()["items"] == []
    assert api.delete("buildings/nope").status_code == 404
    assert api.put("buildings/B1", json=building(1)).status_code == 201          # a later PUT restores it


def test_a_batch_delete_answers_an_impossible_external_id_as_the_single_delete_does(api):
    long = "x" * 201
    single = api.delete(f"buildings/{long}")
    r = api.post("buildings/batch", json={"delete": [long, ""]})
    assert (single.status_code, single.json()["error"]["code"]) == (400, "invalid")
    assert [(x["status"], x["error"]["code"], x["error"]["field"]) for x in r.json()["results"]] == \
        [(400, "invalid", "external_id")] * 2


def test_over_500_operations_is_413(api):
    r = api.post("buildings/batch", json={"upsert": [building(i) for i in range(300)], "delete": [f"X{i}" for i in range(201)]})
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_large")
    assert api.get("buildings").json()["items"] == []


def test_a_repeated_idempotency_key_returns_the_first_answer_and_writes_once(api, sandbox):
    body = {"upsert": [building(1), building(2)]}
    first = api.post("buildings/batch", json=body, headers={"Idempotency-Key": "k-1"})
    sandbox.store().edit("buildings", "B1", name="changed by hand")
    again = api.post("buildings/batch", json=body, headers={"Idempotency-Key": "k-1"})
    other = api.post("buildings/batch", json=body, headers={"Idempotency-Key": "k-2"})
    assert first.json() == again.json() and [x["status"] for x in again.json()["results"]] == [201, 201]
    assert [x["status"] for x in other.json()["results"]] == [200, 200]
    log = list(read_write_log(sandbox.write_log))
    assert [(e["external_id"], e["key"]) for e in log] == [("B1", "k-1"), ("B2", "k-1"), ("B1", "k-2"), ("B2", "k-2")]


def test_malformed_requests_are_400_not_500(api):
    assert api.post("users/batch", content=b"{not json").status_code == 400
    assert api.post("users/batch", json={"delete": [1, 2]}).status_code == 400
    misspelt = api.post("users/batch", json={"upserts": [{"external_id": "P1", "last_name": "Müller"}]})
    assert misspelt.status_code == 400 and misspelt.json()["error"]["field"] == "upserts"   # not an empty batch
    assert api.put("users/P1", content=b'{"external_id": "P1", "last_name": "\\ud800"}').status_code == 400
    assert api.get("rooms").status_code == 404
    for literal in (b"NaN", b"Infinity", b"-Infinity"):        # Python's json reads them; JSON has none
        nan = api.post("buildings/batch", content=b'{"upsert": [{"external_id": "B1", "name": "Haus"}, '
                                                  b'{"external_id": "B2", "name": ' + literal + b'}]}')
        assert (nan.status_code, nan.json()["error"]["code"]) == (400, "invalid")
    assert api.get("buildings").json()["items"] == []
    assert api.patch("users/P1", json={}).status_code == 405


def test_a_number_too_large_for_the_store_is_refused_alone_not_a_server_error(api):
    api.put("buildings/B1", json=building(1))
    huge = {"external_id": "U2", "building_id": "B1", "number": "2", "area_m2": 10**20}
    one = api.put("units/U2", json=huge)
    assert (one.status_code, one.json()["error"]["code"], one.json()["error"]["field"]) == (400, "invalid", "area_m2")
    r = api.post("units/batch", json={"upsert": [{"external_id": "U1", "building_id": "B1", "number": "1"}, huge]})
    assert r.status_code == 200
    assert [(x["external_id"], x["status"]) for x in r.json()["results"]] == [("U1", 201), ("U2", 400)]
    assert [u["external_id"] for u in api.get("units").json()["items"]] == ["U1"]


def test_a_body_sent_in_chunks_is_read_like_any_other(api):
    """Transfer-Encoding: chunked (a client streaming its request, as HTTP/1.1 allows) was read
    as an empty body: 400 'must be an object', and the chunks were left on the connection."""
    def chunks():
        yield b'{"upsert": [{"external_id": "B1",'
        yield b' "name": "Haus 1"}]}'
    r = api.post("buildings/batch", content=chunks())
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert (r.status_code, r.json()["results"][0]["status"]) == (200, 201)
    assert [b["name"] for b in api.get("buildings").json()["items"]] == ["Haus 1"]


def test_fault_injection(tmp_path):
    with sandbox_process(tmp_path / "a.sqlite", "--fail-429", "1", "--retry-after", "3", token=TOKEN) as sb, \
            httpx.Client(base_url=sb.base_url + "/", headers=AUTH, timeout=10) as c:
        r = c.get("users")
        assert (r.status_code, r.headers["Retry-After"], r.json()["error"]["code"]) == (429, "3", "rate_limited")
        assert httpx.get(sb.root_url + "/").status_code == 200                # the page has no faults
    with sandbox_process(tmp_path / "b.sqlite", "--fail-503", "1", token=TOKEN) as sb:
        assert httpx.get(sb.base_url + "/users", headers=AUTH).status_code == 503
    with sandbox_process(tmp_path / "c.sqlite", "--drop", "1", token=TOKEN) as sb:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(sb.base_url + "/buildings/batch", headers=AUTH, json={"upsert": [building(1)]})
        assert sb.store().get("buildings", "B1") is not None                   # the answer was lost, not the write
    with sandbox_process(tmp_path / "d.sqlite", "--cut", "1", token=TOKEN) as sb:
        r = httpx.post(sb.base_url + "/buildings/batch", headers=AUTH, json={"upsert": [building(1)]})
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
        with pytest.raises(ValueError):
            r.json()                                                            # half a body, whole as HTTP goes
        assert sb.store().get("buildings", "B1") is not None                   # the answer was cut, not the write


def test_the_page_lists_buildings_units_and_users(api, sandbox):
    api.post("buildings/batch", json={"upsert": [building(1) | {"name": "Haus <Am Markt>", "city": "Köln"}]})
    api.put("units/U1", json={"external_id": "U1", "building_id": "B1", "number": "0.07", "type": "apartment"})
    api.put("users/P1", json={"external_id": "P1", "first_name": "Grete", "last_name": "Müller", "email": "g@example.org"})
    page = httpx.get(sandbox.root_url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    for text in ("Haus &lt;Am Markt&gt;", "Köln", "0.07", "Müller", "g@example.org", "buildings (1)", "users (1)"):
        assert text in html
    assert "<Am Markt>" not in html


def test_a_client_that_resets_its_connection_leaves_no_traceback(sandbox, api):
    """A client that drops its connection with a reset (a browser's unused pre-connect does) is
    not an error of the sandbox: no traceback on its console, and it goes on serving."""
    import socket
    import struct
    import time
    from urllib.parse import urlsplit
    url = urlsplit(sandbox.root_url)
    s = socket.create_connection((url.hostname, url.port))
    s.sendall(b"GET /import/v1/buildings HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # close with RST
    s.close()
    time.sleep(0.5)
    assert api.get("buildings").status_code == 200
    assert "Traceback" not in sandbox.stderr.read_text()
