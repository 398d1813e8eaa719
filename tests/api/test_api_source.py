"""The API source (DOMUS Cloud Connect) against a real HTTP server on 127.0.0.1.

The same demo ERP read through mappings/domus-api.yaml (REST, paged JSON) and through
mappings/domus-sql.yaml (SQL) must give the same portal and the same findings.
"""
from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cloud_connect import CloudConnect
from engine.config import load_tenant
from engine.pipeline import run_tenant
from engine.state import StateStore
from engine.targets.local import LocalStore

ROOT = Path(__file__).resolve().parents[2]
RUN_DATE = dt.date(2026, 6, 1)
KEY = "cc-key;with{odd}=chars"


def _tenant(folder: Path, tenant_id: str, source: dict, mapping: str, scope_field: str) -> Path:
    (folder / "tenants").mkdir(parents=True, exist_ok=True)
    if not (folder / "mappings").exists():
        shutil.copytree(ROOT / "mappings", folder / "mappings")
    doc = yaml.safe_load((ROOT / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc.update(id=tenant_id, mapping=mapping, source=source,
               target={"type": "local", "path": str(folder / f"{tenant_id}-portal.sqlite")})
    doc["overrides"]["entities"]["buildings"]["filters"][0]["field"] = scope_field
    path = folder / "tenants" / f"{tenant_id}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _sync(tenant_file: Path, folder: Path):
    tenant = load_tenant(tenant_file)
    state = StateStore(f"sqlite:///{folder / (tenant.id + '-state.sqlite')}")
    try:
        result = run_tenant(tenant, state, run_date=RUN_DATE)
    finally:
        state.close()
    store = LocalStore(tenant.target.path)
    try:
        portal = {e: sorted(store.read(e), key=lambda r: r["external_id"])
                  for e in ("buildings", "units", "users", "occupancies")}
    finally:
        store.close()
    findings = sorted((f.code, f.entity, f.key, f.field or "") for f in result.findings)
    return result, portal, findings


def test_api_and_sql_give_the_same_portal(erp, tmp_path, monkeypatch):
    monkeypatch.setenv("CC_KEY", KEY)
    sql = _tenant(tmp_path, "via-sql", {"type": "sql", "url": f"sqlite:///{erp}"}, "domus-sql", "Mandant")
    with CloudConnect(str(erp), KEY) as cc:
        api = _tenant(tmp_path, "via-api", {"type": "api", "base_url": cc.url, "page_size": 50,
                                            "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                      "domus-api", "client")
        api_result, api_portal, api_findings = _sync(api, tmp_path)
        pages = cc.requests
    sql_result, sql_portal, sql_findings = _sync(sql, tmp_path)
    assert sum(len(v) for v in sql_portal.values()) > 500
    assert api_portal == sql_portal
    assert api_findings == sql_findings
    assert pages > 20, "the paginators should have walked many pages"
    assert api_result.summary["entities"] == sql_result.summary["entities"]
    assert api_result.summary["source_retries"] is None, "every page was answered the first time"
    assert sql_result.summary["source_retries"] is None, "an SQL source retries nothing"
    assert api_result.summary["source_recovered"] is None, "the ERP did not change: both readings of the pages agree"
    assert sql_result.summary["source_recovered"] is None


def test_codes_missing_from_code_tables_are_reported_alike_from_the_api(erp, tmp_path, monkeypatch):
    """Records read from JSON, mapped row by row, give the same code_not_in_table findings as
    the SQL rows mapped column by column: the same records, counts and example keys (the
    field's name is the API's: typeCode, salutation)."""
    import sqlite3
    altered = tmp_path / "erp.sqlite"
    shutil.copyfile(erp, altered)
    con = sqlite3.connect(altered)
    with con:
        con.execute("UPDATE einheit SET typcode = 6 WHERE typcode IN (4, 5) OR einheitid % 13 = 0")
        con.execute("UPDATE adresse SET anrede = 'Eheleute Dr.' WHERE anrede IN ('Eheleute', 'Familie')")
    con.close()
    monkeypatch.setenv("CC_KEY", KEY)
    sql = _tenant(tmp_path, "via-sql", {"type": "sql", "url": f"sqlite:///{altered}"}, "domus-sql", "Mandant")
    with CloudConnect(str(altered), KEY) as cc:
        api = _tenant(tmp_path, "via-api", {"type": "api", "base_url": cc.url, "page_size": 50,
                                            "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                      "domus-api", "client")
        api_result = _sync(api, tmp_path)[0]
    sql_result = _sync(sql, tmp_path)[0]

    def unknown(result):
        return [(f.entity, f.key, f.field, f.message.split(" ", 1)[1]) for f in result.findings
                if f.code == "code_not_in_table"]
    assert [(entity, name, message.split(" is ")[0]) for entity, _, name, message in unknown(sql_result)] == [
        ("units", "type", "6"), ("users", "salutation", "'Eheleute Dr.'"),
        ("users", "salutation", "'Herr Dipl.-Ing.'")]                  # the last: the demo's own
    assert all(", ...)" in message for *_, message in unknown(sql_result)[:2])   # more than three records each
    assert unknown(api_result) == unknown(sql_result)
    assert api_result.summary["findings"] == sql_result.summary["findings"]


def test_a_name_no_api_record_has_is_warned_about_with_the_name_it_may_mean(erp, tmp_path, monkeypatch, caplog):
    """JSON does not fail on a misspelt or wrongly cased name as a query fails on an unknown
    column: it reads null in every record. The run says which name and what it may mean."""
    monkeypatch.setenv("CC_KEY", KEY)
    with CloudConnect(str(erp), KEY) as cc:
        source = {"type": "api", "base_url": cc.url, "page_size": 100,
                  "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}}
        good = _tenant(tmp_path, "good", source, "domus-api", "client")
        with caplog.at_level("WARNING"):
            _sync(good, tmp_path)
        assert not [r for r in caplog.records if "no record from" in r.getMessage()]
        caplog.clear()
        typo = _tenant(tmp_path, "typo", source, "domus-api", "client")
        doc = yaml.safe_load(typo.read_text(encoding="utf-8"))
        doc["overrides"]["entities"]["users"] = {"fields": {"email": "contact.Email", "title": "titel"}}
        typo.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        with caplog.at_level("WARNING"):
            result, portal, _ = _sync(typo, tmp_path)
    assert not any(u["email"] for u in portal["users"])          # what the warning is about
    warnings = [r.getMessage() for r in caplog.records if "no record from" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "tenant 'typo': users: no record from /persons has 'contact.Email' (did you mean 'email'?); " \
           "'titel' (did you mean 'title'?)" in warnings[0]


def test_retries_on_503_429_and_500_give_the_same_result(erp, tmp_path, monkeypatch):
    monkeypatch.setenv("CC_KEY", KEY)
    portals = []
    for fail_every, status in ((0, 503), (4, 503), (5, 429), (6, 500)):
        folder = tmp_path / f"f{fail_every}"
        with CloudConnect(str(erp), KEY, fail_every=fail_every, fail_status=status) as cc:
            api = _tenant(folder, "flaky", {"type": "api", "base_url": cc.url, "page_size": 100,
                                            "auth": {"type": "api_key", "key": "${env:CC_KEY}"}},
                          "domus-api", "client")
            portals.append(_sync(api, folder)[1])
            if fail_every:
                assert cc.failures > 0
    assert portals[0] == portals[1] == portals[2] == portals[3]


def test_a_wrong_api_key_stops_the_run_naming_the_reference_not_the_value(erp, tmp_path):
    with CloudConnect(str(erp), KEY) as cc:
        api = _tenant(tmp_path, "wrongkey", {"type": "api", "base_url": cc.url,
                                             "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                      "domus-api", "client")
        env = {"PATH": "/usr/bin:/bin", "CC_KEY": "not-the-key-s3cr3t", "HOME": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-m", "engine", "run", str(api), "--state",
                               f"sqlite:///{tmp_path / 'state.sqlite'}"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "refused the credentials (401)" in proc.stderr
    assert "${env:CC_KEY}" in proc.stderr
    assert "not-the-key-s3cr3t" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("url, cause, advice", [
    ("http://no-such-host.invalid/api", "dns", "the host in source.base_url does not resolve"),
    ("http://127.0.0.1:{port}/api", "unreachable", "cannot be reached from the sync server"),
])
def test_an_api_without_an_answer_is_told_by_its_cause(url, cause, advice):
    """A request that finds no answer says why (the name does not resolve, nothing listens) and
    what to do, instead of httpx's class name; both are retried by the next night's run."""
    import httpx
    from pgcluster import free_port
    from engine.sources._api_requests import _transport_error
    url = url.format(port=free_port())
    with pytest.raises(httpx.TransportError) as raised:
        httpx.get(url, timeout=5)
    error = _transport_error(raised.value, "tenant 'acme': entity 'buildings'", url)
    assert (error.cause, error.retriable) == (cause, True)
    assert error.message.startswith(f"tenant 'acme': entity 'buildings': no answer from {url} ({cause}: ")
    assert error.hint.startswith(advice) or advice in error.hint


def test_keys_and_filter_fields_are_read_as_the_engine_reads_them():
    """Keys and filter fields are expressions: a quoted name with a dot, an index into a list.
    A record that has what they read gives no warning; one that lacks it names the path."""
    from engine.config.model import EntityMapping, FilterRule
    from engine.expr import compile_expression
    from engine.sources.unread_paths import UnreadPaths
    entity = EntityMapping("users", {"external_id": compile_expression('to_text("person.id")'),
                                     "last_name": compile_expression("names[0].last")},
                           key=('"person.id"',),
                           filters=(FilterRule("pseudo", "pseudo_person", "regex", field="names[0].last"),))
    unread = UnreadPaths(entity)
    unread.see([{"person.id": 1, "names": [{"last": "x"}]}])
    assert unread.missing() == []
    unread = UnreadPaths(entity)
    unread.see([{"person_id": 1, "names": [{"last": "x"}]}])
    assert unread.missing() == ["'person.id' (did you mean 'person_id'?)"]
