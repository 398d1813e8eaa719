"""Secrets by reference, where a value could change a URL's or a header's meaning."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
import yaml

from engine.config.secrets import Secret

REPO = Path(__file__).resolve().parents[1]


def test_a_password_inside_a_url_is_percent_encoded(monkeypatch):
    monkeypatch.setenv("PW", "Sup3r@Secret#PW/x:y?")
    url = sa.make_url(Secret("postgresql+psycopg://reader:${env:PW}@db.kunde.example:5432/domus").resolve_url())
    assert (url.username, url.password, url.host, url.database) == ("reader", "Sup3r@Secret#PW/x:y?",
                                                                    "db.kunde.example", "domus")


def test_a_url_that_is_one_reference_is_taken_as_it_is(monkeypatch):
    monkeypatch.setenv("ERP_URL", "sqlite:///var/erp.sqlite")
    assert Secret("${env:ERP_URL}").resolve_url() == "sqlite:///var/erp.sqlite"


def test_a_token_with_a_line_break_is_refused_naming_only_its_reference(tmp_path):
    (tmp_path / "tenants").mkdir()
    (tmp_path / "token.txt").write_text("GOODTOKEN-77\n# rotated 2026-11\n", encoding="utf-8")
    doc = yaml.safe_load((REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc["target"] = {"type": "idwell", "base_url": "http://127.0.0.1:9/import/v1", "token": "${file:../token.txt}"}
    tenant = tmp_path / "tenants" / "demo.yaml"
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    done = subprocess.run([sys.executable, "-m", "engine", "plan", str(tenant), "--no-out"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 3, done.stderr
    assert "${file:../token.txt}" in done.stderr and "HTTP header" in done.stderr
    assert "GOODTOKEN" not in done.stderr + done.stdout


def _tenant_with_source(tmp_path: Path, source: dict) -> Path:
    (tmp_path / "tenants").mkdir(exist_ok=True)
    doc = yaml.safe_load((REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc["id"] = "kunde"
    doc["source"] = source
    doc["target"] = {"type": "local", "path": str(tmp_path / "portal.sqlite")}
    doc["state_url"] = f"sqlite:///{tmp_path / 'state.sqlite'}"
    tenant = tmp_path / "tenants" / "kunde.yaml"
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    if not (tmp_path / "mappings").exists():
        shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    return tenant


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


import pytest  # noqa: E402


@pytest.mark.parametrize("command", [("plan", "--no-out"), ("run",), ("discover",)])
@pytest.mark.parametrize("source", ["url", "server"])
def test_a_source_secret_that_is_not_set_is_a_configuration_error(tmp_path, command, source):
    """A password variable missing on the sync server is exit code 3 (the tenant's secret cannot
    be resolved: fix the machine's configuration), not 4 (the ERP cannot be reached), which a
    scheduler would retry; the message names the reference and what to do, and no traceback."""
    from pgcluster import require
    if source == "server":
        import pyodbc
        require("FreeTDS" in pyodbc.drivers(), "the FreeTDS ODBC driver is not installed (Debian: tdsodbc)")
        spec = {"type": "sql", "host": "127.0.0.1", "port": 1, "database": "DOMUS", "username": "reader",
                "password": "${env:KUNDE_SQL_PASSWORD}", "driver": "FreeTDS"}
    else:
        spec = {"type": "sql", "url": "postgresql+psycopg://reader:${env:KUNDE_SQL_PASSWORD}@127.0.0.1:1/domus"}
    tenant = _tenant_with_source(tmp_path, spec)
    done = _cli(tmp_path, command[0], str(tenant), *command[1:])
    assert done.returncode == 3, done.stderr
    assert "KUNDE_SQL_PASSWORD is not set" in done.stderr and "what to do: set the environment variable" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [("plan", "--no-out"), ("run",)])
def test_every_secret_that_cannot_be_resolved_is_named_at_once(tmp_path, command):
    """The source's password and the target's token both missing: plan and run name both (exit 3),
    by reference, as doctor does, so that the operator does not set one and meet the next; the
    run's history says the same."""
    import json
    tenant = _tenant_with_source(tmp_path, {
        "type": "sql", "url": "postgresql+psycopg://reader:${env:KUNDE_SQL_PASSWORD}@127.0.0.1:1/domus"})
    doc = yaml.safe_load(tenant.read_text(encoding="utf-8"))
    doc["target"] = {"type": "idwell", "base_url": "http://127.0.0.1:9/import/v1", "token": "${file:../token.txt}"}
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    done = _cli(tmp_path, command[0], str(tenant), *command[1:])
    assert done.returncode == 3, done.stderr
    said = done.stderr.splitlines()[0]
    assert said.startswith(f"idwell-sync {command[0]}: error: tenant 'kunde': 2 secret references cannot be "
                           "resolved: source.url: environment variable KUNDE_SQL_PASSWORD is not set"), said
    assert "target.token: cannot read secret file" in said and "(referenced as ${file:../token.txt})" in said
    if command[0] == "run":
        [last] = json.loads(_cli(tmp_path, "history", str(tenant), "--json").stdout)
        assert last["status"] == "failed" and "KUNDE_SQL_PASSWORD" in last["message"] \
            and "${file:../token.txt}" in last["message"]


@pytest.mark.parametrize("command", [("plan", "--no-out"), ("run",)])
def test_what_to_do_about_a_secret_file_that_is_not_utf8_is_kept(tmp_path, command):
    """A token file saved as UTF-16 is there: plan and run say to write it as UTF-8 text, as the
    target said before every reference was checked at once, not to create the file; with a
    variable missing besides, what to do about each."""
    tenant = _tenant_with_source(tmp_path, {"type": "sql", "url": str(REPO / "var" / "demo" / "erp.sqlite")})
    doc = yaml.safe_load(tenant.read_text(encoding="utf-8"))
    doc["source"]["url"] = "sqlite:///${env:KUNDE_ERP}"
    doc["target"] = {"type": "idwell", "base_url": "http://127.0.0.1:9/import/v1", "token": "${file:../token.txt}"}
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    (tmp_path / "token.txt").write_bytes(b"\xff\xfeT\x00O\x00K\x00")
    done = _cli(tmp_path, command[0], str(tenant), *command[1:])
    assert done.returncode == 3, done.stderr
    said, hint = done.stderr.splitlines()[:2]
    assert "KUNDE_ERP is not set" in said and "is not UTF-8 text" in said, said
    assert hint.startswith("  what to do: set the environment variable") and "as UTF-8 text" in hint, hint
    doc["source"]["url"] = "sqlite:///var/erp.sqlite"
    tenant.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    done = _cli(tmp_path, command[0], str(tenant), *command[1:])
    assert done.returncode == 3, done.stderr
    said, hint = done.stderr.splitlines()[:2]
    assert said.endswith("target.token: secret file " + str(tmp_path / "tenants" / ".." / "token.txt")
                         + " (referenced as ${file:../token.txt}) is not UTF-8 text"), said
    assert hint == "  what to do: write the secret into the file as UTF-8 text (e.g. with printf '%s' ... > file)", hint
