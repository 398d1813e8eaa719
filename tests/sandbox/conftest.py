"""Fixtures of the sandbox tests: a real sandbox process, and a work folder with the demo tenant.

Every sandbox is its own process on a free port of 127.0.0.1 with its store in tmp_path. The demo
ERP (size S) is generated once per test process and copied; the fault-free result of the demo
tenant with the local target is the expected portal state of every sandbox run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.config.model import ENTITIES
from engine.sandbox.process import sandbox_process
from engine.targets._store_portal import PortalStore

TOKEN = "t-sandbox-1"
REPO = Path(__file__).resolve().parents[2]
TOKEN_ENV = "IDWELL_TOKEN_DEMO"
RUN_TIMEOUT = 300


@pytest.fixture
def sandbox(tmp_path):
    with sandbox_process(tmp_path / "portal.sqlite", token=TOKEN, extra_tokens=("othercustomer:t-other-9",)) as sb:
        yield sb


def portal_state(path: Path) -> dict[str, dict[str, dict]]:
    """Every managed record of a portal store: entity -> external_id -> record."""
    store = PortalStore(path)
    try:
        return {e: {r["external_id"]: r for r in store.iter_records(e)} for e in ENTITIES}
    finally:
        store.close()


@dataclass
class Run:
    code: int
    summary: dict | None
    stderr: str


class Workspace:
    """A folder laid out like a checkout: tenants/demo.yaml, mappings/, var/demo/erp.sqlite."""

    def __init__(self, root: Path, erp: Path):
        self.root = root
        (root / "tenants").mkdir(parents=True)
        shutil.copytree(REPO / "mappings", root / "mappings")
        (root / "var/demo").mkdir(parents=True)
        shutil.copy(erp, root / "var/demo/erp.sqlite")
        self.demo = (REPO / "tenants/demo.yaml").read_text(encoding="utf-8")
        self.tenant = root / "tenants/demo.yaml"
        self.use_local()

    def use_local(self) -> None:
        self.tenant.write_text(self.demo, encoding="utf-8")

    def use_sandbox(self, base_url: str, **settings) -> None:
        """The demo tenant with only its target section changed."""
        lines = ["target:", "  type: idwell", f"  base_url: {base_url}", f"  token: ${{env:{TOKEN_ENV}}}"]
        lines += [f"  {k}: {v}" for k, v in settings.items()]
        text, n = re.subn(r"(?ms)^target:\n(?:  .*\n)+", "\n".join(lines) + "\n", self.demo)
        assert n == 1, "the demo tenant has no target section to replace"
        self.tenant.write_text(text, encoding="utf-8")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "engine", "run", "tenants/demo.yaml", "--state", "sqlite:///var/state.sqlite",
                "--json", *args]

    def env(self, token: str = TOKEN) -> dict[str, str]:
        return {**os.environ, TOKEN_ENV: token}

    def run(self, *args: str, token: str = TOKEN) -> Run:
        p = subprocess.run(self.command(*args), cwd=self.root, env=self.env(token), capture_output=True,
                           text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        try:
            summary = json.loads(p.stdout) if p.stdout.strip() else None
        except ValueError:
            summary = None
        return Run(p.returncode, summary, p.stderr)

    def erp_execute(self, sql: str) -> None:
        import sqlite3
        with sqlite3.connect(self.root / "var/demo/erp.sqlite") as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def demo_erp(tmp_path_factory) -> Path:
    from engine.demo import generate
    path = tmp_path_factory.mktemp("erp") / "erp.sqlite"
    generate(f"sqlite:///{path}", size="S")
    return path


@pytest.fixture(scope="session")
def expected_portal(tmp_path_factory, demo_erp) -> dict[str, dict[str, dict]]:
    """The demo tenant's portal after one run with the local target (no HTTP, no faults)."""
    ws = Workspace(tmp_path_factory.mktemp("local"), demo_erp)
    run = ws.run()
    assert run.code == 0, run.stderr
    state = portal_state(ws.root / "var/portal/demo.sqlite")
    assert all(state[e] for e in ENTITIES)
    return state


@pytest.fixture(name="portal_state")
def portal_state_fixture():
    """The function portal_state(path), for the tests of this folder."""
    return portal_state


@pytest.fixture
def workspace(tmp_path, demo_erp) -> Workspace:
    return Workspace(tmp_path / "ws", demo_erp)
