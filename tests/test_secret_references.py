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
