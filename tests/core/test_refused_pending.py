"""A write the portal refused, of a record an earlier run left unconfirmed (pending): the run noted
it ahead, as it notes every write, but the portal never held it. It must not stay among the values
the drift check takes for the engine's own, nor push out of the pending write a value the portal
may hold. On an SQLite state store and on PostgreSQL (127.0.0.1:5432, database test, a schema of
the test's own)."""
from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from conftest import RUN_DATE, Findings
from engine.errors import TargetError
from engine.pipeline import run_tenant
from engine.state import StateStore
from engine.state_writes import EARLIER_KEPT
from engine.targets.local import LocalStore
from killed_runs import kill_while_applying
from pgcluster import require

PG_URL = os.environ.get("IDWELL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request, ws):
    """The tenant's state_url: an SQLite file of the workspace, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield ws.state_url
        return
    schema = f"refused_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as c:
            c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require(False, f"PostgreSQL at {PG_URL} is unreachable: {type(exc).__name__}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def run(tenant):
    state = StateStore(tenant.state_url)
    try:
        return run_tenant(tenant, state, run_date=RUN_DATE)
    finally:
        state.close()


def bernd_landed_by_a_killed_run(ws, state_url) -> tuple[object, int]:
    """(the tenant, Bernd's adressnr): Bernd synced, then a killed run's update of his phone
    number landed (his write left pending); Carla has a login of her own in the portal."""
    tenant = ws.tenant(state_url=state_url)
    bernd = ws.add_person("Berger", "Bernd", "bernd@example.org", telefon="030 1111")
    ws.add_contract(ws.add_unit(ws.in_scope_building(), "Wohnung B"), "M", "2024-01-01", None, [bernd])
    assert run(tenant).exit_code == 0
    ws.erp_execute(("UPDATE adresse SET telefon = '030 2222' WHERE adressnr = ?", (bernd,)))
    kill_while_applying(ws.tenants["demo"], [f"users:{bernd}"])              # the portal wrote it
    store = LocalStore(ws.portal_path)
    store.add_manual_user(first_name="Carla", last_name="Cramer", email="carla@example.org")
    store.close()
    return tenant, bernd


def refuse_bernd(ws, tenant, bernd, last_name: str) -> None:
    """A run whose write of Bernd the portal refuses: his new address is Carla's login."""
    ws.erp_execute(("UPDATE adresse SET email = 'carla@example.org', nachname = ? WHERE adressnr = ?",
                    (last_name, bernd)))
    refused = run(tenant)
    assert refused.exit_code == 9 and Findings(refused.findings).keys("rejected") == {str(bernd)}


def test_a_portal_edit_to_a_value_the_portal_refused_is_drift(ws, state_url):
    """The portal refused Bernd's new name and address. A person then gives him that name in the
    portal; the ERP keeps his old one. The engine never wrote that name: the next run reports it
    as an edit made in the portal, and finds the phone number the killed run wrote its own."""
    tenant, bernd = bernd_landed_by_a_killed_run(ws, state_url)
    refuse_bernd(ws, tenant, bernd, "Bergmann")
    ws.edit_portal(("users", str(bernd), {"last_name": "Bergmann"}))
    ws.erp_execute(("UPDATE adresse SET email = 'bernd@example.org', nachname = 'Berger', telefon = '030 3333' "
                    "WHERE adressnr = ?", (bernd,)))
    night = run(tenant)
    assert night.exit_code == 0
    assert night.summary["drift"] == {"users": {"last_name": 1}}, [f.message for f in night.findings
                                                                   if f.code == "drift"]
    assert Findings(night.findings).keys("drift") == {str(bernd)}
    user = ws.portal()["users"][str(bernd)]
    assert (user["last_name"], user["email"]) == ("Berger", "bernd@example.org")


def test_refused_writes_night_after_night_keep_the_value_a_killed_run_wrote_the_engines(ws, state_url):
    """The portal refuses Bernd's write more nights than a pending write keeps values of him
    (EARLIER_KEPT), the ERP renaming him each night and giving him a new phone number. The portal
    still holds the killed run's write: when the ERP gives him his own address again, the run finds
    no edit made in the portal."""
    tenant, bernd = bernd_landed_by_a_killed_run(ws, state_url)
    ws.erp_execute(("UPDATE adresse SET telefon = '030 4444' WHERE adressnr = ?", (bernd,)))
    for night in range(EARLIER_KEPT + 1):
        refuse_bernd(ws, tenant, bernd, f"Berger {night}")
    ws.erp_execute(("UPDATE adresse SET email = 'bernd@example.org', nachname = 'Berger', telefon = '030 3333' "
                    "WHERE adressnr = ?", (bernd,)))
    night = run(tenant)
    assert night.exit_code == 0
    assert night.summary["drift"] == {}, [f.message for f in night.findings if f.code == "drift"]
    assert ws.portal()["users"][str(bernd)]["phone"] == "+49303333"


class StopsAfterApplying(LocalStore):
    """The local portal store, but the run stops once it applied its changes (the connection
    drops as the answers come): `sends` says whether the changes reach the store first."""
    sends = True

    def apply(self, changes, progress=None):
        error = TargetError("the portal stopped answering")
        error.partial_outcomes = super().apply(changes, progress) if self.sends else []
        raise error


class StopsBeforeSending(StopsAfterApplying):
    sends = False


@pytest.mark.parametrize("target_class", [StopsAfterApplying, StopsBeforeSending], ids=["refused", "never-sent"])
def test_a_value_a_stopped_run_did_not_write_is_not_the_engines(ws, state_url, target_class):
    """A run that stops part-way gave Bernd a new name and address: the portal refused them (they
    were answered before the stop), or the run stopped before it sent them. A person then gives
    him that name in the portal: the next run reports it as an edit made in the portal."""
    tenant, bernd = bernd_landed_by_a_killed_run(ws, state_url)
    ws.erp_execute(("UPDATE adresse SET email = 'carla@example.org', nachname = 'Bergmann' WHERE adressnr = ?",
                    (bernd,)))
    target, state = target_class(ws.portal_path, tenant=tenant.id), StateStore(tenant.state_url)
    try:
        with pytest.raises(TargetError):
            run_tenant(tenant, state, run_date=RUN_DATE, target=target)
    finally:
        target.close()
        state.close()
    ws.edit_portal(("users", str(bernd), {"last_name": "Bergmann"}))
    ws.erp_execute(("UPDATE adresse SET email = 'bernd@example.org', nachname = 'Berger', telefon = '030 3333' "
                    "WHERE adressnr = ?", (bernd,)))
    night = run(tenant)
    assert night.exit_code == 0
    assert night.summary["drift"] == {"users": {"last_name": 1}}, [f.message for f in night.findings
                                                                   if f.code == "drift"]
    assert ws.portal()["users"][str(bernd)]["last_name"] == "Berger"
