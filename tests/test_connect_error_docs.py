"""docs/sqlserver.md, "When a run cannot connect", shows the line a run prints when it cannot
connect: the example must have the shape `idwell-sync run` prints, checked against a real run whose
server does not answer (a free port on 127.0.0.1)."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPE = re.compile(r"idwell-sync run: error: tenant '[a-z0-9_-]+': connect failed \(([a-z_]+)\): \S")


def documented_example() -> list[str]:
    text = (REPO / "docs" / "sqlserver.md").read_text(encoding="utf-8")
    section = text.split("## When a run cannot connect", 1)[1]
    block = re.search(r"\n\n((?:    .*\n)+)", section).group(1)
    return [line[4:] for line in block.splitlines()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_documented_line_has_the_shape_a_run_prints(tmp_path):
    (tmp_path / "tenants").mkdir()
    (tmp_path / "mappings").symlink_to(REPO / "mappings")
    tenant = (REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8")
    tenant = tenant.replace("id: demo", "id: kunde").replace(
        "sqlite:///var/demo/erp.sqlite", f"postgresql+psycopg://reader@127.0.0.1:{free_port()}/domus")
    (tmp_path / "tenants" / "kunde.yaml").write_text(tenant, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "engine", "run", "kunde"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    printed = done.stderr.splitlines()
    assert SHAPE.match(printed[0]) and printed[1].startswith("  what to do: "), printed

    documented = documented_example()
    assert len(documented) == 2, documented
    assert SHAPE.match(documented[0]), documented[0]
    assert SHAPE.match(documented[0]).group(1) == "tls_certificate"
    assert documented[1].startswith("  what to do: "), documented[1]
