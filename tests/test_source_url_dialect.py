"""A source.url whose dialect SQLAlchemy cannot load (`postgres://`, a typo such as
`postgresqlx://`): `validate` names the file, line and field with a did-you-mean; a URL that
validate cannot read (a whole ${env:...} reference) stops plan and run as a configuration error
(exit 3, with what to do) and fails doctor's driver step, never as a bug (exit 70)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Geheim-7731"


def tenant_with_url(tmp_path: Path, url: str) -> Path:
    """tenants/kunde.yaml (the demo tenant's mapping and rules) reading `url`; its state store and
    portal in tmp_path."""
    (tmp_path / "tenants").mkdir(exist_ok=True)
    if not (tmp_path / "mappings").exists():
        shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    doc = yaml.safe_load((REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc["id"] = "kunde"
    doc["source"] = {"type": "sql", "url": url}
    doc["target"] = {"type": "local", "path": str(tmp_path / "portal.sqlite")}
    doc["state_url"] = f"sqlite:///{tmp_path / 'state.sqlite'}"
    path = tmp_path / "tenants" / "kunde.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env})


def last_run(tmp_path: Path) -> dict:
    done = cli(tmp_path, "history", "kunde", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]


def url_line(path: Path) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "url:" in line)


@pytest.mark.parametrize("dialect", ["postgres", "postgresqlx"])
def test_an_unknown_dialect_in_the_file_is_named_by_validate_and_stops_every_command_with_exit_3(tmp_path, dialect):
    path = tenant_with_url(tmp_path, f"{dialect}://postgres@127.0.0.1/test")
    expected = (f"tenants/kunde.yaml:{url_line(path)}:3 $.source.url: unknown database dialect '{dialect}'. "
                "Did you mean 'postgresql'?")
    done = cli(tmp_path, "validate", "tenants/kunde.yaml")
    assert done.returncode == 1 and expected in done.stdout.splitlines(), done.stdout + done.stderr

    for command in (("plan", "--no-out"), ("run",), ("doctor",)):
        done = cli(tmp_path, command[0], "kunde", *command[1:])
        assert done.returncode == 3, done.stderr
        assert f"idwell-sync {command[0]}: error: {expected}" in done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert "TCP 127.0.0.1:0" not in done.stdout          # doctor stops before its checklist
    assert (last_run(tmp_path)["status"], last_run(tmp_path)["message"]) == ("failed", expected)


def test_an_unknown_dialect_given_by_an_environment_variable_is_a_configuration_error(tmp_path):
    """validate cannot see the URL (it never resolves references) and passes; plan and run stop
    with exit 3, the variable named and what to do, the run recorded with the reason, the
    password in the variable's URL never shown."""
    tenant_with_url(tmp_path, "${env:KUNDE_ERP_URL}")
    done = cli(tmp_path, "validate", "tenants/kunde.yaml")
    assert done.returncode == 0, done.stdout + done.stderr

    url = f"postgres://reader:{PASSWORD}@127.0.0.1/test"
    message = ("tenant 'kunde': source.url (${env:KUNDE_ERP_URL}): unknown database dialect 'postgres'. "
               "Did you mean 'postgresql'?")
    hint = ("correct the part before :// in source.url (${env:KUNDE_ERP_URL}): a dialect, or dialect+driver, "
            "that SQLAlchemy can load here (")
    for command in (("plan", "--no-out"), ("run",)):
        done = cli(tmp_path, *command, "kunde", "--json", KUNDE_ERP_URL=url)
        assert done.returncode == 3, done.stderr
        assert f"idwell-sync {command[0]}: error: {message}\n  what to do: {hint}" in done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        summary = json.loads(done.stdout)
        assert (summary["status"], summary["exit_code"], summary["error"]["message"]) == ("failed", 3, message)
        assert PASSWORD not in done.stdout + done.stderr
    assert (last_run(tmp_path)["status"], last_run(tmp_path)["message"]) == ("failed", message)

    done = cli(tmp_path, "plan", "kunde", "--no-out", KUNDE_ERP_URL="postgresql+psycopgx://reader@127.0.0.1/test")
    assert done.returncode == 3 and "unknown driver 'psycopgx' for the database dialect 'postgresql'. " \
                                   "Did you mean 'psycopg'?" in done.stderr, done.stderr


def test_a_reference_that_gives_no_url_at_all_is_a_configuration_error_with_a_readable_hint(tmp_path):
    """The variable holds no SQLAlchemy URL (a bare host name, say): exit 3 like an unknown
    dialect, and the hint's example URL is not masked into user:***@ (its password a reference)."""
    tenant_with_url(tmp_path, "${env:KUNDE_ERP_URL}")
    done = cli(tmp_path, "plan", "kunde", "--no-out", KUNDE_ERP_URL=f"sql.kunde.example;pwd={PASSWORD}")
    assert done.returncode == 3, done.stderr
    assert "source.url is not a valid SQLAlchemy URL (after resolving its secrets)" in done.stderr
    assert "write it as dialect+driver://user:${env:PASSWORD}@host:port/database" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_doctor_fails_at_the_driver_step_for_an_unknown_dialect_without_trying_a_port(tmp_path):
    """doctor used to try TCP port 0 (no default port for a dialect it does not know), then
    crash; now DNS and TCP are not run, the driver step fails with the reason and what to do."""
    tenant_with_url(tmp_path, "${env:KUNDE_ERP_URL}")
    done = cli(tmp_path, "doctor", "kunde", KUNDE_ERP_URL="postgres://postgres@127.0.0.1/test")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert "TCP 127.0.0.1:0" not in done.stdout
    assert ("[FAIL]  4. driver / Treiber: source.url: unknown database dialect 'postgres'. Did you mean "
            "'postgresql'?\n            what to do: correct source.url") in done.stdout


def test_the_dialects_are_those_sqlalchemys_registry_loads():
    """Not a list of our own: a dialect an installed package registers is accepted (here one
    registered in-process, under a name of its own); a name nobody registers is refused."""
    from sqlalchemy.dialects import registry

    from engine.config import dialects
    assert dialects.url_dialect_problem("sqlite:///erp.sqlite") is None
    assert dialects.url_dialect_problem("${env:ERP_URL}") is None             # not resolved: nothing to judge
    assert dialects.url_dialect_problem("${env:DIALECT}://h/db") is None
    registry.register("acmedb", "sqlalchemy.dialects.sqlite.pysqlite", "dialect")
    try:
        assert dialects.url_dialect_problem("acmedb://h/db") is None
    finally:
        registry.deregister("acmedb")
    assert dialects.url_dialect_problem("acmedb2://h/db").startswith("unknown database dialect 'acmedb2'. ")


def test_a_connection_the_server_refuses_for_a_reason_of_its_own_names_the_tenants_commands(tmp_path):
    """A failure the engine has no cause of its own for (here the server refuses an unknown setting
    in the URL's options) points plan and discover to `idwell-sync doctor kunde`, not to a
    placeholder TENANT; doctor itself, which is running, does not point to itself."""
    from test_state import _pg_reachable
    from pgcluster import require
    problem = _pg_reachable()
    require(not problem, f"PostgreSQL on 127.0.0.1:5432 is unreachable: {problem}")
    tenant_with_url(tmp_path, "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-cno_such_setting%3D1")
    for command in ("plan", "discover"):
        done = cli(tmp_path, command, "kunde")
        assert done.returncode == 4, done.stderr
        assert f"tenant 'kunde': {'connect' if command == 'plan' else 'discover'} failed (unknown): " in done.stderr
        assert ("what to do: the error quotes the database driver's own message, which says what failed; "
                "`idwell-sync doctor kunde` checks the connection step by step") in done.stderr
        assert "TENANT" not in done.stderr
    done = cli(tmp_path, "doctor", "kunde")
    assert "[FAIL]  6. login / Anmeldung: unknown: " in done.stdout
    assert "what to do: the error quotes the database driver's own message, which says what failed\n" in done.stdout
    assert "`idwell-sync doctor" not in done.stdout and "TENANT" not in done.stdout


def test_an_unreachable_server_is_named_with_the_urls_host_port_and_kind_not_sql_server_1433(tmp_path):
    """A PostgreSQL URL on a port nothing listens on: the run's hint named "TCP 1433" and "the SQL
    Server" whatever the URL said; it names the URL's host and port and a PostgreSQL server."""
    import socket
    with socket.socket() as s:                      # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tenant_with_url(tmp_path, f"postgresql+psycopg://sync:${{env:ERP_PW}}@127.0.0.1:{port}/erp")
    done = cli(tmp_path, "run", "kunde", ERP_PW=PASSWORD)
    assert done.returncode == 4, done.stderr
    hint = next(line for line in done.stderr.splitlines() if "what to do" in line)
    assert f"open TCP {port} " in hint and "127.0.0.1" in hint and "the PostgreSQL server must accept" in hint, hint
    assert "1433" not in hint and "SQL Server" not in hint and PASSWORD not in done.stderr
