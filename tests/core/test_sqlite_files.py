"""A run whose SQLite files are not what the tenant file says: the ERP's file (source.url) or the local
portal store (target.path) damaged, overwritten by something that is no database, or a directory where
the file should be. Each names the tenant, the file and what to do, and a cause of its own (the ERP's
`database_damaged`, `database_missing` for a directory), not `unknown` with the driver's bare text
("file is not a database", "disk I/O error") and a generic hint; `history` keeps the message."""
from __future__ import annotations

import json
import sqlite3

import pytest

SAID = {"no database": "file is not a database", "damaged in the middle": "database disk image is malformed"}


def damage(path, how: str) -> None:
    if how == "no database":                         # e.g. `echo x > erp.sqlite`
        path.write_bytes(b"x\n")
    elif how == "damaged in the middle":             # the first page (the schema) intact, every table's pages garbage
        with sqlite3.connect(path) as con:
            page = con.execute("PRAGMA page_size").fetchone()[0]
        con.close()
        size = path.stat().st_size
        with path.open("r+b") as fh:
            fh.seek(page)
            fh.write(b"\xa5" * (size - page))
    else:                                            # a directory where the file should be
        path.unlink()
        path.mkdir()


def last_message(ws, path) -> str:
    done = ws.cli("history", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]["message"]


@pytest.mark.parametrize("how", ["no database", "damaged in the middle"])
def test_an_erp_file_that_is_no_database_or_is_damaged_is_database_damaged_naming_the_file(ws, how):
    path = ws.tenant_file("acme")
    damage(ws.erp, how)
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 4, done.stderr
    said = (f"failed (database_damaged): the SQLite file {ws.erp} is not an SQLite database, or is damaged "
            f"(SQLite said: {SAID[how]})")
    first = done.stderr.splitlines()[0]
    assert first.startswith("idwell-sync run: error: tenant 'acme': ") and first.endswith(said), done.stderr
    if how == "no database":                         # SQLite reads the file on its first query: at the connection
        assert first == f"idwell-sync run: error: tenant 'acme': connect {said}"
    assert done.stderr.splitlines()[1] == (
        "  what to do: check that source.url names the ERP's SQLite file, not another file; if it does, copy the "
        "file again from the ERP (a copy cut short, or taken while the ERP wrote it, is damaged) or restore it from "
        "a backup")
    assert last_message(ws, path) == first.removeprefix("idwell-sync run: error: ")
    doctor = ws.cli("doctor", str(path), "--format", "json")
    steps = {s["name"]: s for s in json.loads(doctor.stdout)["steps"]}
    if how == "no database":
        assert steps["login"]["status"] == "fail" and steps["login"]["detail"].startswith(
            f"database_damaged: the SQLite file {ws.erp} is not an SQLite database"), steps["login"]


def test_an_erp_path_that_is_a_directory_says_so(ws):
    path = ws.tenant_file("acme")
    damage(ws.erp, "directory")
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"idwell-sync run: error: tenant 'acme': connect failed (database_missing): {ws.erp} is a directory, not an "
        f"SQLite file",
        "  what to do: source.url names a directory: name the SQLite file itself (relative paths start in the "
        "directory idwell-sync runs in)"]
    doctor = ws.cli("doctor", str(path), "--format", "json")
    login = {s["name"]: s for s in json.loads(doctor.stdout)["steps"]}["login"]
    assert login["detail"] == f"database_missing: {ws.erp} is a directory, not an SQLite file", login


def test_an_empty_erp_file_says_it_is_empty_not_that_a_table_is_missing(ws):
    """SQLite takes a 0-byte file (a copy cut short, a file created before the export wrote it) for
    an empty database, so the first query finds no table: the run and doctor's query steps say the
    file is empty instead of sending the user to compare the query with discover."""
    path = ws.tenant_file("acme")
    ws.erp.write_bytes(b"")
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines()[0].endswith(
        f"failed (database_damaged): the SQLite file {ws.erp} is empty (0 bytes), so it has none of the queries' "
        "tables"), done.stderr
    assert done.stderr.splitlines()[1].startswith("  what to do: copy the ERP's SQLite file again")
    doctor = ws.cli("doctor", str(path), "--format", "json")
    queries = [s for s in json.loads(doctor.stdout)["steps"] if s["name"].startswith("query:")]
    assert queries and all(s["status"] == "fail" and s["detail"].startswith(
        f"database_damaged: the SQLite file {ws.erp} is empty (0 bytes)") for s in queries), queries


@pytest.mark.parametrize("how", ["no database", "directory"])
def test_a_local_portal_store_that_is_no_database_or_a_directory_says_so(ws, how):
    path = ws.tenant_file("acme")
    ws.run(ws.tenant("acme"))                        # the store exists
    damage(ws.portal_path, how)
    done = ws.cli("run", str(path), "--date", "2026-06-01")
    assert done.returncode == 5, done.stderr
    what, hint = {
        "no database": ("the file is not an SQLite database, or is damaged (SQLite said: file is not a database)",
                        "if target.path names another file, correct it in the tenant file; if it is the store, "
                        "restore it from a backup, or move it aside: the next run then creates a new, empty store "
                        "and sends every record again"),
        "directory": ("it is a directory, not an SQLite file",
                      f"change target.path in the tenant file to name the store's file (e.g. "
                      f"{ws.portal_path / 'portal.sqlite'}), or move the directory out of the way"),
    }[how]
    assert done.stderr.splitlines() == [
        f"idwell-sync run: error: tenant 'acme': cannot open the local portal store {ws.portal_path}: {what}",
        f"  what to do: {hint}"]
    plan = ws.cli("plan", str(path), "--date", "2026-06-01", "--no-out")
    assert plan.returncode == 5 and plan.stderr.splitlines()[1:] == [f"  what to do: {hint}"], plan.stderr
