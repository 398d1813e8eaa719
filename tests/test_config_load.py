"""load_tenant: what the runtime receives (compiled, frozen, secrets unresolved), the merge
rules of overrides, where mappings are looked up, and ConfigError for broken files."""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from engine.expr.functions import Lookup, map_values
from engine.config import ConfigError, load_tenant
from engine.config.model import ENTITIES, ApiSource, IdwellTarget, SqlSource
from engine.config.secrets import Secret
from engine.errors import ExitCode
from engine.expr import Expr

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).parent / "config"


def test_demo_tenant_compiles():
    tenant = load_tenant(REPO / "tenants" / "demo.yaml")
    assert (tenant.id, tenant.name, tenant.mapping) == ("demo", "Demo Hausverwaltung GmbH", "domus-sql")
    assert list(tenant.entities) == list(ENTITIES)
    assert isinstance(tenant.source, SqlSource) and tenant.source.url == Secret("sqlite:///var/demo/erp.sqlite",
                                                                               tenant.path.parent)
    users = tenant.entities["users"]
    assert users.key == ("AdressNr",)
    assert all(isinstance(e, Expr) for e in users.fields.values())
    assert users.fields["last_name"].evaluate({"Nachname": "  Müller "}) == "Müller"
    assert tenant.entities["occupancies"].contract.columns == {"VertragNr"}
    assert tenant.window.reference_date == dt.date(2026, 6, 1)
    assert (tenant.schedule.window_start, tenant.schedule.window_end) == (dt.time(3), dt.time(6))
    assert set(tenant.code_tables) >= {"unit_types", "roles"}


def test_demo_override_filter_is_appended_after_the_mappings_filters():
    buildings = load_tenant(REPO / "tenants" / "demo.yaml").entities["buildings"]
    assert [(f.name, f.kind) for f in buildings.filters] == [("test_objects", "range"), ("other_mandant", "not_in")]
    other = buildings.filters[1]
    assert (other.field, other.values, other.reason) == ("Mandant", frozenset({"1", "2"}), "out_of_scope")


def test_merge_rules():
    tenant = load_tenant(CASES / "valid" / "overrides-merge.yaml")
    units = tenant.entities["units"]
    # enabled: false removed phantom_flag; the same name replaced phantom_type in place
    assert [f.name for f in units.filters] == ["phantom_type"]
    assert units.filters[0].values == frozenset({"90", "91", "98", "99"})
    # a new name is appended
    assert [f.name for f in tenant.entities["buildings"].filters] == ["test_objects", "other_mandant"]
    users = tenant.entities["users"]
    assert "mobile" not in users.fields                                   # null unmaps
    assert users.fields["email"].source == "coalesce(EmailPrivat, Email)"  # replaced
    assert users.fields["title"].source == "trim(Titel)"                   # added
    assert users.fields["last_name"].source == "trim(Nachname)"            # untouched
    assert "EmailPrivat" in users.query                                    # scalars are replaced
    # objects merge key by key: the mapping's codes stay, the tenant's are added; a code the
    # tenant writes in another case replaces the mapping's (map_values takes them for one)
    assert dict(tenant.code_tables["roles"].values) == {"E": "owner", "V": "tenant", "m": "owner"}
    roles = Lookup.of(tenant.code_tables["roles"].values)
    assert [map_values(code, roles) for code in ("E", "M", "m ", "V")] == ["owner", "owner", "owner", "tenant"]
    # the regex filter the mapping defines is compiled
    assert tenant.entities["users"].filters[0].pattern.search("  Leerstand ")


def test_sql_server_fields_and_target_compile_with_secrets_unresolved(monkeypatch):
    monkeypatch.delenv("ACME_IDWELL_TOKEN", raising=False)
    path = CASES / "valid" / "sql-server-full.yaml"
    tenant = load_tenant(path)
    server = tenant.source.server
    assert (server.host, server.port, server.database, server.encrypt) == ("sql.acme.example", 14330, "DOMUS_ACME", "yes")
    assert server.password == Secret("${file:secrets/acme-sql.txt}", path.parent)
    assert (tenant.source.query_timeout, tenant.source.batch_size, dict(tenant.source.params)) == (900, 2000, {"mandant": 3})
    assert isinstance(tenant.target, IdwellTarget) and str(tenant.target.token) == "${env:ACME_IDWELL_TOKEN}"
    assert tenant.email_dedup.order == ("role", "-start_date", "last_name", "external_id")
    assert (tenant.deletion.max_count, tenant.deletion.max_share) == (200, 0.05)
    assert tenant.schedule.window_start == dt.time(23, 30)


def test_api_tenant_compiles():
    tenant = load_tenant(CASES / "valid" / "api-oauth.yaml")
    assert isinstance(tenant.source, ApiSource)
    assert tenant.source.auth.client_secret == Secret("${env:CLOUD_CLIENT_SECRET}", tenant.path.parent)
    assert tenant.source.params == {"mandant": "007"}     # YAML 1.2: a leading zero keeps it text
    units = tenant.entities["units"]
    assert (units.endpoint, units.record_selector, units.paginator.type) == ("/v1/units", "data", "cursor")
    assert tenant.entities["buildings"].fields["city"].evaluate({"address": {"city": "Köln"}}) == "Köln"


def test_broken_tenant_raises_config_error_with_every_problem(monkeypatch):
    monkeypatch.chdir(CASES)
    with pytest.raises(ConfigError) as caught:
        load_tenant(Path("invalid/threshold-out-of-range.yaml"))
    error = caught.value
    assert error.exit_code == ExitCode.CONFIG
    assert [str(p) for p in error.problems] == [
        "invalid/threshold-out-of-range.yaml:12:3 $.deletion.max_count: must be at least 0, got -1",
        "invalid/threshold-out-of-range.yaml:13:3 $.deletion.max_share: must be a share between 0 and 1 (e.g. 0.1 for 10%), "
        "got 1.5; for 1.5% write 0.015"]
    assert str(error).splitlines()[0] == str(error.problems[0])


def test_config_error_never_shows_the_literal_secret():
    with pytest.raises(ConfigError) as caught:
        load_tenant(CASES / "invalid" / "literal-password.yaml")
    assert "Sommer2024" not in str(caught.value)
    assert "$.source.password" in str(caught.value)


def _tenant_tree(tmp_path: Path) -> Path:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "mappings").mkdir()
    shutil.copy(CASES / "mappings" / "sql-basic.yaml", tmp_path / "mappings")
    tenant = tmp_path / "tenants" / "acme.yaml"
    tenant.write_text("id: acme\nmapping: sql-basic\nsource: {type: sql, url: '${env:ACME_URL}'}\n")
    return tenant


def test_mapping_is_found_next_to_the_tenants_folder(tmp_path):
    assert load_tenant(_tenant_tree(tmp_path)).entities["users"].key == ("AdressNr",)


def test_mapping_dirs_come_first(tmp_path):
    tenant = _tenant_tree(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    text = (CASES / "mappings" / "sql-basic.yaml").read_text()
    (other / "sql-basic.yaml").write_text(text.replace("SELECT a.AdressNr,", "SELECT a.AdressNr, a.Extra,"))
    assert "a.Extra" in load_tenant(tenant, mapping_dirs=[other]).entities["users"].query
    assert "a.Extra" not in load_tenant(tenant).entities["users"].query


def test_missing_tenant_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tenant file not found"):
        load_tenant(tmp_path / "nope.yaml")


def test_loaded_config_is_frozen():
    tenant = load_tenant(REPO / "tenants" / "demo.yaml")
    with pytest.raises(AttributeError):
        tenant.id = "other"  # type: ignore[misc]


def test_a_tenant_id_that_differs_from_a_yml_file_name_names_that_file(tmp_path):
    from engine.config import validate_paths
    shutil.copytree(Path(__file__).parent / "config" / "mappings", tmp_path / "mappings")
    (tmp_path / "tenants").mkdir()
    text = (Path(__file__).parent / "config" / "invalid" / "id-not-file-name.yaml").read_text(encoding="utf-8")
    path = tmp_path / "tenants" / "kunde.yml"
    path.write_text(text, encoding="utf-8")
    found = [str(p) for p in validate_paths([path])]
    assert any("the tenant id 'acme' differs from its file name 'kunde.yml'" in p for p in found), found
