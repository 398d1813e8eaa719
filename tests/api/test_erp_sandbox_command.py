"""`idwell-sync erp-sandbox`: the demo ERP served as the Cloud Connect API on 127.0.0.1, as the
docs tell a new team member to rehearse an API tenant: a tenant of the domus-api mapping reads it
with the key it names, plans and runs, and a rerun writes nothing; SIGTERM stops it (exit 0)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from test_api_source import KEY, _tenant


def _command(folder, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "engine", "erp-sandbox", *args], cwd=folder,
                            env=env or {**os.environ, "CC_KEY": KEY}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _cli(folder, *args):
    return subprocess.run([sys.executable, "-m", "engine", *args, "--state", f"sqlite:///{folder / 'state.sqlite'}"],
                          cwd=folder, env={**os.environ, "CC_KEY": KEY}, capture_output=True, text=True, timeout=300)


def test_a_tenant_of_the_api_mapping_syncs_from_the_erp_sandbox(erp, tmp_path):
    server = _command(tmp_path, "--erp", str(erp), "--port", "0")
    try:
        first = server.stdout.readline()
        assert first.startswith(f"idwell-sync erp-sandbox: serving {erp} as the Cloud Connect API at "), first
        url = first.rsplit(" at ", 1)[1].strip()
        said = [server.stdout.readline() for _ in range(3)]
        assert f'base_url: "{url}"' in said[1] and 'key: "${env:CC_KEY}"' in said[1], said
        tenant = _tenant(tmp_path, "cc", {"type": "api", "base_url": url,
                                          "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:CC_KEY}"}},
                         "domus-api", "client")
        done = _cli(tmp_path, "run", str(tenant), "--date", "2026-06-01", "--json")
        assert done.returncode == 0, done.stderr
        assert '"writes": 0' not in done.stdout
        again = _cli(tmp_path, "run", str(tenant), "--date", "2026-06-01", "--json")
        assert again.returncode == 0 and '"writes": 0' in again.stdout, again.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err


def test_without_its_key_or_its_erp_it_says_what_to_do(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CC_KEY"}
    done = _command(tmp_path, env=env)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2
    assert "the environment variable CC_KEY (--key-env) is not set" in err and "${env:CC_KEY}" in err
    done = _command(tmp_path, "--erp", str(tmp_path / "nowhere.sqlite"))
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2 and "no such file; `idwell-sync demo` makes the demo ERP" in err, err
