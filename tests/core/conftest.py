"""Fixtures of the sync-core tests: the demo ERP (size S, generated once per session), a workspace per
test with its own copy of the ERP, tenant files derived from tenants/demo.yaml, a state store and the
local portal store, and helpers to read what a user would see (portal contents, findings, summary).

Every expectation is derived from the demo manifest (engine.demo: hard-case code -> ERP keys), from
the ERP rows themselves and from the tenant's rules, never copied from an engine run.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import load_tenant
from engine.demo import REFERENCE_DATE, Manifest, generate
from engine.findings import Finding
from engine.pipeline import Prepared, RunResult, prepare, run_tenant
from engine.state import StateStore
from engine.targets.local import LocalStore

REPO = Path(__file__).resolve().parents[2]
DEMO_TENANT = REPO / "tenants" / "demo.yaml"
MAPPINGS = REPO / "mappings"
ENTITIES = ("buildings", "units", "users", "occupancies")
RUN_DATE = REFERENCE_DATE          # runs happen "as of" the demo's reference date


# -- the demo ERP ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoErp:
    path: Path
    manifest: Manifest


@pytest.fixture(scope="session")
def demo_erp(tmp_path_factory) -> DemoErp:
    """The S demo ERP, generated once per test session (per xdist worker); never modify this file."""
    path = tmp_path_factory.mktemp("demo-erp") / "erp.sqlite"
    manifest = generate(f"sqlite:///{path}", size="S", seed=42)
    path.chmod(0o444)
    return DemoErp(path, manifest)


@pytest.fixture
def manifest(demo_erp) -> Manifest:
    return demo_erp.manifest


# -- a workspace per test ----------------------------------------------------------------------
def deep_merge(base: dict, changes: dict) -> dict:
    """`changes` merged into a copy of `base`, dicts key by key; None removes a key."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Portal:
    """The local portal store's active managed records, as a user of the portal sees them."""

    def __init__(self, path: Path):
        store = LocalStore(path)
        try:
            self.records = {e: {r["external_id"]: r for r in store.read(e)} for e in ENTITIES}
        finally:
            store.close()

    def __getitem__(self, entity: str) -> dict[str, dict]:
        return self.records[entity]

    def occupancies_of_contract(self, vertragnr) -> list[dict]:
        prefix = f"{vertragnr}-"
        return [o for i, o in self.records["occupancies"].items() if i.startswith(prefix)]

    def occupancies_of_user(self, user_id: str) -> list[dict]:
        return [o for o in self.records["occupancies"].values() if o["user_id"] == user_id]

    def holders(self, email: str) -> list[str]:
        return [i for i, u in self.records["users"].items() if u["email"] == email]

    def portal_user_of(self, adressnr) -> str | None:
        """The portal user a person ended up as: their own, or a merged partnership user."""
        key = str(adressnr)
        if key in self.records["users"]:
            return key
        merged = [i for i in self.records["users"] if "+" in i and key in i.split("+")]
        assert len(merged) <= 1, merged
        return merged[0] if merged else None


class Findings:
    def __init__(self, findings: list[Finding]):
        self.all = list(findings)
        self.by_key: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        for f in self.all:
            self.by_key[(f.entity, f.key)].append(f)

    def of(self, entity: str, key, code: str | None = None) -> list[Finding]:
        found = self.by_key.get((entity, str(key)), [])
        return [f for f in found if code is None or f.code == code]

    def codes(self, entity: str, key) -> set[str]:
        return {f.code for f in self.of(entity, key)}

    def keys(self, code: str, entity: str | None = None) -> set[str]:
        return {f.key for f in self.all if f.code == code and (entity is None or f.entity == entity)}


@dataclass
class Workspace:
    root: Path
    erp: Path
    manifest: Manifest
    tenants: dict[str, Path] = field(default_factory=dict)

    @property
    def portal_path(self) -> Path:
        return self.root / "portal.sqlite"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.sqlite'}"

    # tenant files ---------------------------------------------------------------------------
    def tenant_file(self, tenant_id: str = "demo", *, source_url: str | None = None, portal: Path | None = None,
                    **changes: Any) -> Path:
        """A tenant file derived from tenants/demo.yaml: this workspace's ERP, portal store and state;
        `changes` are merged into the YAML document (dicts key by key, None removes a key)."""
        doc = yaml.safe_load(DEMO_TENANT.read_text("utf-8"))
        doc["id"] = tenant_id
        doc["source"]["url"] = source_url or f"sqlite:///{self.erp}"
        doc["target"]["path"] = str(portal or self.portal_path)
        doc["state_url"] = self.state_url
        doc = deep_merge(doc, changes)
        folder = self.root / "tenants"
        folder.mkdir(exist_ok=True)
        mappings = self.root / "mappings"
        if not mappings.exists():
            shutil.copytree(MAPPINGS, mappings)
        path = folder / f"{tenant_id}.yaml"
        path.write_text("# yaml-language-server: $schema=../schema/tenant.schema.json\n"
                        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), "utf-8")
        self.tenants[tenant_id] = path
        return path

    def tenant(self, tenant_id: str = "demo", **changes: Any):
        return load_tenant(self.tenant_file(tenant_id, **changes))

    # runs -----------------------------------------------------------------------------------
    def state(self) -> StateStore:
        return StateStore(self.state_url)

    def run(self, tenant=None, *, allow_deletes: bool = False, run_date: dt.date = RUN_DATE) -> RunResult:
        tenant = tenant or self.tenant()
        state = self.state()
        try:
            return run_tenant(tenant, state, run_date=run_date, allow_deletes=allow_deletes)
        finally:
            state.close()

    def plan(self, tenant=None, *, fresh_state: bool = False, portal: Path | None = None) -> Prepared:
        """Everything up to the plan (nothing written). fresh_state: as if the engine had no memory."""
        tenant = tenant or self.tenant()
        state = StateStore(f"sqlite:///{self.root / 'fresh-state.sqlite'}") if fresh_state else self.state()
        target = LocalStore(portal or self.portal_path)
        try:
            return prepare(tenant, target, state, run_date=RUN_DATE)
        finally:
            target.close()
            state.close()

    def portal(self, path: Path | None = None) -> Portal:
        return Portal(path or self.portal_path)

    def edit_portal(self, *edits: tuple[str, str, dict[str, Any]]) -> None:
        """Change records directly in the portal store, as a person would in the portal:
        (entity, external_id, {field: value}) per edit."""
        store = LocalStore(self.portal_path)
        try:
            for entity, external_id, fields in edits:
                store.edit(entity, external_id, **fields)
        finally:
            store.close()

    # the real command line --------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`python -m engine ARGS` in this workspace, as a user runs it."""
        env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout)

    def cli_json(self, *args: str) -> tuple[int, dict | None, str]:
        done = self.cli(*args, "--json")
        try:
            summary = json.loads(done.stdout) if done.stdout.strip() else None
        except json.JSONDecodeError:
            summary = None
        return done.returncode, summary, done.stderr

    # the ERP ----------------------------------------------------------------------------------
    def erp_rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        con = sqlite3.connect(self.erp)
        con.row_factory = sqlite3.Row
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def erp_execute(self, *statements: tuple[str, tuple] | str) -> None:
        """Change the ERP copy (as the property manager would, in DOMUS)."""
        con = sqlite3.connect(self.erp)
        try:
            with con:
                for s in statements:
                    sql, params = (s, ()) if isinstance(s, str) else s
                    con.execute(sql, params)
        finally:
            con.close()

    def next_key(self, table: str, column: str) -> int:
        return self.erp_rows(f"SELECT max({column}) + 1 AS k FROM {table}")[0]["k"]

    def add_person(self, nachname: str, vorname: str | None = None, email: str | None = None, *,
                   anrede: str | None = "Frau", telefon: str | None = None) -> int:
        nr = self.next_key("adresse", "adressnr")
        self.erp_execute(("INSERT INTO adresse (adressnr, anrede, vorname, nachname, email, telefon, sprache) "
                          "VALUES (?, ?, ?, ?, ?, ?, 'de')", (nr, anrede, vorname, nachname, email, telefon)))
        return nr

    def add_unit(self, objektnr: int, bezeichnung: str, typcode: int = 1) -> int:
        uid = self.next_key("einheit", "einheitid")
        self.erp_execute(("INSERT INTO einheit (einheitid, objektnr, einheitnr, bezeichnung, typcode, fiktiv, etage, "
                          "flaeche) VALUES (?, ?, ?, ?, ?, 0, 'EG', 50.0)",
                          (uid, objektnr, f"N{uid % 1000:03d}", bezeichnung, typcode)))
        return uid

    def add_contract(self, einheitid: int, art: str, beginn: str, ende: str | None, partner: list[int]) -> int:
        nr = self.next_key("vertrag", "vertragnr")
        self.erp_execute(("INSERT INTO vertrag (vertragnr, einheitid, art, beginn, ende) VALUES (?, ?, ?, ?, ?)",
                          (nr, einheitid, art, beginn, ende)),
                         *(("INSERT INTO vertragpartner (vertragnr, adressnr, position) VALUES (?, ?, ?)",
                            (nr, p, i)) for i, p in enumerate(partner, 1)))
        return nr

    def in_scope_building(self) -> int:
        """An object every demo tenant syncs (Mandant 1, outside the test-object range)."""
        return self.erp_rows("SELECT min(objektnr) AS o FROM objekt WHERE mandant = 1 "
                             "AND objektnr NOT BETWEEN 9000 AND 9999")[0]["o"]


@pytest.fixture
def ws(demo_erp, tmp_path) -> Workspace:
    """A workspace with its own writable copy of the demo ERP."""
    erp = tmp_path / "erp.sqlite"
    shutil.copyfile(demo_erp.path, erp)
    erp.chmod(0o644)
    return Workspace(tmp_path, erp, demo_erp.manifest)


@dataclass
class DemoRun:
    """The demo tenant run once into an empty portal store, as `idwell-sync demo` does."""
    ws: Workspace
    result: RunResult
    portal: Portal
    findings: Findings

    @property
    def manifest(self) -> Manifest:
        return self.ws.manifest

    def findings_key(self, user: str) -> str:
        """The ERP key findings use for a portal user: its own key, or a merged user's member keys."""
        if "+" not in user:
            return user
        members = set(user.split("+"))
        keys = [k for (e, k) in self.findings.by_key if e == "users" and set(k.split("+")) == members]
        return keys[0] if keys else user


@pytest.fixture(scope="module")
def demo_run(demo_erp, tmp_path_factory) -> DemoRun:
    """One run of the unchanged demo tenant, shared by the read-only tests of a module."""
    root = tmp_path_factory.mktemp("demo-run")
    erp = root / "erp.sqlite"
    shutil.copyfile(demo_erp.path, erp)
    erp.chmod(0o644)
    w = Workspace(root, erp, demo_erp.manifest)
    result = w.run()
    return DemoRun(w, result, w.portal(), Findings(result.findings))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Workspace:
    """A fresh directory with the repository's tenants/ and mappings/, as on a new machine; the demo
    command generates its ERP into var/demo/erp.sqlite."""
    root = tmp_path_factory.mktemp("fresh-machine")
    shutil.copytree(REPO / "tenants", root / "tenants")
    shutil.copytree(MAPPINGS, root / "mappings")
    return Workspace(root, root / "var" / "demo" / "erp.sqlite", None)
