"""A query that selects * (validate cannot check its columns) whose rows lack a column the mapping
reads: plan, run and doctor name the tenant, the entity and the column and say what to do, exit 3
(the mapping cannot be computed), also when another expression reads the whole row (`@`)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from engine import cli
from pgcluster import sqlite_domus

REPO = Path(__file__).resolve().parents[1]

WHOLE_ROW = {"floor": "@.Etage", "name": "BezeichnungAlt"}
PLAIN = {"name": "BezeichnungAlt"}


def write_tenant(tmp_path: Path, fields: dict) -> Path:
    erp = tmp_path / "erp.sqlite"
    sqlite_domus(erp)
    (tmp_path / "mappings").mkdir()
    shutil.copy(REPO / "mappings" / "domus-sql.yaml", tmp_path / "mappings" / "domus-sql.yaml")
    (tmp_path / "tenants").mkdir()
    path = tmp_path / "tenants" / "acme.yaml"
    path.write_text(yaml.safe_dump({
        "id": "acme", "name": "Acme", "mapping": "domus-sql", "source": {"type": "sql", "url": f"sqlite:///{erp}"},
        "target": {"type": "local", "path": str(tmp_path / "var" / "portal.sqlite")},
        "overrides": {"entities": {"units": {"query": "SELECT * FROM Einheit", "fields": fields}}}}),
        encoding="utf-8")
    return path


@pytest.mark.parametrize("fields", [WHOLE_ROW, PLAIN], ids=["with-@", "plain"])
@pytest.mark.parametrize("command", ["plan", "run"])
def test_plan_and_run_name_the_column_the_query_does_not_return(tmp_path, capsys, monkeypatch, command, fields):
    monkeypatch.chdir(tmp_path)
    path = write_tenant(tmp_path, fields)
    code = cli.main([command, str(path)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "internal error" not in err and "Traceback" not in err
    assert ("tenant 'acme': entity 'units': the mapping reads BezeichnungAlt, which the query's rows do not have"
            in err), err
    assert "Did you mean 'Bezeichnung'?" in err
    assert "add the columns to the query's SELECT list" in err and "idwell-sync discover acme" in err
    assert not (tmp_path / "var" / "portal.sqlite").exists() or command == "plan"


def test_doctor_fails_the_query_step_with_the_missing_column_not_a_driver_error(tmp_path, capsys):
    path = write_tenant(tmp_path, WHOLE_ROW)
    code = cli.main(["doctor", str(path), "--format", "json"])
    steps = {s["name"]: s for s in json.loads(capsys.readouterr().out)["steps"]}
    assert code == 1
    units = steps["query:units"]
    assert units["status"] == "fail"
    assert units["detail"].endswith("; the mapping reads BezeichnungAlt, which the query does not return"), units
    assert "add the columns to the query's SELECT list" in units["hint_en"]
    assert steps["query:buildings"]["status"] == "ok" and steps["query:occupancies"]["status"] == "ok"
