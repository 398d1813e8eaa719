"""The `idwell` target against a real sandbox process over HTTP: reading, writing, refusals, auth."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.config.model import IdwellTarget as IdwellConfig
from engine.config.secrets import Secret
from engine.errors import ExitCode, SecretReferenceError, TargetError
from engine.sandbox import read_write_log
from engine.sandbox.process import sandbox_process
from engine.targets.base import Change
from engine.targets.idwell import open_idwell

TOKEN = "t-acme-7f3a9c"


@pytest.fixture
def sandbox(tmp_path):
    with sandbox_process(tmp_path / "portal.sqlite", token=TOKEN, extra_tokens=("othercustomer:t-other-1",)) as sb:
        yield sb


def tenant_for(base_url: str, env: str = "IDWELL_TOKEN_TEST", **settings) -> SimpleNamespace:
    cfg = IdwellConfig("idwell", base_url, Secret("${env:%s}" % env), **settings)
    return SimpleNamespace(id="acme", target=cfg)


@pytest.fixture
def target(sandbox, monkeypatch):
    monkeypatch.setenv("IDWELL_TOKEN_TEST", TOKEN)
    t = open_idwell(tenant_for(sandbox.base_url, batch_size=50, concurrency=3))
    yield t
    t.close()


def building(i: int, **extra) -> dict:
    return {"external_id": f"B{i}", "name": f"Haus {i}", "street": "Hauptstr.", "house_number": str(i),
            "postal_code": "10115", "city": "Berlin", "country": "DE"} | extra


def user(i: int, **extra) -> dict:
    return {"external_id": f"P{i}", "salutation": "ms", "title": None, "first_name": "Eva", "last_name": f"Muster{i}",
            "email": f"eva{i}@example.org", "phone": None, "mobile": None, "language": "de"} | extra


def create(entity: str, record: dict) -> Change:
    return Change(entity, "create", record["external_id"], record, key=record["external_id"])


def test_apply_then_read_round_trips_every_record_through_pages(target, sandbox):
    users = [user(i) for i in range(1234)]              # more than one page of 1000
    outcomes = target.apply([create("users", u) for u in users])
    assert all(o.ok and o.status == 201 for o in outcomes)
    assert [o.change.external_id for o in outcomes] == [u["external_id"] for u in users]
    read = list(target.read("users"))
    assert sorted(read, key=lambda r: r["external_id"]) == sorted(users, key=lambda r: r["external_id"])


def test_dependency_order_holds_across_parallel_batches(target, sandbox):
    buildings = [building(i) for i in range(120)]
    units = [{"external_id": f"U{i}", "building_id": f"B{i % 120}", "number": f"{i:03d}", "name": None,
              "type": "apartment", "floor": "1", "area_m2": 61.5} for i in range(300)]
    done = []
    outcomes = target.apply([create("buildings", b) for b in buildings] + [create("units", u) for u in units],
                            progress=done.append)
    assert [o.code for o in outcomes if not o.ok] == []
    assert sum(done) == 420
    store = sandbox.store()
    assert store.count("units") == 300 and store.count("buildings") == 120
    # deletes in reverse dependency order: units first, then their buildings
    deletes = [Change("units", "delete", u["external_id"]) for u in units] + \
              [Change("buildings", "delete", b["external_id"]) for b in buildings]
    assert all(o.ok and o.status == 204 for o in target.apply(deletes))
    assert store.count("units") == 0 and store.count("buildings") == 0


def test_refused_records_become_outcomes_and_the_rest_is_written(target, sandbox):
    target.apply([create("buildings", building(1)), create("users", user(1))])
    sandbox.store().add_manual_user(last_name="Hand", email="taken@example.org")
    changes = [
        create("units", {"external_id": "U1", "building_id": "B404", "number": "1"}),
        create("units", {"external_id": "U2", "building_id": "B1", "number": "2"}),
        create("users", user(2, email=" EVA1@example.org")),
        create("users", user(3, email="taken@example.org")),
        create("users", user(4, phone="0301234567")),
        create("users", user(5)),
        Change("units", "delete", "U-never"),
        Change("buildings", "delete", "B1"),
    ]
    by_id = {o.change.external_id: o for o in target.apply(changes)}
    assert (by_id["U1"].ok, by_id["U1"].status, by_id["U1"].code, by_id["U1"].field) == \
        (False, 409, "unknown_reference", "building_id")
    assert (by_id["P2"].status, by_id["P2"].code, by_id["P2"].field) == (409, "email_taken", "email")
    assert by_id["P3"].code == "email_taken" and "by hand" in by_id["P3"].message
    assert (by_id["P4"].status, by_id["P4"].code, by_id["P4"].field) == (400, "invalid", "phone")
    assert (by_id["U-never"].ok, by_id["U-never"].status, by_id["U-never"].code) == (False, 404, "not_found")
    assert (by_id["B1"].status, by_id["B1"].code) == (409, "has_dependents")
    assert by_id["U2"].ok and by_id["P5"].ok
    assert {r["external_id"] for r in target.read("users")} == {"P1", "P5"}


def test_every_batch_carries_an_idempotency_key_and_is_written_once(target, sandbox):
    target.apply([create("users", user(i)) for i in range(120)])
    log = list(read_write_log(sandbox.write_log))
    assert len(log) == 120 and len({e["external_id"] for e in log}) == 120
    keys = {e["key"] for e in log}
    assert None not in keys and len(keys) == 3              # 120 records in batches of 50


def test_a_second_apply_of_the_same_records_writes_again(target, sandbox):
    """Idempotency-Keys are scoped to one apply call: the pipeline's retry of refused records, and
    the next night's run, must reach the store instead of getting the first answer replayed."""
    first = target.apply([create("users", user(1))])
    sandbox.store().edit("users", "P1", last_name="Edited in the portal")
    second = target.apply([Change("users", "update", "P1", user(1), ("last_name",))])
    assert first[0].status == 201 and second[0].status == 200
    assert next(target.read("users"))["last_name"] == "Muster1"


def test_401_stops_at_once_naming_tenant_and_token_reference(sandbox, monkeypatch):
    monkeypatch.setenv("IDWELL_TOKEN_TEST", "wrong-token-value-123")
    t = open_idwell(tenant_for(sandbox.base_url))
    try:
        with pytest.raises(TargetError) as err:
            list(t.read("buildings"))
    finally:
        t.close()
    text = str(err.value)
    assert "acme" in text and "${env:IDWELL_TOKEN_TEST}" in text and "401" in text
    assert "wrong-token-value-123" not in text
    assert err.value.exit_code == ExitCode.TARGET and not err.value.retriable


def test_403_for_a_token_of_another_customer(sandbox, monkeypatch):
    monkeypatch.setenv("IDWELL_TOKEN_TEST", "t-other-1")
    t = open_idwell(tenant_for(sandbox.base_url))
    try:
        with pytest.raises(TargetError, match="403") as err:
            t.apply([create("buildings", building(1))])
    finally:
        t.close()
    assert "${env:IDWELL_TOKEN_TEST}" in str(err.value) and "t-other-1" not in str(err.value)
    assert sandbox.store().count("buildings") == 0


def test_a_missing_token_variable_is_a_config_error_naming_the_reference(sandbox, monkeypatch):
    monkeypatch.delenv("IDWELL_TOKEN_UNSET", raising=False)
    with pytest.raises(SecretReferenceError, match=r"\$\{env:IDWELL_TOKEN_UNSET\}") as err:
        open_idwell(tenant_for(sandbox.base_url, env="IDWELL_TOKEN_UNSET"))
    assert err.value.exit_code == ExitCode.CONFIG


def test_an_unreachable_portal_is_a_retriable_target_error(tmp_path, monkeypatch):
    import socket
    with socket.socket() as s:                     # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("IDWELL_TOKEN_TEST", TOKEN)
    t = open_idwell(tenant_for(f"http://127.0.0.1:{port}/import/v1", max_retries=1, timeout=2))
    try:
        with pytest.raises(TargetError, match="did not answer") as err:
            list(t.read("users"))
    finally:
        t.close()
    assert err.value.retriable and TOKEN not in str(err.value)


def test_a_wrong_base_url_says_so(sandbox, monkeypatch):
    monkeypatch.setenv("IDWELL_TOKEN_TEST", TOKEN)
    t = open_idwell(tenant_for(sandbox.root_url + "/v2"))
    try:
        with pytest.raises(TargetError, match="base_url"):
            list(t.read("users"))
    finally:
        t.close()


def test_a_text_that_is_not_unicode_is_refused_alone_not_a_crash(target, sandbox):
    """A lone surrogate (an API source's JSON '\\ud800') cannot be encoded as UTF-8: the batch goes
    out with its texts escaped, and the portal refuses that record alone."""
    by_id = {o.change.external_id: o for o in target.apply([
        create("buildings", building(1, city="K\ud800ln")), create("buildings", building(2, city="Köln"))])}
    assert (by_id["B1"].ok, by_id["B1"].status, by_id["B1"].code, by_id["B1"].field) == (False, 400, "invalid", "city")
    assert by_id["B2"].ok
    assert [r["city"] for r in target.read("buildings")] == ["Köln"]
