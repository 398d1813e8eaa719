"""`idwell-sync validate` as people and CI use it: output formats, exit codes, file/line/col and
JSON path in every message, secrets never printed, the shipped files valid."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "config"

BROKEN = """\
# yaml-language-server: $schema=../schema/tenant.schema.json
id: acme
mapping: sql-basic
source:
  type: sql
  host: sql.acme.example
  database: DOMUS
  username: idwell_reader
  pasword: ${env:ACME_SQL_PASSWORD}
schedule:
  cron: "0 3 * * *"
  timezone: Europe/Berlim
target: {type: local, path: var/portal/acme.sqlite}
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A tenant repository: tenants/ and mappings/ in the working directory."""
    (tmp_path / "tenants").mkdir()
    shutil.copytree(CASES / "mappings", tmp_path / "mappings")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_broken_file_names_file_line_col_and_json_path(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN)
    code, out, _ = run(capsys, "tenants/acme.yaml")
    assert code == 1
    assert out.splitlines() == [
        "tenants/acme.yaml:9:3 $.source.pasword: unknown field 'pasword'. Did you mean 'password'?",
        "tenants/acme.yaml:12:3 $.schedule.timezone: unknown time zone 'Europe/Berlim'. Did you mean 'Europe/Berlin'?",
        "2 errors in 1 of 1 file",
    ]


def test_a_problem_in_the_tenants_mapping_counts_that_file(workdir, capsys):
    """The tenant's query override drops a column that the mapping's field reads: the error is at the
    mapping's line, so the count names two files, not '2 of 1 file'."""
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\n"
        "target: {type: local, path: var/portal/acme.sqlite}\n"
        "overrides:\n  entities:\n    users:\n"
        "      query: SELECT a.AdressNr, a.Vorname, a.Nachname, a.EmailAdresse, a.Mobil FROM Adresse a\n"
        "      fields: {emial: EmailAdresse}\n")
    code, out, _ = run(capsys, "tenants/acme.yaml")
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3
    assert lines[0].startswith("mappings/sql-basic.yaml:") and "column 'Email' is not in the select list of the query at " \
        "tenants/acme.yaml:8" in lines[0]
    assert lines[1].startswith("tenants/acme.yaml:9:16 $.overrides.entities.users.fields.emial: unknown field 'emial'")
    assert lines[2] == "2 errors in 2 of 2 files"
    code, out, _ = run(capsys, "--format", "json", "tenants/acme.yaml")
    assert json.loads(out)["files"] == 2


def test_github_format_gives_annotations(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN)
    code, out, _ = run(capsys, "--format", "github", "tenants")
    assert code == 1
    assert out.splitlines()[0] == ("::error file=tenants/acme.yaml,line=9,col=3::$.source.pasword: "
                                   "unknown field 'pasword'. Did you mean 'password'?")
    assert len([line for line in out.splitlines() if line.startswith("::error file=tenants/acme.yaml,line=")]) == 2


def test_json_format(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN)
    code, out, _ = run(capsys, "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["valid"] is False and report["errors"] == 2
    assert report["files"] == 3   # the tenant and the two mappings: tenants/ and mappings/ by default
    assert report["problems"][0] == {"file": "tenants/acme.yaml", "line": 9, "col": 3, "json_path": "$.source.pasword",
                                     "message": "unknown field 'pasword'. Did you mean 'password'?", "severity": "error"}


def test_default_paths_valid_files_exit_0(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\n"
        "target: {type: local, path: var/portal/acme.sqlite}\n")
    code, out, _ = run(capsys)
    assert (code, out) == (0, "3 files valid\n")


def test_warnings_alone_exit_0(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\ndeletion: {max_share: 0.9}\n"
        "target: {type: local, path: var/portal/acme.sqlite}\n")
    code, out, _ = run(capsys, "tenants")
    assert code == 0
    assert "tenants/acme.yaml:4:12 $.deletion.max_share: warning: max_share 0.9" in out
    assert out.splitlines()[-1] == "1 file valid (1 warning)"


def test_validate_never_resolves_secrets(workdir, capsys, monkeypatch):
    monkeypatch.delenv("ACME_SQL_PASSWORD", raising=False)
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource:\n  type: sql\n  host: h\n  database: d\n  username: u\n"
        "  password: ${env:ACME_SQL_PASSWORD}\ntarget: {type: idwell, base_url: 'https://x.example', "
        "token: '${file:/does/not/exist}'}\n")
    assert run(capsys, "tenants")[0] == 0


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_literal_secrets_never_appear_in_output(workdir, capsys, fmt):
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource:\n  type: sql\n  url: mssql://sa:Geheim%2142@h/db\n"
        "target: {type: idwell, base_url: 'https://x.example', token: Tok3nValue}\n"
        "state_url: 'postgresql://u:Zw31tesGeheimnis@db/x'\n")
    code, out, err = run(capsys, "--format", fmt, "tenants")
    assert code == 1 and out.count("literal") == 3
    for secret in ("Geheim", "Tok3nValue", "Zw31tes"):
        assert secret not in out + err


def test_a_tenant_without_target_is_valid_with_a_warning(workdir, capsys):
    """validate passes a tenant without a target (doctor and discover work without one) but says
    that plan and run need one, which they refuse it for with exit code 3."""
    (workdir / "tenants" / "acme.yaml").write_text(
        "id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\n")
    code, out, _ = run(capsys, "tenants")
    assert code == 0 and out.splitlines() == [
        "tenants/acme.yaml:1:1 $.id: warning: the tenant declares no target: validate, doctor and discover "
        "work without one, but plan and run need one (a target section, docs/config.md)", "1 file valid (1 warning)"]


def test_max_errors_summarises_the_rest(workdir, capsys):
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN)
    code, out, _ = run(capsys, "--max-errors", "1", "tenants")
    assert out.splitlines()[1:] == ["... and 1 more error; use --max-errors 0 to see all", "2 errors in 1 of 1 file"]


def test_usage_errors_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "no-such-file.yaml")
    assert code == 2 and "no such file or folder: no-such-file.yaml" in err
    code, _, err = run(capsys)
    assert code == 2 and "no tenants/ or mappings/ folder" in err
    with pytest.raises(SystemExit) as caught:
        main(["validate", "--format", "xml"])
    assert caught.value.code == 2


def test_duplicate_tenant_ids_across_files(workdir, capsys):
    for name in ("acme", "acme-copy"):
        (workdir / "tenants" / f"{name}.yaml").write_text(
            "id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\n")
    code, out, _ = run(capsys, "tenants")
    assert code == 1
    assert "tenants/acme.yaml:1:5 $.id: the tenant id 'acme' is already used by tenants/acme-copy.yaml" in out


def test_mapping_without_modeline_is_told_apart_by_its_folder_and_content(workdir, capsys):
    text = (CASES / "mappings" / "sql-basic.yaml").read_text().split("\n", 1)[1]  # drop the modeline
    (workdir / "mappings" / "sql-basic.yaml").write_text(text)
    (workdir / "other").mkdir()
    (workdir / "other" / "sql-basic.yaml").write_text(text)
    assert run(capsys, "mappings", "other") [0] == 0


def test_console_entry_point(workdir):
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN)
    done = subprocess.run([sys.executable, "-m", "engine", "validate", "--format", "github"],
                          capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 1
    assert re.search(r"^::error file=tenants/acme\.yaml,line=9,col=3::", done.stdout, re.M)


def test_output_whose_reader_stopped_ends_quietly_with_141():
    """`idwell-sync validate | head -1` (or doctor, plan): when the reader of the output stops,
    the command stops without a traceback or 'internal error', with the code a shell shows for
    SIGPIPE; an error of the command itself would still be reported as such."""
    import os
    read_end, write_end = os.pipe()
    os.close(read_end)                            # nobody reads: the first write finds the pipe closed
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}    # output held until the end
        done = subprocess.run([sys.executable, "-m", "engine", "validate", "tenants/demo.yaml", "mappings"],
                              cwd=REPO, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr and "Exception ignored" not in done.stderr


def test_command_line_mistakes_say_what_to_write(capsys):
    """A date or row count that cannot be one is a usage error (2) that says what to write,
    -v is taken after the command too, and --version names the installed version."""
    for argv, expected in ((["plan", "demo", "--date", "2026-13-01"], "'2026-13-01' is not a date: write YYYY-MM-DD"),
                           (["discover", "demo", "adresse", "--rows", "-1"], "give a number of rows, 0 or more"),
                           (["run", "demo", "--bogus"], "usage: idwell-sync run [-h]")):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2 and expected in capsys.readouterr().err
    code = main(["validate", "-v", str(REPO / "tenants" / "demo.yaml"), "--mapping-dir", str(REPO / "mappings")])
    assert code == 0 and "1 file valid" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    from importlib.metadata import version
    assert caught.value.code == 0 and capsys.readouterr().out.strip() == f"idwell-sync {version('idwell-sync')}"


def test_a_tab_after_a_colon_is_named_with_file_line_col_and_what_to_write(workdir, capsys):
    """`host:<TAB>db.example`, as an editor that keeps tabs writes it: PyYAML says "found character
    '\\t' that cannot start any token"; validate says where the tab is and what to write instead."""
    (workdir / "tenants" / "acme.yaml").write_text(BROKEN.replace("  host: sql.acme.example", "  host:\tsql.acme.example"))
    code, out, _ = run(capsys, "tenants/acme.yaml")
    assert code == 1
    assert out.splitlines() == [
        "tenants/acme.yaml:6:8 $: invalid YAML: a tab character after 'host:': YAML needs spaces; write a space "
        "between 'host:' and its value",
        "1 error in 1 of 1 file",
    ]


def test_a_mistyped_tenant_id_is_answered_with_the_id_it_may_mean(workdir, capsys):
    (workdir / "tenants" / "kunde-nord.yaml").write_text(BROKEN.replace("id: acme", "id: kunde-nord"))
    code = main(["plan", "kunde-nrod"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err.splitlines() == [
        "idwell-sync plan: error: tenant 'kunde-nrod': no tenant file at tenants/kunde-nrod.yaml",
        "  what to do: Did you mean 'kunde-nord'? (a tenant id is its file's name in tenants/)",
    ]


def test_a_tenant_file_name_without_its_folder_is_answered_with_the_path_and_the_id(workdir, capsys):
    """`plan kunde-nord.yaml` typed beside tenants/ (not an id, not a path that exists): the
    answer names the file in tenants/ and the id, where it said nothing but 'no tenant file'."""
    (workdir / "tenants" / "kunde-nord.yaml").write_text(BROKEN.replace("id: acme", "id: kunde-nord"))
    code = main(["plan", "kunde-nord.yaml"])
    _, err = capsys.readouterr()
    assert code == 3
    assert err.splitlines() == [
        "idwell-sync plan: error: tenant 'kunde-nord.yaml': no tenant file at kunde-nord.yaml",
        "  what to do: did you mean tenants/kunde-nord.yaml? Give its path, or the tenant id alone: kunde-nord",
    ]


def test_a_folder_named_like_a_tenant_does_not_hide_its_tenant_file(workdir, capsys):
    """A data folder kunde-nord/ beside tenants/kunde-nord.yaml: `plan kunde-nord` means the
    tenant (a folder is no tenant file); `validate kunde-nord` (which takes folders) says that the
    tenant's file is there; a folder of another name is called a folder."""
    (workdir / "tenants" / "kunde-nord.yaml").write_text(BROKEN.replace("id: acme", "id: kunde-nord"))
    (workdir / "kunde-nord").mkdir()
    (workdir / "daten").mkdir()
    code = main(["plan", "kunde-nord"])
    _, err = capsys.readouterr()
    assert code == 3 and "tenants/kunde-nord.yaml" in err and "no tenant file" not in err, err   # the file's own errors
    code = main(["validate", "kunde-nord"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == ("idwell-sync validate: error: no .yaml files found in kunde-nord (validate takes files and "
                           "folders, not tenant ids: tenants/kunde-nord.yaml is there)")
    code = main(["plan", "daten"])
    _, err = capsys.readouterr()
    assert code == 3
    assert "tenant 'daten': daten is a folder, not a tenant file, and tenants holds no daten.yaml" in err


def test_a_tenant_id_given_outside_the_tenants_folders_parent_says_where_it_was_looked_for(tmp_path, monkeypatch,
                                                                                           capsys):
    monkeypatch.chdir(tmp_path)          # e.g. a scheduler entry without its `cd`
    code = main(["run", "kunde-nord"])
    _, err = capsys.readouterr()
    assert code == 3
    assert f"there is no folder tenants in {tmp_path}: run the command in the folder that holds tenants/" in err


@pytest.mark.parametrize("value", ["-1", "many"])
def test_max_errors_below_zero_is_a_usage_error_naming_the_range(workdir, value):
    done = subprocess.run([sys.executable, "-m", "engine", "validate", "--max-errors", value, "tenants"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (f"idwell-sync validate: error: argument --max-errors: {value!r} is not a "
                                            "number of problems: give 0 (all) or more")
