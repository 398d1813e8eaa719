"""A private, throwaway PostgreSQL cluster with password authentication, for tests.

The shared server on 127.0.0.1:5432 trusts every password, so it cannot show that a password
arrives intact. This starts its own cluster: `initdb -A scram-sha-256` from `pg_config --bindir`,
run as the postgres user when the tests run as root (the server refuses to run as root), in a
temporary directory, on a free port, listening on 127.0.0.1 only. `stop()` removes everything.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


class ClusterUnavailable(Exception):
    """The machine cannot run a private cluster (no PostgreSQL server binaries, no postgres user)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        raise ClusterUnavailable("pg_config is not installed (Debian: postgresql)")
    bindir = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    if not (bindir / "initdb").exists():
        raise ClusterUnavailable(f"no initdb in {bindir} (Debian: postgresql)")
    return bindir


@dataclass
class PgCluster:
    port: int = 0
    superuser: str = "postgres"
    superpassword: str = field(default_factory=lambda: secrets.token_hex(12))
    directory: Path | None = None
    _as_postgres: bool = False

    def start(self) -> "PgCluster":
        bindir = self._bindir = _bindir()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            try:
                import pwd
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise ClusterUnavailable("running as root, and there is no postgres user to run the server") from None
        self.directory = Path(tempfile.mkdtemp(prefix="idwell-pg-"))
        if self._as_postgres:
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        pwfile = self.directory / "pw"
        pwfile.write_text(self.superpassword + "\n")
        if self._as_postgres:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        data = self.directory / "data"
        self._run([str(bindir / "initdb"), "-D", str(data), "-A", "scram-sha-256", "-U", self.superuser,
                   f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync"])
        pwfile.unlink()
        self.port = self.port or free_port()
        options = f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories='' -c fsync=off"
        self._run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "log"), "-w", "-t", "60",
                   "-o", options, "start"])
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            self._run([str(self._bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def execute(self, *statements: str, database: str = "postgres") -> list:
        """Run statements as the superuser (psycopg over TCP); returns the last one's rows."""
        import psycopg
        rows: list = []
        with psycopg.connect(host=HOST, port=self.port, user=self.superuser, password=self.superpassword,
                             dbname=database, autocommit=True) as conn:
            for statement in statements:
                cur = conn.execute(statement)
                rows = cur.fetchall() if cur.description else []
        return rows

    def create_user(self, name: str, password: str, *, database: str | None = None) -> None:
        from psycopg import sql
        import psycopg
        with psycopg.connect(host=HOST, port=self.port, user=self.superuser, password=self.superpassword,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
            if database:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(name)))

    def _run(self, argv: list[str], check: bool = True) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.directory)
        if check and done.returncode != 0:
            log = self.directory / "log" if self.directory else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}\n{tail}")


def require(condition: object, reason: str) -> None:
    """Skip with a visible reason when a real component is missing; in CI (CI=true) fail instead."""
    import pytest
    if condition:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _cluster_fixture():
    import pytest

    @pytest.fixture(scope="module")
    def pg_cluster():
        """A started private cluster (skipped with a reason outside CI when the machine cannot run one)."""
        cluster = PgCluster()
        try:
            cluster.start()
        except ClusterUnavailable as exc:
            cluster.stop()
            require(False, f"cannot start a private PostgreSQL cluster: {exc}")
        except BaseException:
            cluster.stop()
            raise
        try:
            yield cluster
        finally:
            cluster.stop()
    return pg_cluster


pg_cluster = _cluster_fixture()


# A small DOMUS database (the tables and columns mappings/domus-sql.yaml reads), with umlauts.
# Portable SQL: the same statements build it in SQLite and PostgreSQL.
DOMUS_MINI = [
    "CREATE TABLE Objekt (ObjektNr INTEGER PRIMARY KEY, Mandant INTEGER, Bezeichnung VARCHAR(100), "
    "Strasse VARCHAR(100), HausNr VARCHAR(10), PLZ VARCHAR(10), Ort VARCHAR(60), Land VARCHAR(3))",
    "CREATE TABLE Einheit (EinheitID INTEGER PRIMARY KEY, ObjektNr INTEGER, EinheitNr VARCHAR(20), "
    "Bezeichnung VARCHAR(100), TypCode INTEGER, Fiktiv INTEGER, Etage VARCHAR(10), Flaeche NUMERIC(10,2))",
    "CREATE TABLE Adresse (AdressNr INTEGER PRIMARY KEY, Anrede VARCHAR(20), Titel VARCHAR(20), Vorname VARCHAR(70), "
    "Nachname VARCHAR(70), Email VARCHAR(200), Telefon VARCHAR(40), Mobil VARCHAR(40), Sprache VARCHAR(5))",
    "CREATE TABLE Vertrag (VertragNr INTEGER PRIMARY KEY, EinheitID INTEGER, Art VARCHAR(1), Beginn DATE, Ende DATE)",
    "CREATE TABLE VertragPartner (VertragNr INTEGER, AdressNr INTEGER)",
    "CREATE VIEW MieterListe AS SELECT a.AdressNr, a.Nachname, v.EinheitID FROM Adresse a "
    "JOIN VertragPartner p ON p.AdressNr = a.AdressNr JOIN Vertrag v ON v.VertragNr = p.VertragNr",
    "INSERT INTO Objekt VALUES (1, 1, 'Wohnanlage Großbeerenstraße', 'Großbeerenstraße', '12a', '10963', 'Berlin', 'DE'), "
    "(2, 1, 'Hofgebäude Müllerstraße', 'Müllerstraße', '3', '13353', 'Berlin', NULL)",
    "INSERT INTO Einheit VALUES (10, 1, 'WE 01', 'Wohnung EG links', 1, 0, 'EG', 71.5), "
    "(11, 1, 'WE 02', 'Wohnung 1. OG', 1, 0, '1', 64.0), (20, 2, 'GE 01', 'Laden Ärztehaus', 2, 0, 'EG', 120.0)",
    "INSERT INTO Adresse VALUES (100, 'Herr', NULL, 'Jürgen', 'Müller-Lüdenscheidt', 'j.mueller@example.de', "
    "'030 1234567', NULL, 'de'), (101, 'Frau', 'Dr.', 'Änne', 'Öztürk', 'aenne@example.de', NULL, '0171 9876543', 'de'), "
    "(102, 'Firma', NULL, NULL, 'Straßenbau Weiß GmbH', 'info@weiss.example', NULL, NULL, 'de')",
    "INSERT INTO Vertrag VALUES (500, 10, 'M', '2020-01-01', NULL), (501, 11, 'E', '2018-05-01', NULL), "
    "(502, 20, 'M', '2021-03-01', '2030-12-31')",
    "INSERT INTO VertragPartner VALUES (500, 100), (501, 101), (502, 102)",
]


def sqlite_domus(path) -> None:
    """Write DOMUS_MINI into an SQLite file."""
    import sqlite3
    with sqlite3.connect(path) as con:
        for statement in DOMUS_MINI:
            con.execute(statement)
    con.close()
