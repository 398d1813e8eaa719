"""`idwell-sync discover TENANT TABLE` run as a user runs it, against the demo ERP: a TABLE the
database does not have is a usage error (exit 2) naming the tables and views it has, as a name
an API source's mapping does not have is (tests/api/test_api_discover.py)."""
from __future__ import annotations


def test_a_table_the_database_does_not_have_is_a_usage_error_naming_those_it_has(ws):
    path = ws.tenant_file()
    done = ws.cli("discover", str(path), "NOSUCH")
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and "Traceback" not in done.stderr
    first, hint = done.stderr.strip().splitlines()
    assert first.startswith("idwell-sync discover: error: tenant 'demo': no table or view named 'NOSUCH'; "
                            "the database has "), first
    tables = [r["name"] for r in ws.erp_rows("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
              if not r["name"].startswith("sqlite_")]        # SQLite's own tables are not listed
    assert all(name in first for name in tables), first
    assert hint.startswith("  what to do: give a table or view")

    done = ws.cli("discover", str(path), "adrese")
    assert done.returncode == 2 and "Did you mean 'adresse'?" in done.stderr, done.stderr
