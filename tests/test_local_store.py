"""The local portal store answers like the import API, and the local target applies plans to it."""
from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.contract import fields
from engine.errors import TargetError
from engine.targets._store_portal import Op, PortalStore
from engine.targets.base import Change
from engine.targets.local import LocalStore


def building(i, **kw):
    return {"external_id": f"B{i}", "name": f"Haus {i}", **kw}


def unit(i, b, **kw):
    return {"external_id": f"U{i}", "building_id": f"B{b}", "number": f"{i:03}", **kw}


def user(i, email=None, **kw):
    return {"external_id": f"P{i}", "last_name": f"Person {i}", "email": email, **kw}


def occ(i, p, u, **kw):
    return {"external_id": f"C{i}", "user_id": f"P{p}", "unit_id": f"U{u}", "role": "tenant", **kw}


def put(entity, record, action="create"):
    return Change(entity, action, record["external_id"], record)


def delete(entity, external_id):
    return Change(entity, "delete", external_id)


@pytest.fixture
def store(tmp_path):
    s = PortalStore(tmp_path / "portal.sqlite")
    yield s
    s.close()


@pytest.fixture
def local(tmp_path):
    s = LocalStore(tmp_path / "portal.sqlite")
    yield s
    s.close()


def test_put_creates_then_replaces_fully_with_the_specs_defaults(store):
    assert store.put("buildings", "B1", building(1, city="Berlin", country="AT")).status == 201
    assert store.get("buildings", "B1")["country"] == "AT"
    assert store.put("buildings", "B1", building(1)).status == 200
    got = store.get("buildings", "B1")
    assert list(got) == list(fields("buildings"))
    assert got["city"] is None and got["country"] == "DE"      # replaced, not patched; spec default


def test_invalid_record_is_refused_with_its_field(store):
    r = store.put("users", "P1", user(1, last_name="x" * 71))
    assert (r.status, r.code, r.field) == (400, "invalid", "last_name")
    assert "users 'P1'" in r.message and "70" in r.message
    r = store.put("users", "P1", user(2))
    assert (r.status, r.field) == (400, "external_id")
    assert store.get("users", "P1") is None and store.get("users", "P2") is None


@pytest.mark.parametrize("variant", ["max@web.de", "Max@Web.DE", "  max@web.de ", "MAX@WEB.DE\t"])
def test_email_is_unique_case_insensitively_after_trimming(store, variant):
    assert store.put("users", "P1", user(1, "max@web.de")).ok
    r = store.put("users", "P2", user(2, variant))
    assert (r.status, r.code, r.field, r.conflicting_external_id) == (409, "email_taken", "email", "P1")
    assert r.error == {"code": "email_taken", "message": r.message, "field": "email", "conflicting_external_id": "P1"}
    assert store.put("users", "P1", user(1, variant)).status == 200     # its own address in another spelling


def test_a_manual_user_holds_its_email_but_stays_invisible(store):
    store.add_manual_user(last_name="Hausmeister", email="Hauswart@Example.de")
    r = store.put("users", "P1", user(1, "hauswart@example.de "))
    assert (r.status, r.code, r.conflicting_external_id) == (409, "email_taken", None)
    assert "by hand" in r.message
    assert store.put("users", "P2", user(2, "other@example.de")).ok
    assert [u["external_id"] for u in store.iter_records("users")] == ["P2"]
    assert store.list_page("users")["items"][0]["external_id"] == "P2"
    with pytest.raises(ValueError, match="already the login"):
        store.add_manual_user(last_name="Zweiter", email="OTHER@example.de")


def test_an_email_freed_by_archive_or_change_can_be_taken(store):
    store.put("users", "P1", user(1, "a@web.de"))
    store.put("users", "P2", user(2, "b@web.de"))
    results = store.write([Op("users", "put", "P3", user(3, "a@web.de")),      # refused: P1 holds it
                           Op("users", "delete", "P1"),
                           Op("users", "put", "P3", user(3, "a@web.de")),      # now free
                           Op("users", "put", "P2", user(2, "c@web.de")),
                           Op("users", "put", "P4", user(4, "B@web.de"))])     # freed by P2 just before
    assert [r.status for r in results] == [409, 204, 201, 200, 201]
    assert {u["external_id"]: u["email"] for u in store.iter_records("users")} == \
        {"P2": "c@web.de", "P3": "a@web.de", "P4": "B@web.de"}


def test_references_must_exist_and_be_active(store):
    r = store.put("units", "U1", unit(1, 9))
    assert (r.status, r.code, r.field) == (409, "unknown_reference", "building_id")
    assert "'B9'" in r.message
    store.put("buildings", "B1", building(1))
    assert store.put("units", "U1", unit(1, 1)).status == 201
    store.put("users", "P1", user(1))
    r = store.put("occupancies", "C1", occ(1, 2, 1))
    assert (r.code, r.field) == ("unknown_reference", "user_id")
    store.delete("units", "U1")
    r = store.put("occupancies", "C1", occ(1, 1, 1))
    assert (r.code, r.field) == ("unknown_reference", "unit_id")               # archived counts as missing


def test_records_with_active_dependents_cannot_be_deleted(store):
    store.write([Op("buildings", "put", "B1", building(1)), Op("units", "put", "U1", unit(1, 1)),
                 Op("users", "put", "P1", user(1)), Op("occupancies", "put", "C1", occ(1, 1, 1))])
    for resource, ext in [("buildings", "B1"), ("units", "U1"), ("users", "P1")]:
        r = store.delete(resource, ext)
        assert (r.status, r.code) == (409, "has_dependents")
        assert ext in r.message and "delete them first" in r.message
    results = store.write([Op("occupancies", "delete", "C1"), Op("users", "delete", "P1"),
                           Op("units", "delete", "U1"), Op("buildings", "delete", "B1")])
    assert [r.status for r in results] == [204, 204, 204, 204]


def test_delete_archives_and_a_later_put_restores(store):
    store.put("buildings", "B1", building(1, city="Berlin"))
    assert store.delete("buildings", "B1").status == 204
    assert store.get("buildings", "B1") is None
    assert store.count("buildings") == 0 and store.list_page("buildings")["items"] == []
    assert store.delete("buildings", "B1").status == 204                       # idempotent
    r = store.put("buildings", "B1", building(1, city="Hamburg"))
    assert r.status == 201
    assert store.get("buildings", "B1")["city"] == "Hamburg"
    r = store.delete("buildings", "B404")
    assert (r.status, r.code) == (404, "not_found")


def test_list_page_walks_every_record_once_with_the_cursor(store):
    store.write([Op("buildings", "put", f"B{i}", building(i)) for i in range(7)])
    store.delete("buildings", "B3")
    seen, cursor, pages = [], None, 0
    while True:
        page = store.list_page("buildings", cursor, limit=3)
        seen += [b["external_id"] for b in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["B0", "B1", "B2", "B4", "B5", "B6"] and pages == 2
    with pytest.raises(ValueError, match="cursor"):
        store.list_page("buildings", "not-a-cursor")
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            store.list_page("buildings", limit=bad)


def test_batch_does_upserts_first_then_deletes(store):
    store.put("buildings", "B1", building(1))
    results = store.batch("buildings", upsert=[building(2), {"name": "no id"}], delete=["B1", "B2", "B9"])
    assert [(i, op, r.status) for i, op, r in results] == \
        [("B2", "upsert", 201), ("", "upsert", 400), ("B1", "delete", 204), ("B2", "delete", 204), ("B9", "delete", 404)]


def test_apply_returns_outcomes_in_order_and_refusals_do_not_stop_the_others(tmp_path):
    target = LocalStore(tmp_path / "portal.sqlite", chunk_size=2)
    changes = [put("buildings", building(1)), put("units", unit(1, 1)), put("units", unit(2, 7)),
               put("users", user(1, "a@web.de")), put("users", user(2, "A@web.de")),
               put("users", user(3, last_name="")), put("occupancies", occ(1, 1, 1)),
               delete("units", "U1"), delete("units", "U9")]
    done = []
    outcomes = target.apply(changes, done.append)
    assert [o.change for o in outcomes] == changes
    assert [(o.ok, o.status, o.code) for o in outcomes] == [
        (True, 201, None), (True, 201, None), (False, 409, "unknown_reference"),
        (True, 201, None), (False, 409, "email_taken"), (False, 400, "invalid"),
        (True, 201, None), (False, 409, "has_dependents"), (False, 404, "not_found")]
    assert sum(done) == len(changes)
    assert [u["external_id"] for u in target.read("users")] == ["P1"]
    target.close()


def test_a_text_that_is_not_unicode_is_refused_alone_not_with_its_whole_chunk(local):
    """A lone surrogate (from an API source's JSON "\\ud800") cannot be stored: the write of the
    whole chunk failed with UnicodeEncodeError, where the import API refuses that record alone."""
    changes = [put("buildings", building(1)), put("buildings", building(2, city="K\ud800ln")),
               put("users", user(1, "a@web.de")), put("users", user(2, "b\udc00@web.de"))]
    outcomes = local.apply(changes)
    assert [(o.ok, o.status, o.code, o.field) for o in outcomes] == [
        (True, 201, None, None), (False, 400, "invalid", "city"), (True, 201, None, None), (False, 400, "invalid", "email")]
    assert [b["external_id"] for b in local.read("buildings")] == ["B1"]
    assert [u["external_id"] for u in local.read("users")] == ["P1"]


def test_read_yields_exactly_the_specs_fields_of_managed_active_records(local):
    local.apply([put("buildings", building(1)), put("buildings", building(2)), delete("buildings", "B2")])
    local.add_manual_user(last_name="Hand")
    assert list(local.read("buildings")) == [
        {"external_id": "B1", "name": "Haus 1", "street": None, "house_number": None, "postal_code": None,
         "city": None, "country": "DE"}]
    assert list(local.read("users")) == []


def test_writes_are_committed_when_apply_returns(tmp_path):
    target = LocalStore(tmp_path / "portal.sqlite")
    target.apply([put("buildings", building(i)) for i in range(3)])
    other = sqlite3.connect(tmp_path / "portal.sqlite")          # a second connection, as another process
    assert other.execute("SELECT count(*) FROM buildings WHERE archived = 0").fetchone() == (3,)
    other.close()
    target.close()
    assert len(list(LocalStore(tmp_path / "portal.sqlite").read("buildings"))) == 3


def test_a_direct_edit_shows_in_read_and_is_reverted_by_a_put(local):
    local.apply([put("users", user(1, "a@web.de", first_name="Max"))])
    local.edit("users", "P1", first_name="Moritz", email="m@web.de")
    assert next(local.read("users"))["first_name"] == "Moritz"
    assert local.store.put("users", "P9", user(9, "M@web.de ")).code == "email_taken"
    local.apply([put("users", user(1, "a@web.de", first_name="Max"), "update")])
    assert next(local.read("users"))["first_name"] == "Max"
    with pytest.raises(KeyError, match="P404"):
        local.edit("users", "P404", first_name="X")
    with pytest.raises(ValueError, match="valid values"):
        local.edit("users", "P1", nickname="X")


def allow_growth(target: LocalStore, pages: int) -> None:
    """Let the store's file grow by `pages` pages at most, as on a disk that is almost full
    (SQLite's max_page_count, set on the store's own connection)."""
    conn = target.store.conn
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + pages}")


def test_a_full_disk_is_reported_and_what_was_written_before_it_is_kept(tmp_path):
    """1000 buildings take about 12 pages: the first chunk fits, the second finds the disk full.
    The error says so (SQLite has rolled the chunk back itself, and no failing ROLLBACK hides
    that), and once there is room the same store takes the rest."""
    target = LocalStore(tmp_path / "portal.sqlite", chunk_size=1000)
    allow_growth(target, 18)
    changes = [put("buildings", building(i)) for i in range(5000)]
    with pytest.raises(TargetError) as err:
        target.apply(changes)
    message = str(err.value)
    assert f"writing to the local portal store {tmp_path / 'portal.sqlite'} failed after 1,000 of 5,000 changes: " \
           "database or disk is full" in message, message
    assert "check free disk space" in message
    assert [o.ok for o in err.value.partial_outcomes] == [True] * 1000
    assert len(list(target.read("buildings"))) == 1000
    allow_growth(target, 10_000)
    assert all(o.ok for o in target.apply(changes[1000:]))
    assert len(list(target.read("buildings"))) == 5000
    target.close()


def test_a_disk_error_while_the_store_is_created_is_reported_as_such(tmp_path):
    """A file size limit below one page (setrlimit, in a process of its own) makes SQLite's
    writes fail while the store is created; the error says so, not the ROLLBACK after it."""
    script = textwrap.dedent("""
        import resource, signal, sys
        from engine.errors import TargetError
        from engine.targets.local import LocalStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write past the limit fails, not the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))
        try:
            LocalStore(sys.argv[1])
        except TargetError as exc:
            print(exc)
    """)
    path = tmp_path / "portal.sqlite"
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert f"cannot open the local portal store {path}: disk I/O error" in done.stdout, done.stdout + done.stderr
    assert "rollback" not in done.stdout and "check free disk space" in done.stdout


def _random_changes(rng: random.Random, n: int) -> list[Change]:
    out = []
    for _ in range(n):
        entity = rng.choice(["buildings", "units", "users", "occupancies"])
        i = rng.randrange(6)
        if rng.random() < 0.3:
            out.append(delete(entity, {"buildings": "B", "units": "U", "users": "P", "occupancies": "C"}[entity] + str(i)))
        elif entity == "buildings":
            out.append(put(entity, building(i)))
        elif entity == "units":
            out.append(put(entity, unit(i, rng.randrange(6))))
        elif entity == "users":
            out.append(put(entity, user(i, rng.choice([None, "a@x.de", "A@x.de ", "b@x.de", "c@x.de"]))))
        else:
            out.append(put(entity, occ(i, rng.randrange(6), rng.randrange(6))))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_chunked_apply_answers_as_one_request_at_a_time(tmp_path, seed):
    """The batched checks give the same answers and end state as one transaction per change."""
    changes = _random_changes(random.Random(seed), 400)
    one = LocalStore(tmp_path / "one.sqlite", chunk_size=1)
    many = LocalStore(tmp_path / "many.sqlite", chunk_size=150)
    one.add_manual_user(last_name="Hand", email="c@x.de")
    many.add_manual_user(last_name="Hand", email="c@x.de")
    a, b = one.apply(changes), many.apply(changes)
    assert [(o.status, o.code, o.field) for o in a] == [(o.status, o.code, o.field) for o in b]
    assert len({o.code for o in a}) >= 5          # the sequence exercised the rules
    for entity in ("buildings", "units", "users", "occupancies"):
        assert list(one.read(entity)) == list(many.read(entity))
    one.close()
    many.close()


def test_unknown_resource_is_named(store):
    with pytest.raises(ValueError, match="Valid values are: buildings"):
        store.put("contracts", "K1", {})


def test_external_id_length_comes_from_the_spec(store):
    from engine.contract import spec
    params = spec()["paths"]["/{resource}/{external_id}"]["parameters"]
    longest = next(p["schema"]["maxLength"] for p in params if p.get("name") == "external_id")
    assert store.put("buildings", "B" * longest, {"external_id": "B" * longest, "name": "x"}).status == 201
    r = store.put("buildings", "B" * (longest + 1), {"external_id": "B" * (longest + 1), "name": "x"})
    assert (r.status, r.field) == (400, "external_id")
    assert store.put("buildings", "", {"external_id": "", "name": "x"}).status == 400


def test_a_run_that_fails_before_writing_leaves_no_empty_store_behind(tmp_path):
    """Started in a folder without the demo ERP (the wrong directory), a run fails at its source;
    the local portal store it opened is not left behind, empty, with the folders made for it."""
    import shutil
    import subprocess
    repo = Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "mappings", tmp_path / "mappings")
    (tmp_path / "tenants").mkdir()
    shutil.copy(repo / "tenants" / "demo.yaml", tmp_path / "tenants" / "demo.yaml")
    env = {k: v for k, v in os.environ.items() if k != "IDWELL_STATE_URL"}
    env["IDWELL_STATE_URL"] = f"sqlite:///{tmp_path / 'state.sqlite'}"
    done = subprocess.run([sys.executable, "-m", "engine", "run", "tenants/demo.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert not (tmp_path / "var" / "portal").exists(), "no empty portal store, no folder made for it"


def test_a_store_that_was_written_to_or_was_there_before_stays(tmp_path):
    path = tmp_path / "new" / "portal.sqlite"
    LocalStore(path).close()
    assert not path.exists() and not path.parent.exists()
    written = LocalStore(path)
    written.apply([Change("buildings", "create", "B1", {"external_id": "B1", "name": "Haus"})])
    written.close()
    assert path.exists()
    existing = LocalStore(path)
    existing.close()
    assert len(list(LocalStore(path).read("buildings"))) == 1


def test_a_store_opened_to_read_reads_and_refuses_to_write(tmp_path):
    """`plan` opens the store read-only: it reads what is committed and refuses to apply, saying
    why; the store is unchanged."""
    path = tmp_path / "portal.sqlite"
    writer = LocalStore(path)
    writer.apply([put("buildings", building(1)), put("buildings", building(2))])
    writer.close()
    before = path.read_bytes()
    reader = LocalStore(path, tenant="acme", read_only=True)
    try:
        assert [b["external_id"] for b in reader.read("buildings")] == ["B1", "B2"]
        assert [row[0] for row in reader.read_rows("buildings", ["B2"])] == ["B2"]
        with pytest.raises(TargetError, match=f"tenant 'acme': the local portal store {path} was opened to plan, "
                                              "not to write"):
            reader.apply([put("buildings", building(3))])
    finally:
        reader.close()
    assert path.read_bytes() == before


def test_a_read_only_store_says_so_not_to_check_the_disk_space(tmp_path):
    """A store the user that runs the sync cannot write (a file or folder without write access, a
    file system mounted read-only; here SQLite's query_only on the store's own connection, which
    answers as they do: 'attempt to write a readonly database') names what to change, not the
    disk space and locks of a full disk."""
    path = tmp_path / "portal.sqlite"
    target = LocalStore(path, tenant="acme")
    target.apply([put("buildings", building(1))])
    target.store.conn.execute("PRAGMA query_only = 1")
    with pytest.raises(TargetError) as err:
        target.apply([put("buildings", building(i)) for i in range(2, 5)])
    assert str(err.value).startswith(f"tenant 'acme': writing to the local portal store {path} failed after 0 of 3 "
                                     "changes: attempt to write a readonly database"), str(err.value)
    assert err.value.hint.startswith(f"{path} is read-only for the user that runs idwell-sync"), err.value.hint
    assert "free disk space" not in err.value.hint
    assert err.value.hint.endswith("the next run resumes where this one stopped")
    target.close()



def test_a_store_on_a_read_only_file_system_says_it_is_read_only_when_it_is_opened(tmp_path):
    """A store that cannot be written fails when it is opened, before any change is written
    (opening takes a write lock, and SQLite wants to write a WAL store's -shm file): a file system
    mounted read-only, a folder without write access. The error says what to change, as at a
    write; not to check the disk space. The folder is made read-only with a read-only bind mount
    in a mount namespace of its own (root could write past file permissions)."""
    folder = tmp_path / "portal"
    path = folder / "demo.sqlite"
    writer = LocalStore(path, tenant="acme")
    writer.apply([put("buildings", building(1))])
    writer.close()
    script = textwrap.dedent("""
        import sys
        from engine.errors import TargetError
        from engine.targets.local import LocalStore
        try:
            LocalStore(sys.argv[1], tenant="acme").close()
        except TargetError as exc:
            print(exc)
            print("what to do:", exc.hint)
    """)
    shell = (f"mount --bind -o ro {folder} {folder} && touch {folder}/probe 2>/dev/null && exit 99; "
             f"{sys.executable} -c '{script}' {path}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or not done.stdout:
        reason = f"a read-only bind mount is not possible here: {done.stderr.strip()[-200:]} (exit {done.returncode})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    message, hint = done.stdout.rstrip("\n").split("\nwhat to do: ")
    assert message.startswith(f"tenant 'acme': cannot open the local portal store {path}: "), done.stdout
    assert hint.startswith(f"{path} is read-only for the user that runs idwell-sync"), hint
    assert "free disk space" not in hint and hint.endswith("or change target.path in the tenant file"), hint
