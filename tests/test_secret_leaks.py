"""No secret value in anything idwell-sync says: standard output and error at any verbosity, the
--json summary, the findings CSV, the run history, doctor's checklist.

Each test gives a secret a hostile value and runs the command as a user would (a separate process,
real HTTP servers on 127.0.0.1, a real PostgreSQL cluster), then looks for the value in every form
it can take in text: as it is, percent-encoded both ways, brace-escaped as in an ODBC connection
string, escaped as in JSON and in a Python repr of text or bytes.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml

from local_http import ServedInThread
from pgcluster import DOMUS_MINI, HOST, pg_cluster, require, sqlite_domus  # noqa: F401  (pg_cluster is a fixture)

sys.path.insert(0, str(Path(__file__).parent / "api"))
from cloud_connect import CloudConnect  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "Pw@:/;{x}}%41+\"' ü-7f3a"
"""A password with what changes a URL's, a query's, an ODBC string's or a repr's meaning."""


def forms(value: str) -> set[str]:
    """The ways `value` can be written in text (each one is a leak)."""
    return {value, quote(value, safe=""), quote(value), quote_plus(value), value.replace("}", "}}"),
            json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1],
            repr(value.encode())[2:-1]}


def assert_hidden(value: str, **outputs: str) -> None:
    leaks = {where: sorted(f for f in forms(value) if f in text) for where, text in outputs.items()}
    assert not any(leaks.values()), f"the secret shows in {leaks}"


def workspace(tmp_path: Path) -> Path:
    (tmp_path / "tenants").mkdir()
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    sqlite_domus(tmp_path / "erp.sqlite")
    return tmp_path


def write_tenant(root: Path, tenant_id: str, **changes) -> Path:
    doc = yaml.safe_load((REPO / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc.update(id=tenant_id, source={"type": "sql", "url": f"sqlite:///{root / 'erp.sqlite'}"},
               target={"type": "local", "path": str(root / "portal.sqlite")},
               state_url=f"sqlite:///{root / 'state.sqlite'}")
    doc.update(changes)
    doc = {k: v for k, v in doc.items() if v is not None}
    if doc["source"]["type"] == "api":
        doc["mapping"] = "domus-api"
        doc["overrides"]["entities"]["buildings"]["filters"][0]["field"] = "client"
    path = root / "tenants" / f"{tenant_id}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, capture_output=True, text=True,
                          timeout=180, env={"PATH": "/usr/bin:/bin", "HOME": str(root), **env})


# -- credentials of an API source --------------------------------------------------------------
@pytest.mark.parametrize("content", ["cc-K3y-4711\n# rotated 2026-11\n", "\ufeffcc-K3y-4711\n"],
                         ids=["second-line", "byte-order-mark"])
def test_an_api_key_that_cannot_be_a_header_is_refused_naming_its_reference_only(tmp_path, content):
    """A key file with a second line, or saved with a byte order mark, cannot be sent in a
    header. HTTP libraries refuse such a value and quote it in their message; the run must stop
    before that (exit 3, naming the reference), and neither the run, the history nor doctor may
    show any of the file's text."""
    root = workspace(tmp_path)
    (root / "key.txt").write_text(content, encoding="utf-8")
    with CloudConnect(str(root / "erp.sqlite"), "cc-K3y-4711") as cc:
        tenant = write_tenant(root, "kunde", source={"type": "api", "base_url": cc.url, "auth": {
            "type": "api_key", "header": "X-API-Key", "key": "${file:../key.txt}"}})
        run = cli(root, "run", str(tenant), "--json", "-vv")
        doctor = cli(root, "doctor", str(tenant))
    history = cli(root, "history", str(tenant), "--json")
    assert run.returncode == 3, run.stderr
    assert "${file:../key.txt}" in run.stderr and "HTTP header" in run.stderr
    assert json.loads(history.stdout)[0]["status"] == "failed"
    assert doctor.returncode == 1 and "HTTP header" in doctor.stdout
    assert doctor.stdout.count("not run: authentication failed") == 4        # one endpoint per entity
    for line in content.splitlines():
        assert_hidden(line.lstrip("\ufeff"), run=run.stdout + run.stderr, history=history.stdout,
                      doctor=doctor.stdout + doctor.stderr)


# -- the state store's URL ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def state_cluster(pg_cluster):
    pg_cluster.create_user("sync_state", HOSTILE, database="state")
    return pg_cluster


@pytest.mark.parametrize("given", ["query-reference", "query-environment", "userinfo-reference"])
def test_the_state_stores_password_is_never_shown(tmp_path, state_cluster, given):
    """psycopg takes the password as a query parameter too (`?password=`), where SQLAlchemy's
    rendering of the URL does not hide it: the store's name in `history`, in the -v log line
    and in the error of a store that cannot be opened must not show it in any encoding."""
    root = workspace(tmp_path)
    base = f"postgresql+psycopg://sync_state@{HOST}:{state_cluster.port}"

    def url(database: str) -> str:
        if given == "query-reference":
            return f"{base}/{database}?password=${{env:STATE_PW}}"
        if given == "query-environment":
            return f"{base}/{database}?password={quote_plus(HOSTILE)}"
        return f"postgresql+psycopg://sync_state:${{env:STATE_PW}}@{HOST}:{state_cluster.port}/{database}"
    outputs = {}
    for database in ("state", "no_such_store"):
        if given == "query-environment":
            tenant, env = write_tenant(root, "kunde", state_url=None), {"IDWELL_STATE_URL": url(database)}
        else:
            tenant, env = write_tenant(root, "kunde", state_url=url(database)), {"STATE_PW": HOSTILE}
        history, plan = cli(root, "history", str(tenant), **env), cli(root, "plan", str(tenant), "-v", "--no-out", **env)
        if database == "state":       # the password arrived intact: the store opened
            assert history.returncode == 0 and "no runs in the run history" in history.stdout, history.stderr
            assert plan.returncode == 0 and f"{HOST}:{state_cluster.port}/state" in plan.stderr, plan.stderr
        else:
            assert history.returncode == plan.returncode == 10, history.stderr
            assert 'database "no_such_store" does not exist' in history.stderr
        outputs |= {f"history {database}": history.stdout + history.stderr, f"plan {database}": plan.stdout + plan.stderr}
    assert_hidden(HOSTILE, **outputs)


# -- an ERP database's error about a value -------------------------------------------------------
@pytest.fixture(scope="module")
def erp_cluster(pg_cluster):
    """DOMUS in a database of its own, read by a login whose password is HOSTILE. The ERP keeps its
    settings as text in a table of its own, the password of that login among them (an export
    setting, as ERPs keep the connection of their own exports)."""
    pg_cluster.create_user("erp_reader", HOSTILE, database="erp")
    setting = HOSTILE.replace("'", "''")
    pg_cluster.execute(*DOMUS_MINI[:5], *DOMUS_MINI[6:],
                       "CREATE TABLE Einstellung (Schluessel VARCHAR(40), Wert VARCHAR(200))",
                       f"INSERT INTO Einstellung VALUES ('Mandant', '1'), ('Export-Passwort', '{setting}')",
                       "CREATE VIEW Mandanten AS SELECT CAST(Wert AS INTEGER) AS Mandant FROM Einstellung",
                       "GRANT SELECT ON ALL TABLES IN SCHEMA public TO erp_reader", database="erp")
    return pg_cluster


def test_a_query_error_that_quotes_a_secret_does_not_show_it_in_discover(tmp_path, erp_cluster):
    """A query of the tenant's that casts the ERP's settings to numbers meets the password stored
    there: PostgreSQL's error quotes the value (invalid input syntax for type integer: "..."). The
    value is the source's password, resolved from ${env:ERP_PW}: discover shows the error under the
    query (text and --format json) and for the view it samples, never the value."""
    root = workspace(tmp_path)
    url = f"postgresql+psycopg://erp_reader:${{env:ERP_PW}}@{HOST}:{erp_cluster.port}/erp"
    query = ("SELECT o.ObjektNr, o.Mandant, o.Bezeichnung, o.Strasse, o.HausNr, o.PLZ, o.Ort, o.Land FROM Objekt o "
             "JOIN Einstellung s ON CAST(s.Wert AS INTEGER) = o.Mandant")
    tenant = write_tenant(root, "kunde", source={"type": "sql", "url": url},
                          overrides={"entities": {"buildings": {"query": query}}})
    text = cli(root, "discover", str(tenant), ERP_PW=HOSTILE)
    as_json = cli(root, "discover", str(tenant), "--format", "json", ERP_PW=HOSTILE)
    view = cli(root, "discover", str(tenant), "mandanten", ERP_PW=HOSTILE)
    assert text.returncode == 0, text.stderr
    assert "  query buildings: not run: " in text.stdout and "invalid input syntax for type integer" in text.stdout
    assert "  query units: 3 rows read" in text.stdout           # the password arrived intact: the login works
    buildings = next(q for q in json.loads(as_json.stdout)["queries"] if q["entity"] == "buildings")
    assert "invalid input syntax for type integer: \"***\"" in buildings["error"], buildings
    assert view.returncode == 4 and "invalid input syntax for type integer" in view.stderr, view.stderr
    assert_hidden(HOSTILE, text=text.stdout + text.stderr, json=as_json.stdout + as_json.stderr,
                  view=view.stdout + view.stderr)


# -- a gateway in front of the import API that echoes the request --------------------------------
TOKEN = "eyJ0.Hx+/=%2F;{x}}@:\"'-7f3a9c"


class EchoingGateway(ServedInThread):
    """An HTTP server on 127.0.0.1 in front of where the import API should be: it answers every
    request with the Authorization header it received, in a response header and in the error's
    message (as debugging proxies and misconfigured gateways do). `refuse_writes`: listings are
    empty and every batch is refused (400); otherwise every request gets a 404."""

    def __init__(self, refuse_writes: bool):
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if refuse_writes:
                    return gateway.answer(self, 200, {"items": [], "next_cursor": None})
                gateway.answer(self, 404, gateway.echo(self))

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.answer(self, 400, gateway.echo(self))

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.base_url = f"http://{HOST}:{self.httpd.server_address[1]}/import/v1"

    @staticmethod
    def echo(h: BaseHTTPRequestHandler) -> dict:
        return {"error": {"code": "invalid", "message": f"the gateway refused {h.command} {h.path} "
                                                        f"(Authorization: {h.headers.get('Authorization')})"}}

    @staticmethod
    def answer(h: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("X-Echo-Authorization", h.headers.get("Authorization", ""))
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def test_a_gateway_that_echoes_the_token_does_not_bring_it_into_the_findings_or_the_log(tmp_path):
    """Refused records: their messages go into the findings CSV and the summary's examples; -vv
    logs the answers' headers (httpcore)."""
    root = workspace(tmp_path)
    with EchoingGateway(refuse_writes=True) as gateway:
        tenant = write_tenant(root, "kunde", target={"type": "idwell", "base_url": gateway.base_url,
                                                     "token": "${env:KUNDE_TOKEN}", "max_retries": 0})
        run = cli(root, "run", str(tenant), "-vv", "--findings", "findings.csv", KUNDE_TOKEN=TOKEN)
    assert run.returncode == 9, run.stderr
    with open(root / "findings.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    refused = [r for r in rows if r["code"] == "rejected"]
    assert refused and all("the gateway refused POST" in r["message"] for r in refused)
    history = cli(root, "history", str(tenant), "--json")
    assert_hidden(TOKEN, stdout=run.stdout, stderr=run.stderr, findings="\n".join(r["message"] for r in rows),
                  history=history.stdout)


def test_a_gateway_that_echoes_the_token_does_not_bring_it_into_the_error(tmp_path):
    """An unexpected answer's message is quoted in the error: on standard error, in the --json
    summary and in the run history."""
    root = workspace(tmp_path)
    with EchoingGateway(refuse_writes=False) as gateway:
        tenant = write_tenant(root, "kunde", target={"type": "idwell", "base_url": gateway.base_url,
                                                     "token": "${env:KUNDE_TOKEN}"})
        run = cli(root, "run", str(tenant), "--json", KUNDE_TOKEN=TOKEN)
    assert run.returncode == 5, run.stderr
    assert "unexpected answer from the import API" in run.stderr and "the gateway refused GET" in run.stderr
    history = cli(root, "history", str(tenant), "--json")
    assert "the gateway refused GET" in json.loads(history.stdout)[0]["message"]
    assert_hidden(TOKEN, stdout=run.stdout, stderr=run.stderr, history=history.stdout)


# -- servers that ask to wait too long, an identity provider with an odd token lifetime ---------
ACCESS_TOKEN = "at-Hx+/=%2F;{x}}@:-0815"


class WaitingServer(ServedInThread):
    """Issues ACCESS_TOKEN with an expires_in of "soon" (POST), and answers every GET with
    `status` and a Retry-After of an hour, echoing the Authorization header it received (in a
    response header and in the body), as a gateway in maintenance mode may."""

    def __init__(self, status: int):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.answer(200, {"access_token": ACCESS_TOKEN, "expires_in": "soon"}, {})

            def do_GET(self):
                said = self.headers.get("Authorization", "")
                self.answer(status, {"error": {"code": "unavailable", "message": f"later ({said})"}},
                            {"Retry-After": "3600", "X-Echo-Authorization": said})

            def answer(self, code: int, body: dict, headers: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.httpd.server_address[1]}"


def test_an_erp_api_asking_to_wait_too_long_shows_neither_the_client_secret_nor_the_token(tmp_path):
    """The expires_in warning, the error that names the server's wait, -vv's log of the answers."""
    root = workspace(tmp_path)
    with WaitingServer(503) as api:
        tenant = write_tenant(root, "kunde", source={"type": "api", "base_url": f"{api.url}/api/v1", "auth": {
            "type": "oauth2_client_credentials", "token_url": f"{api.url}/token", "client_id": "sync",
            "client_secret": "${env:KUNDE_CLIENT_SECRET}"}})
        run = cli(root, "run", str(tenant), "--json", "-vv", KUNDE_CLIENT_SECRET=HOSTILE)
    history = cli(root, "history", str(tenant), "--json")
    assert run.returncode == 4, run.stderr
    assert 'gave its token an expires_in of "soon"' in run.stderr
    assert "answered 503 and asked to wait 3600 s (Retry-After: 3600)" in run.stderr
    for secret in (HOSTILE, ACCESS_TOKEN):
        assert_hidden(secret, stdout=run.stdout, stderr=run.stderr, history=history.stdout)


def test_a_portal_asking_to_wait_too_long_does_not_show_the_token(tmp_path):
    root = workspace(tmp_path)
    with WaitingServer(429) as portal:
        tenant = write_tenant(root, "kunde", target={"type": "idwell", "base_url": f"{portal.url}/import/v1",
                                                     "token": "${env:KUNDE_TOKEN}"})
        run = cli(root, "run", str(tenant), "--json", "-vv", KUNDE_TOKEN=TOKEN)
    history = cli(root, "history", str(tenant), "--json")
    assert run.returncode == 5, run.stderr
    assert "with 429 rate_limited and asked to wait 3600 s (Retry-After: 3600)" in run.stderr
    assert_hidden(TOKEN, stdout=run.stdout, stderr=run.stderr, history=history.stdout)

# -- the masking itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [HOSTILE, "p;a}r{t =1", "Grüße aus Köln 2026", TOKEN])
def test_a_resolved_secret_is_masked_in_every_form(monkeypatch, value):
    from engine.config.secrets import Secret
    from engine.redact import redact
    monkeypatch.setenv("LEAK_TEST_SECRET", value)
    Secret("${env:LEAK_TEST_SECRET}").resolve()
    for form in forms(value):
        said = redact(f"the driver said: {form}.")
        assert form not in said and said.startswith("the driver said: ***"), (form, said)


def test_a_message_quoted_in_a_message_is_masked(monkeypatch):
    """httpcore's debug log quotes h11's error, which quotes the header value: escaped twice."""
    from engine.config.secrets import Secret
    from engine.redact import redact
    monkeypatch.setenv("LEAK_TEST_KEY", "cc-K3y-4711\n# rotated 2026-11")
    value = Secret("${env:LEAK_TEST_KEY}").resolve()
    inner = ValueError(f"Illegal header value {value.encode()!r}")
    said = redact(f"send_request_headers.failed exception={ValueError(inner)!r}")
    assert "cc-K3y-4711" not in said and "rotated" not in said and "***" in said


@pytest.mark.parametrize("text, shown", [
    ("postgresql+psycopg://sync:Lit3ral%40pw@db/state", "postgresql+psycopg://sync:***@db/state"),
    ("failed: postgresql://sync:Lit@r@l:pw@db:5432/state?x=1 (refused)", "failed: postgresql://sync:***@db:5432/state?x=1 (refused)"),
    ("mail sync@db.example, http://db.example/a@b", "mail sync@db.example, http://db.example/a@b"),
    ("url mssql+pyodbc://sync:${env:ACME_PW}@host/db as written", "url mssql+pyodbc://sync:${env:ACME_PW}@host/db as written"),
    ("postgresql+psycopg://sync@db/state?sslmode=require&password=Lit3ral%40pw", "postgresql+psycopg://sync@db/state?sslmode=require&password=***"),
    ("Driver=FreeTDS;UID=a;PWD={p;a}}r{t =1};Database=x", "Driver=FreeTDS;UID=a;PWD=***;Database=x"),
    ("UID=a;Password=ab'c&d;Encrypt=yes", "UID=a;Password=***;Encrypt=yes"),
])
def test_a_password_not_resolved_here_is_masked_by_its_place(text, shown):
    """A store's URL in $IDWELL_STATE_URL or --state is never resolved from a reference: a URL's
    password and password-like parameters are masked wherever they stand."""
    from engine.redact import redact
    assert redact(text) == shown


def test_the_traceback_of_a_bug_does_not_show_a_secret(tmp_path, monkeypatch, capsys):
    """An internal error prints its traceback for the report; an exception a bug raises may
    quote anything, a resolved token too."""
    import engine.pipeline
    from engine.cli import main
    root = workspace(tmp_path)
    tenant = write_tenant(root, "kunde", target={"type": "idwell", "base_url": "http://127.0.0.1:9/import/v1",
                                                 "token": "${env:KUNDE_TOKEN}"})
    monkeypatch.setenv("KUNDE_TOKEN", TOKEN)

    def a_bug(tenant, *args, **kwargs):
        raise RuntimeError(f"unexpected header {{'Authorization': 'Bearer {tenant.target.token.resolve()}'}}")
    monkeypatch.setattr(engine.pipeline, "prepare", a_bug)
    assert main(["plan", str(tenant), "--no-out"]) == 70
    err = capsys.readouterr().err
    assert "RuntimeError: unexpected header" in err and "Bearer ***" in err
    assert_hidden(TOKEN, stderr=err)


def test_a_secret_at_the_end_of_a_long_driver_message_is_masked_before_the_message_is_cut(monkeypatch):
    """open_store keeps the first 200 characters of the driver's message: cut first, the secret's
    first half would no longer be known as the secret."""
    import sqlalchemy as sa

    from engine.commands._common import open_store
    from engine.config.secrets import Secret
    from engine.errors import StateError
    monkeypatch.setenv("CUT_TEST_PW", "Geheimnis-4711-lang")
    value = Secret("${env:CUT_TEST_PW}").resolve()

    def refuse(self, url, **options):
        raise sa.exc.ArgumentError("x" * 185 + f" password {value} was refused")   # cut at 200: in it
    monkeypatch.setattr("engine.state.StateStore.__init__", refuse)
    with pytest.raises(StateError) as caught:
        open_store("sqlite:////nonexistent/state.sqlite", "tenant 'cut'")
    assert "Gehei" not in str(caught.value) and "***" in str(caught.value)
