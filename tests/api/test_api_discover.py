"""`idwell-sync discover` for an API source, against the DOMUS Cloud Connect stand-in on 127.0.0.1:
the fields of each endpoint's first page, a few records of one, and the errors a run would give."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from cloud_connect import CloudConnect
from engine import cli

ROOT = Path(__file__).resolve().parents[2]
KEY = "cc-Disc0ver-K3y/4711+x"


@pytest.fixture
def api(erp):
    with CloudConnect(str(erp), KEY) as cc:
        yield cc


def write_tenant(folder: Path, base_url: str, max_retries: int | None = None, **overrides) -> Path:
    (folder / "tenants").mkdir(parents=True, exist_ok=True)
    if not (folder / "mappings").exists():
        shutil.copytree(ROOT / "mappings", folder / "mappings")
    doc = yaml.safe_load((ROOT / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc.update(id="kunde", mapping="domus-api",
               source={"type": "api", "base_url": base_url, "auth": {"type": "api_key", "key": "${env:KUNDE_CC_KEY}"}},
               target={"type": "local", "path": str(folder / "portal.sqlite")})
    if max_retries is not None:
        doc["source"]["max_retries"] = max_retries
    doc["overrides"]["entities"]["buildings"]["filters"][0]["field"] = "client"
    doc["overrides"]["entities"].update(overrides)
    path = folder / "tenants" / "kunde.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def discover(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["discover", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def key_set(monkeypatch):
    monkeypatch.setenv("KUNDE_CC_KEY", KEY)


def test_lists_the_field_paths_of_each_endpoint_the_mapping_reads(api, tmp_path, capsys, key_set):
    tenant = write_tenant(tmp_path, api.url, users={"fields": {"email": "contact.Email"}})
    code, out, _ = discover(capsys, str(tenant))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "endpoint /objects (buildings): 11 records on the first page, 8 fields"
    assert any(line.split() == ["address.city", "string", "11/11", "*"] for line in lines), out
    assert "endpoint /persons (users): 200 records on the first page, 9 fields" in lines   # a cursor's page is the API's
    email = next(line.split() for line in lines if line.lstrip().startswith("contact.email"))
    assert email[1:4] == ["string,", "null", "159/200"] and email[-1] != "*"    # the mapping reads contact.Email
    assert "  the mapping reads, but no record here has: 'contact.Email' (did you mean 'email'?)" in lines
    assert any(line.split() == ["end", "null", "0/20", "*"] for line in lines)    # a field no record has a value in
    assert lines[-1] == "4 endpoints; * marks a path the mapping reads"
    assert api.requests == 4, "one page per endpoint, not every page"


def test_shows_the_first_records_of_one_entity_by_name_or_endpoint(api, tmp_path, capsys, key_set):
    tenant = write_tenant(tmp_path, api.url)
    code, out, _ = discover(capsys, str(tenant), "users", "--rows", "2")
    assert code == 0
    assert out.startswith("endpoint /persons (users): 200 records on the first page, 9 fields\n")
    table = out.split("first 2 records:\n")[1].splitlines()
    assert [c.strip() for c in table[0].split("|")][:6] == ["id", "salutation", "title", "firstName", "lastName",
                                                            "contact.email"]
    assert len(table) == 4 and "Müller" in table[2] and "hans.mueller@web.de" in table[2]
    code, same, _ = discover(capsys, str(tenant), "/persons", "--rows", "2")
    assert code == 0 and same == out


def test_json_format_parses_and_holds_the_records_as_the_api_sent_them(api, tmp_path, capsys, key_set):
    tenant = write_tenant(tmp_path, api.url)
    code, out, _ = discover(capsys, str(tenant), "--format", "json")
    assert code == 0
    listing = json.loads(out)
    assert [e["entity"] for e in listing["endpoints"]] == ["buildings", "units", "users", "occupancies"]
    assert "sample" not in listing
    units = listing["endpoints"][1]
    assert (units["endpoint"], units["records"], units["pages"], units["error"]) == ("/units", 20, 1, None)
    assert {"path": "area", "types": ["integer", "number", "null"], "item_types": [], "present": 13,
            "read": True} in units["fields"]
    code, out, _ = discover(capsys, str(tenant), "persons", "--rows", "3", "--format", "json")
    assert code == 0
    picked = json.loads(out)
    assert [e["entity"] for e in picked["endpoints"]] == ["users"]
    assert picked["sample"]["endpoint"] == "/persons" and len(picked["sample"]["records"]) == 3
    assert picked["sample"]["records"][0]["contact"]["email"] == "hans.mueller@web.de"


BROKEN_ID = "join('-', [to_text(id), floor])"       # a unit without a floor breaks it


def test_records_whose_external_id_the_mapping_cannot_compute_are_shown_with_the_expression_and_why(
        api, tmp_path, capsys, key_set):
    """A run stops on them (exit 3); discover shows them as the API sent them, with the error a
    run would give, instead of stopping too."""
    tenant = write_tenant(tmp_path, api.url, units={"fields": {"external_id": BROKEN_ID}})
    why = (f"the field 'external_id' cannot be computed for this ERP record: {BROKEN_ID} gives JMESPathTypeError: "
           "In function join(), invalid type for value: None")
    code, out, err = discover(capsys, str(tenant))
    assert code == 0, err
    assert "endpoint /units (units): 20 records on the first page, 8 fields\n" in out
    assert f"  the mapping's external_id cannot be computed for 7 of these 20 records (a run stops on them, exit 3); " \
           f"the first: units 100008: {why}" in out
    assert "endpoint /contracts/parties (occupancies): 20 records" in out

    code, out, err = discover(capsys, str(tenant), "units", "--rows", "2")
    assert code == 0, err
    first, broken = out.split("first 2 records:\n")[1].split(
        "the first 2 of the 7 records that break an expression of the mapping, as the API sent them:\n")
    assert "100001" in first and "100008" not in first
    rows = broken.splitlines()
    assert [c.strip() for c in rows[0].split("|")] == ["id", "objectNumber", "number", "name", "typeCode",
                                                       "fictitious", "floor", "area"]
    assert [c.strip() for c in rows[2].split("|")] == ["100008", "1000", "090", "Allgemeinfläche", "5", "false",
                                                       "null", "null"]
    assert rows[3].startswith("  100009 ")
    assert rows[4] == f"  units 100008: {why}, expected one of: ['array-string'], received: \"NoneType\""
    assert rows[5].startswith("  units 100009: ")
    assert rows[6].startswith("  what to do: correct the expression in the tenant's overrides or the mapping")

    code, out, err = discover(capsys, str(tenant), "units", "--rows", "2", "--format", "json")
    assert code == 0, err
    picked = json.loads(out)
    errors = picked["endpoints"][0]["external_id_errors"]
    assert [e["key"] for e in errors] == [str(k) for k in range(100008, 100015)]
    assert errors[0]["error"].startswith(f"units 100008: {why}")
    assert [r["id"] for r in picked["sample"]["broken_records"]] == [100008, 100009]
    assert picked["sample"]["broken_records"][0]["floor"] is None


def test_an_unknown_name_lists_the_known_ones_before_any_request(api, tmp_path, capsys, key_set):
    tenant = write_tenant(tmp_path, api.url)
    code, out, err = discover(capsys, str(tenant), "/persns")
    assert code == 2 and out == ""
    assert "tenant 'kunde': no entity or endpoint named '/persns'; the mapping reads buildings (/objects), units " \
           "(/units), users (/persons), occupancies (/contracts/parties)" in err
    assert "Did you mean '/persons'?" in err
    assert api.requests == 0


def test_an_endpoint_that_fails_is_shown_in_its_place_and_the_others_are_read(api, tmp_path, capsys, key_set):
    tenant = write_tenant(tmp_path, api.url, units={"endpoint": "/unitz"})
    code, out, err = discover(capsys, str(tenant))
    assert code == 4
    assert "endpoint /unitz (units): not read: tenant 'kunde': entity 'units': GET /api/v1/unitz" in out
    assert "answered 404" in err and "endpoint /contracts/parties (occupancies): 20 records" in out
    assert "idwell-sync doctor kunde asks each endpoint for its first page; idwell-sync discover kunde lists " \
           "the fields" in err and "TENANT" not in err


def test_an_api_that_keeps_failing_stops_the_listing_at_the_first_endpoint(erp, tmp_path, capsys, key_set):
    """Every endpoint would fail alike after its retries: not four times the attempts of one."""
    with CloudConnect(str(erp), KEY, fail_every=1) as cc:
        code, out, err = discover(capsys, str(write_tenant(tmp_path, cc.url, max_retries=2)))
        requests = cc.requests
    assert code == 4 and out == ""
    assert "tenant 'kunde': entity 'buildings': GET /api/v1/objects?page=1&pageSize=20 answered 503 after 3 " \
           "attempts" in err
    assert requests == 3


def _cli(folder: Path, *args: str, key: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(folder), "KUNDE_CC_KEY": key})


def test_a_refused_key_stops_as_a_run_stops_and_no_key_is_shown_at_any_verbosity(api, tmp_path):
    """401: the run's message and exit code (4), naming the reference; the key set through
    ${env:...} is in no output, also with -vv (httpx's and httpcore's debug logs)."""
    tenant = write_tenant(tmp_path, api.url)
    listing = _cli(tmp_path, "-vv", "discover", str(tenant), key=KEY)
    sample = _cli(tmp_path, "-vv", "discover", str(tenant), "buildings", "--format", "json", key=KEY)
    wrong_key = KEY.replace("4711", "0815")
    refused = _cli(tmp_path, "-vv", "discover", str(tenant), key=wrong_key)
    run = _cli(tmp_path, "run", str(tenant), "--state", f"sqlite:///{tmp_path / 'state.sqlite'}", key=wrong_key)
    assert listing.returncode == 0 and "DEBUG" in listing.stderr, listing.stderr
    assert sample.returncode == 0 and json.loads(sample.stdout)["sample"]["records"]
    assert refused.returncode == 4 == run.returncode
    said = f"tenant 'kunde': the API refused the credentials (401) for {api.url}\n" \
           "  what to do: check the credential referenced as ${env:KUNDE_CC_KEY}"
    assert said in refused.stderr and said in run.stderr
    assert refused.stdout == ""
    for secret in (KEY, wrong_key):
        for form in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
            for done in (listing, sample, refused):
                assert form not in done.stdout + done.stderr


def test_field_paths_name_nested_objects_and_lists_as_expressions_read_them():
    from engine.discover_api import field_paths
    records = [{"id": 1, "address": {"city": "Köln"}, "parties": [{"name": "A"}, {"name": None}], "tags": ["x", 2],
                "first name": "Jo"},
               {"id": 2, "address": None, "parties": [], "tags": None},
               {"id": 3.5, "address": {"city": None, "geo": {}}, "parties": [{"name": "B", "role": "E"}]}]
    got = {f.path: (f.type_text, f.present) for f in field_paths(records, {("id",), ("parties",)})}
    assert got == {"id": ("integer, number", 3), "address": ("object, null", 2), "address.city": ("string, null", 1),
                   "address.geo": ("object", 1), "parties[]": ("array", 3), "parties[].name": ("string, null", 2),
                   "parties[].role": ("string", 1), "tags[]": ("array of string|integer, null", 1),
                   '"first name"': ("string", 1)}
    assert [f.path for f in field_paths(records, {("id",), ("parties",)}) if f.read] == ["id", "parties[]"]


def test_one_record_whose_external_id_the_mapping_cannot_compute_is_named_as_one(tmp_path, key_set):
    """A page of one record that breaks the external_id: 'for this record (a run stops on it', not
    'for 1 of this record'; two of three: 'for 2 of these 3 records'."""
    from engine.config import load_tenant
    from engine.discover_api import EndpointSample, _endpoint_lines, field_paths
    from engine.discover_fields import check_records
    from engine.sources.unread_paths import read_paths
    tenant = load_tenant(write_tenant(tmp_path, "http://127.0.0.1:9/v1", units={"fields": {"external_id": BROKEN_ID}}))
    units = tenant.entities["units"]
    unit = {"id": 100008, "objectNumber": 1000, "number": "090", "floor": None}

    def said(records):
        s = EndpointSample(units, records, field_paths(records, read_paths(units)), [],
                           check=check_records(units, records))
        return next(line for line in _endpoint_lines(s) if "cannot be computed" in line)
    assert said([unit]).startswith("  the mapping's external_id cannot be computed for this record (a run stops on "
                                   "it, exit 3); the first: units 100008: "), said([unit])
    records = [unit, {**unit, "id": 100009}, {**unit, "id": 100010, "floor": "EG"}]
    assert said(records).startswith("  the mapping's external_id cannot be computed for 2 of these 3 records (a run "
                                    "stops on them, exit 3)"), said(records)
