"""A source.url whose query string gives a parameter twice that SQLAlchemy's mssql+pyodbc dialect
takes once (`odbc_connect=...&odbc_connect=...`): validate names the file, line and field and says
to give it once; plan, run and doctor stop with exit 3 the same way, also for a URL a ${env:...}
reference gives whole; never an internal error (exit 70), and the password never shown."""
from __future__ import annotations

import json

import pytest

from test_source_url_dialect import PASSWORD, cli, last_run, tenant_with_url, url_line

ODBC = "DRIVER%3D%7BODBC+Driver+18+for+SQL+Server%7D%3BSERVER%3D127.0.0.1%2C1%3BDATABASE%3Derp%3BUID%3Dreader"


@pytest.mark.parametrize("param, url", [
    ("odbc_connect", f"mssql+pyodbc:///?odbc_connect={ODBC}&odbc_connect=PWD%3D${{env:KUNDE_PW}}"),
    ("dsn", "mssql+pyodbc:///?dsn=erp&dsn=erp2"),
    ("database", "mssql+pyodbc://reader:${env:KUNDE_PW}@127.0.0.1/erp?database=a&database=b"),
])
def test_a_parameter_given_twice_is_named_by_validate_and_stops_every_command_with_exit_3(tmp_path, param, url):
    path = tenant_with_url(tmp_path, url)
    problem = (f"the query parameter '{param}' is given 2 times: the dialect mssql+pyodbc takes each parameter once; "
               f"give {param} once")
    done = cli(tmp_path, "validate", "tenants/kunde.yaml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"tenants/kunde.yaml:{url_line(path)}:3 $.source.url: {problem}" in done.stdout, done.stdout

    for command in (("plan", "--no-out"), ("run",), ("doctor",)):
        done = cli(tmp_path, command[0], "kunde", *command[1:], KUNDE_PW=PASSWORD)
        assert done.returncode == 3, done.stderr
        assert problem in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    assert last_run(tmp_path)["status"] == "failed"


def test_odbc_connect_twice_in_a_url_an_environment_variable_gives_is_a_configuration_error(tmp_path):
    tenant_with_url(tmp_path, "${env:KUNDE_ERP_URL}")
    url = f"mssql+pyodbc:///?odbc_connect={ODBC}&odbc_connect=PWD%3D{PASSWORD}"
    message = ("tenant 'kunde': source.url (${env:KUNDE_ERP_URL}): the query parameter 'odbc_connect' is given 2 times: "
               "the dialect mssql+pyodbc takes each parameter once; give odbc_connect once (put every ODBC "
               "attribute into the one odbc_connect, separated by ';')")
    for command in (("plan", "--no-out"), ("run",)):
        done = cli(tmp_path, command[0], "kunde", *command[1:], KUNDE_ERP_URL=url)
        assert done.returncode == 3, done.stderr
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    assert (last_run(tmp_path)["status"], last_run(tmp_path)["message"]) == ("failed", message)
    done = cli(tmp_path, "doctor", "kunde", "--format", "json", KUNDE_ERP_URL=url)     # its driver step fails with it
    driver = next(s for s in json.loads(done.stdout)["steps"] if s["name"] == "driver")
    assert (done.returncode, driver["status"]) == (1, "fail"), done.stdout + done.stderr
    assert driver["detail"] == message.split(": ", 1)[1].replace(" (${env:KUNDE_ERP_URL})", ""), driver
    assert "Traceback" not in done.stderr and PASSWORD not in done.stdout + done.stderr


def test_a_parameter_other_dialects_take_twice_is_not_refused(tmp_path):
    """PostgreSQL's drivers take `host` more than once (several servers to try): validate passes."""
    tenant_with_url(tmp_path, "postgresql+psycopg2://reader:${env:KUNDE_PW}@/erp?host=db1:5432&host=db2:5432")
    done = cli(tmp_path, "validate", "tenants/kunde.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
