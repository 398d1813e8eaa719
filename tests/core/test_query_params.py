"""A query that binds a parameter nobody declares (`WHERE Mandant = :mandant` without `params:
{mandant: 1}`) is a mistake in the tenant file, not an ERP that cannot be read: `validate` names
it at the query's line, and `plan` and `run` stop with exit code 3 (the tenant file is invalid)
before they connect, not with exit code 4 ("the ERP cannot be reached or read"), which sends the
night operator to the customer's IT. Declared, the same query runs."""
from __future__ import annotations

QUERY = ("SELECT o.ObjektNr, o.Mandant, o.Bezeichnung, o.Strasse, o.HausNr, o.PLZ, o.Ort, o.Land\n"
         "FROM Objekt o WHERE o.Mandant <> :mandant\n")


def test_an_undeclared_query_parameter_is_a_config_error_naming_the_file_and_line(ws):
    path = ws.tenant_file(overrides={"entities": {"buildings": {"query": QUERY}}})

    validate = ws.cli("validate", str(path))
    assert validate.returncode == 1, validate.stdout
    assert ":mandant, which is not a declared parameter" in validate.stdout
    assert f"{path.name}:" in validate.stdout and "$.overrides.entities.buildings.query" in validate.stdout

    for command in ("plan", "run"):
        done = ws.cli(command, str(path))
        assert done.returncode == 3, (command, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr and "second process failed" not in done.stderr
        assert ":mandant, which is not a declared parameter" in done.stderr
        assert "$.overrides.entities.buildings.query" in done.stderr
    assert not ws.portal_path.exists() or ws.portal()["buildings"] == {}


def test_a_declared_query_parameter_binds(ws):
    path = ws.tenant_file(overrides={"entities": {"buildings": {"query": QUERY, "params": {"mandant": 3}}}})

    assert ws.cli("validate", str(path)).returncode == 0
    code, summary, err = ws.cli_json("plan", str(path), "--no-out")
    assert code == 0, err
    mandant_3 = ws.erp_rows("SELECT COUNT(*) AS n FROM objekt WHERE mandant = 3")[0]["n"]
    assert mandant_3 > 0
    total = ws.erp_rows("SELECT COUNT(*) AS n FROM objekt")[0]["n"]
    assert summary["entities"]["buildings"]["extracted"] == total - mandant_3
