"""`idwell-sync sandbox` with a --data or --write-log it cannot use: a usage error (exit 2) that
names the option and the file, not a traceback (exit 70 'internal error (a bug)') and not 'cannot
serve on 127.0.0.1:PORT', which sent the user to look at the port."""
from __future__ import annotations

import subprocess
import sys

import pytest


def sandbox(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "sandbox", "--port", "0", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("option", ["--data", "--write-log"])
def test_a_folder_is_named_with_a_file_to_give_instead(tmp_path, option):
    (tmp_path / "portal").mkdir()
    args = [option, "portal"] + (["--data", "store.sqlite"] if option == "--write-log" else [])
    done = sandbox(tmp_path, *args)
    name = "portal.sqlite" if option == "--data" else "portal.writes.jsonl"
    assert (done.returncode, done.stderr) == (
        2, f"idwell-sync sandbox: error: {option} portal: is a folder; name a file in it (e.g. portal/{name})\n")


def test_a_file_that_is_no_sqlite_database_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not a portal\n")
    done = sandbox(tmp_path, "--data", "notes.txt")
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("idwell-sync sandbox: error: --data notes.txt: cannot open it as the portal store (SQLite "
                           "said: file is not a database); name another file (created if missing), or move this one "
                           "aside\n")
    assert (tmp_path / "notes.txt").read_text() == "not a portal\n"


def test_a_folder_that_cannot_be_created_is_named_not_the_port(tmp_path):
    (tmp_path / "notes.txt").write_text("a file where the store's folder would go\n")
    done = sandbox(tmp_path, "--data", "notes.txt/portal.sqlite")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("idwell-sync sandbox: error: cannot create or open notes.txt: ")
    assert "127.0.0.1" not in done.stderr and "Traceback" not in done.stderr
