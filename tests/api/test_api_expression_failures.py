"""An external_id expression that a record of the ERP's API breaks (`join` over a unit without a
floor) stops plan with exit 3 naming the record, the field and the expression, as from an SQL
source (tests/core/test_expression_failures.py): the reading of an endpoint paged by position
computes each record's external_id to tell its two readings apart, and crashed there with exit 70.

Against the Cloud Connect stand-in (a real HTTP server on 127.0.0.1), `idwell-sync plan` as a
process of its own."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from cloud_connect import CloudConnect
from test_api_retries_reported import _cli
from test_api_source import KEY, _tenant

EXTERNAL_ID = "join('-', [to_text(id), floor])"


def _floors_tenant(folder: Path, cc: CloudConnect) -> Path:
    path = _tenant(folder, "floors", {"type": "api", "base_url": cc.url,
                                      "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                   "domus-api", "client")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["overrides"]["entities"]["units"] = {"fields": {"external_id": EXTERNAL_ID}}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_an_external_id_a_record_breaks_stops_the_plan_naming_it(erp, tmp_path):
    with CloudConnect(str(erp), KEY) as cc:
        _floors_tenant(tmp_path, cc)
        done = _cli(tmp_path, "plan", "floors", "--no-out")
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    found = re.match(r"idwell-sync plan: error: tenant 'floors': units (\d+): the field 'external_id' cannot be "
                     r"computed for this ERP record: " + re.escape(EXTERNAL_ID) + " gives JMESPathTypeError: ",
                     done.stderr)
    assert found, done.stderr
    with sqlite3.connect(erp) as con:
        assert con.execute("SELECT etage FROM einheit WHERE einheitid = ?", (int(found.group(1)),)).fetchone() == (None,)
    assert "\n  what to do: correct the expression" in done.stderr


def test_doctor_fails_the_endpoint_step_of_an_external_id_a_record_of_its_first_page_breaks(erp, tmp_path):
    """doctor asks each endpoint for its first page (as a run reads it): the units' step fails with
    the error a run would stop with, and the other endpoints are still checked."""
    with CloudConnect(str(erp), KEY) as cc:
        _floors_tenant(tmp_path, cc)
        done = subprocess.run([sys.executable, "-m", "engine", "doctor", "floors", "--format", "json"], cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "CC_KEY": KEY, "HOME": str(tmp_path)},
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    steps = {s["name"]: s for s in json.loads(done.stdout)["steps"]}
    assert steps["endpoint:units"]["status"] == "fail"
    assert steps["endpoint:units"]["detail"].startswith("tenant 'floors': units ")
    assert f"the field 'external_id' cannot be computed for this ERP record: {EXTERNAL_ID}" in \
        steps["endpoint:units"]["detail"]
    assert steps["endpoint:units"]["hint_en"].startswith("correct the expression")
    assert {steps[f"endpoint:{e}"]["status"] for e in ("buildings", "users", "occupancies")} == {"ok"}
