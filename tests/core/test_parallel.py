"""The users extracted by a second process (engine.parallel) give the same run as the serial path:
the same records, exclusions, counts, findings in the same order, plan and e-mail winners; also where
an ERP key appears twice (the child then gates while mapping), when the tenant sends persons without
a contract, and when the child fails (the run extracts the users itself)."""
from __future__ import annotations

import logging

import pytest

from engine import parallel, parallel_child, parallel_messages


def outcome(prepared) -> dict:
    """Everything of a plan a user could see, in order."""
    return {
        "data": {e: ([(i, r.key, r.data, r.contract) for i, r in d.records.items()], sorted(d.excluded.items()),
                     d.extracted, dict(d.filtered), dict(d.unkeyed)) for e, d in prepared.data.items()},
        "findings": [(f.code, f.entity, f.key, f.message, f.field) for f in prepared.findings],
        "plan": [(c.entity, c.action, c.external_id, c.record, c.changed, c.key) for c in prepared.plan.changes],
        "winners": prepared.winners,
    }


def both_ways(ws, monkeypatch, tenant=None) -> tuple[dict, dict]:
    tenant = tenant or ws.tenant()
    monkeypatch.setenv(parallel.ENVIRONMENT, "0")
    assert not parallel.possible(tenant)
    serial = outcome(ws.plan(tenant))
    monkeypatch.setenv(parallel.ENVIRONMENT, "1")
    assert parallel.possible(tenant)
    return serial, outcome(ws.plan(tenant))


@pytest.fixture
def spy(monkeypatch):
    """Counts the results the second process delivered (and lets the test see failures)."""
    delivered = []
    original = parallel.UsersWorker.result

    def result(self, rules, progress):
        got = original(self, rules, progress)
        delivered.append(got is not None)
        return got
    monkeypatch.setattr(parallel.UsersWorker, "result", result)
    return delivered


def shares_taken(monkeypatch) -> list[int]:
    """The number of users in each share the run takes over from the child, as it takes them."""
    shared: list[int] = []
    rebuild = parallel._shared_blocks

    def count_the_share(packed):
        block = rebuild(packed)
        shared.append(len(block.records))
        return block
    monkeypatch.setattr(parallel, "_shared_blocks", count_the_share)
    return shared


def test_the_demo_tenant_plans_the_same_with_the_second_process(ws, monkeypatch, spy):
    serial, par = both_ways(ws, monkeypatch)
    assert spy == [True]
    assert par["data"]["users"][0], "the demo has users to send"
    assert par == serial


def test_users_handed_over_in_many_blocks_give_the_same_plan(ws, monkeypatch, spy):
    """Small chunks and blocks, so that the demo's users cross in many blocks, some with
    records that normalising drops (the findings' order is normalize_entity's chunk order)."""
    from engine import normalize
    monkeypatch.setattr(normalize, "CHUNK", 8)
    monkeypatch.setattr(parallel_child, "BLOCK", 24)
    tenant = ws.tenant(rules={"long_names": "reject", "users_without_occupancy": "skip"})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert len(par["data"]["users"][0]) > 10 * parallel_child.BLOCK
    assert any(reason == "name_too_long" for _, reason in par["data"]["users"][1])
    assert par == serial


def test_users_shared_between_both_processes_give_the_same_plan(ws, monkeypatch, spy):
    """The child waits until the run asks for a share, so that the run normalises some of the
    later blocks itself, in several shares: still the same records, exclusions and findings, in
    order."""
    import select
    from engine import normalize
    monkeypatch.setattr(normalize, "CHUNK", 8)
    monkeypatch.setattr(parallel_child, "BLOCK", 24)
    asked = parallel_child._asked
    looks = []

    def wait_for_the_run(control):                    # in the child: the first time, wait for the run
        if not looks and not control.closed:
            select.select([control], [], [], 30)
        looks.append(1)
        return asked(control)
    monkeypatch.setattr(parallel_child, "_asked", wait_for_the_run)
    shared = shares_taken(monkeypatch)
    tenant = ws.tenant(rules={"long_names": "reject", "users_without_occupancy": "skip"})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert shared and sum(shared) >= len(par["data"]["users"][0]) // 5
    assert par == serial


def test_the_run_asks_for_the_next_share_before_the_last_block_of_its_share(ws, monkeypatch, spy):
    """A share of several blocks: the run normalises all but its last block, asks for the next
    share, then normalises the last block (the answer comes meanwhile). Asked as the share
    arrived, the run held the next share while it still had all of this one to do, and the child
    ran out of blocks long before the run was done. Still the same plan."""
    import select
    from engine import normalize
    monkeypatch.setattr(normalize, "CHUNK", 8)
    monkeypatch.setattr(parallel_child, "BLOCK", 24)
    asked = parallel_child._asked

    def wait_for_the_run(control):                    # in the child: at each look, a moment for the run to ask
        if not control.closed:
            select.select([control], [], [], 0.2)
        return asked(control)
    monkeypatch.setattr(parallel_child, "_asked", wait_for_the_run)
    events: list = []                                 # in the run: what it normalises and when it asks
    normalise, ask = parallel.normalize_entity, parallel.UsersWorker._ask_for_share

    def normalised(data, *args, **kwargs):
        events.append(len(data.records))
        return normalise(data, *args, **kwargs)

    def asking(self):
        events.append("ask")
        return ask(self)
    monkeypatch.setattr(parallel, "normalize_entity", normalised)
    monkeypatch.setattr(parallel.UsersWorker, "_ask_for_share", asking)
    tenant = ws.tenant(rules={"long_names": "reject", "users_without_occupancy": "skip"})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    assert events[0] == "ask"                         # the first, before the child's first message
    # every share of more than one block: its whole blocks, the request, its last block
    split = [i for i in range(1, len(events) - 1) if events[i] == "ask" and events[i - 1] != "ask"
             and isinstance(events[i + 1], int)]
    assert split, f"no share was split around a request: {events}"
    for i in split:
        assert events[i - 1] % parallel_child.BLOCK == 0 and 0 < events[i + 1] <= parallel_child.BLOCK


@pytest.mark.parametrize("n, parts", [(0, [0]), (1, [1]), (24, [24]), (25, [24, 1]), (48, [24, 24]), (70, [48, 22])])
def test_a_share_splits_before_its_last_block(n, parts):
    packed = {"ids": [str(i) for i in range(n)], "keys": list(range(n)), "datas": [{}] * n, "contracts": None}
    split = parallel_messages._split_blocks(packed, 24)
    assert [len(p["ids"]) for p in split] == parts
    assert [i for p in split for i in p["ids"]] == packed["ids"] and all(p["contracts"] is None for p in split)


def test_a_share_asked_for_before_the_child_reads_the_gate_is_still_handed_over(ws, monkeypatch, spy):
    """The run asks for its share as soon as it is ready, which may be before the child has read
    the users' gate: both messages then wait in the pipe together, and the child must still see
    the request (a buffered reader would take it in with the gate, out of select's sight, and
    the run would normalise none of the users)."""
    import time
    from engine import normalize
    monkeypatch.setattr(normalize, "CHUNK", 8)
    monkeypatch.setattr(parallel_child, "BLOCK", 24)
    monkeypatch.setattr(parallel_child._LateGate, "_look", lambda self: None)    # read only in wait()
    take = parallel_child._LateGate._take

    def late_take(self):                              # in the child: the run has asked by then
        time.sleep(1.0)
        return take(self)
    monkeypatch.setattr(parallel_child._LateGate, "_take", late_take)
    shared = shares_taken(monkeypatch)
    tenant = ws.tenant(rules={"users_without_occupancy": "skip"})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert shared, "the run was handed no share of the users"
    assert par == serial


@pytest.mark.parametrize("arrives", [1, 4])
def test_a_gate_arriving_while_the_persons_are_mapped_gives_the_same_plan(ws, monkeypatch, spy, arrives, tmp_path):
    """The child waits for the run's gate at its `arrives`-th look (batches of 50 persons): the
    persons before are gated afterwards, the rest while mapping; the same plan and findings."""
    import select
    looked = []
    look = parallel_child._LateGate._look

    def waiting_look(self):                           # in the child
        looked.append(1)
        if len(looked) == arrives and not self._arrived:
            select.select([self._control], [], [], 30)
        return look(self)
    monkeypatch.setattr(parallel_child._LateGate, "_look", waiting_look)
    report = tmp_path / "gated-while-mapping"
    afterwards = parallel_child._gate_afterwards

    def counting(users, gate, gated, rows_before):    # in the child: how many the mapping stopped
        report.write_text(str(len(users.gated)))
        return afterwards(users, gate, gated, rows_before)
    monkeypatch.setattr(parallel_child, "_gate_afterwards", counting)
    tenant = ws.tenant(source={"batch_size": 50})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    stopped = [f for f in par["findings"] if f[0] == "user_without_occupancy"]
    assert 0 < int(report.read_text()) <= len(stopped)   # some stopped while mapping, in the child


def test_a_rerun_is_the_same_with_the_second_process(ws, monkeypatch, spy):
    ws.run()
    spy.clear()
    ws.erp_execute("UPDATE adresse SET telefon = '(030) 123 45-6' WHERE adressnr = (SELECT min(adressnr) FROM adresse)")
    serial, par = both_ways(ws, monkeypatch)
    assert spy == [True]
    assert par == serial
    assert any(a == "update" for _, a, *_ in par["plan"])


def test_codes_missing_from_code_tables_are_reported_alike(ws, monkeypatch, spy, tmp_path):
    """Salutations, unit types and contract kinds that the code tables lack, spread over many
    batches: the child's misses reach the run, counted over the same records as in the serial
    path, also where the child mapped persons before the gate arrived (they are not counted:
    the serial path never maps them), and with the same example keys where the contracts'
    second halves are made in reverse order."""
    import select
    looked = []
    look = parallel_child._LateGate._look

    def late_look(self):                              # in the child: the gate is taken at the 4th look
        looked.append(1)
        if len(looked) < 4:
            return
        if len(looked) == 4 and not self._arrived:
            (tmp_path / "waited").write_text(str(self.rows_before))
            select.select([self._control], [], [], 30)
        return look(self)
    monkeypatch.setattr(parallel_child._LateGate, "_look", late_look)
    ws.erp_execute("UPDATE adresse SET anrede = 'Eheleute Dr.' WHERE anrede IN ('Eheleute', 'Herrn Dr.')",
                   "UPDATE adresse SET anrede = 'Herr Dipl.-Ing.' WHERE adressnr % 7 = 0 AND anrede = 'Herr'",
                   "UPDATE einheit SET typcode = 6 WHERE typcode = 4 OR einheitid % 11 = 0",
                   "UPDATE vertrag SET art = 'W' WHERE art = 'M' AND vertragnr % 5 = 0")
    tenant = ws.tenant(source={"batch_size": 50})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    unknown = [(entity, field, message) for code, entity, _, message, field in par["findings"]
               if code == "code_not_in_table"]
    assert [(e, f) for e, f, _ in unknown] == [("units", "type"), ("occupancies", "role"), ("users", "salutation"),
                                               ("users", "salutation")]
    assert all("records: " in m and m.endswith(", ...)") for _, _, m in unknown), unknown
    assert int((tmp_path / "waited").read_text()) > 0, "the child mapped persons before it took the gate"


COLUMNS = "a.AdressNr, a.Anrede, a.Titel, a.Vorname, {last}, a.Email, a.Telefon, a.Mobil, a.Sprache"


@pytest.mark.parametrize("copy_of", ["min", "max"])
def test_an_erp_key_twice_gives_the_same_findings(ws, monkeypatch, spy, copy_of):
    """A query that yields one AdressNr twice: once more as it is (duplicate_key, or skipped twice),
    and once as a pseudo person (filtered out after the same key was kept), in row order."""
    query = (f"SELECT {COLUMNS.format(last='a.Nachname')} FROM Adresse a "
             f"UNION ALL SELECT {COLUMNS.format(last=chr(39) + 'Leerstand' + chr(39))} FROM Adresse a "
             f"WHERE a.AdressNr = (SELECT min(AdressNr) FROM Adresse) "
             f"UNION ALL SELECT {COLUMNS.format(last='a.Nachname')} FROM Adresse a "
             f"WHERE a.AdressNr = (SELECT {copy_of}(AdressNr) FROM Adresse)")
    tenant = ws.tenant(overrides={"entities": {"users": {"query": query}}})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    codes = {c for c, *_ in par["findings"]}
    assert "pseudo_person" in codes
    assert par["data"]["users"][2] == len(ws.erp_rows("SELECT adressnr FROM adresse")) + 2


def test_a_tenant_that_sends_persons_without_a_contract(ws, monkeypatch, spy):
    tenant = ws.tenant(rules={"long_names": "truncate", "users_without_occupancy": "send"})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    assert "user_without_occupancy" not in {c for c, *_ in par["findings"]}


@pytest.mark.parametrize("module, where", [(parallel, "_child"), (parallel_child, "_send_users")])
def test_a_failing_second_process_leaves_the_users_to_the_run(ws, monkeypatch, spy, caplog, module, where):
    """At once (the run extracts everything itself), or after the persons were mapped."""
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure in the second process")
    monkeypatch.setattr(module, where, broken)
    with caplog.at_level(logging.WARNING, logger="engine.parallel"):
        serial, par = both_ways(ws, monkeypatch)
    assert spy == [False]
    assert par == serial
    assert "simulated failure in the second process" in caplog.text


def test_a_query_that_fails_in_the_second_process_fails_the_run_once(ws, monkeypatch, caplog):
    """The persons' query fails in the second process (here: a table that does not exist; at a
    customer, a query_timeout): the run stops with that error, told once, instead of running
    the same query again itself (as long again against the customer's server, for the same
    error)."""
    from engine.errors import SourceError
    query = ("SELECT a.AdressNr, a.Anrede, a.Titel, a.Vorname, a.Nachname, a.Email, a.Telefon, a.Mobil, "
             "a.Sprache FROM Adresse_gone a")
    tenant = ws.tenant(overrides={"entities": {"users": {"query": query}}})
    monkeypatch.setenv(parallel.ENVIRONMENT, "1")
    with caplog.at_level(logging.WARNING), pytest.raises(SourceError) as raised:
        ws.plan(tenant)
    assert raised.value.cause == "object_missing"
    assert "query of entity 'users' failed" in raised.value.message and "Adresse_gone" in raised.value.message
    assert "extracting here" not in caplog.text
    assert not [r for r in caplog.records if "Adresse_gone" in r.getMessage()]


def test_the_switch_and_the_source_type_decide(ws, monkeypatch):
    tenant = ws.tenant()
    for value, expected in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv(parallel.ENVIRONMENT, value)
        assert parallel.possible(tenant) is expected, value


def test_gating_afterwards_declines_where_row_order_matters():
    """The child's shortcut (map every person, gate afterwards) is taken only where it cannot differ."""
    from engine.entity_data import EntityData, Rec
    from engine.references import OccupancyGate

    def users(**extra) -> EntityData:
        data = EntityData("users", records={"1": Rec("1", {"external_id": "1"}), "2": Rec("2", {"external_id": "2"})})
        for name, value in extra.items():
            setattr(data, name, value)
        return data
    gate = OccupancyGate({"2"})
    plain, gated = users(), ([], [], [])
    assert parallel_child._gate_afterwards(plain, gate, gated, 2)
    assert list(plain.records) == ["2"] and gated == (["1"], ["1"], ["user_without_occupancy"])
    from collections import Counter
    assert not parallel_child._gate_afterwards(users(unkeyed=Counter(duplicate_key=1)), gate, ([], [], []), 2)
    assert not parallel_child._gate_afterwards(users(excluded={"1": "pseudo_person"}), gate, ([], [], []), 2)


def test_gating_afterwards_looks_only_at_the_records_mapped_before_the_gate():
    """Records made after the gate arrived passed it while mapping; the first `rows_before` are
    gated afterwards, and the rest keep their order."""
    from engine.entity_data import EntityData, Rec
    from engine.references import OccupancyGate
    records = {i: Rec(i, {"external_id": i}) for i in "12345"}
    users, gated = EntityData("users", records=dict(records)), ([], [], [])
    assert parallel_child._gate_afterwards(users, OccupancyGate({"2", "4"}), gated, 3)
    assert list(users.records) == ["2", "4", "5"]
    assert gated == (["1", "3"], ["1", "3"], ["user_without_occupancy"] * 2)


@pytest.mark.parametrize("wanted", [set(), {"1"}, {"1", "2", "1001"}, {""}, {"", "7"}, {"a\x00b", "c"}, {None, "3"}, {4, "5"}])
def test_the_gate_crosses_to_the_child_unchanged(wanted):
    """The users' gate goes as one NUL-joined text where that is unambiguous, else as a list."""
    import io
    from engine._pipe import encode, receive
    message = receive(io.BytesIO(encode(("gate", parallel_messages._gate_message(wanted)))))
    assert parallel_messages._gate_set(message[1]) == wanted


def test_a_message_larger_than_the_pipe_crosses_an_unbuffered_reader_whole():
    """The child reads the run's messages unbuffered (so that select() sees a waiting request),
    where one read gives only what the pipe holds: a gate of many user_ids comes whole, and the
    message after it too."""
    import os
    import threading
    from engine._pipe import encode, pipe, receive
    wanted = {str(n) for n in range(400_000)}               # several MB, the pipe holds at most 1 MB
    r, w = pipe()
    blob = encode(("gate", parallel_messages._gate_message(wanted))) + encode(("share",))

    def write():
        with os.fdopen(w, "wb") as out:
            out.write(blob)
    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(r, "rb", buffering=0) as control:
        gate = receive(control)
        after = receive(control)
        with pytest.raises(EOFError):
            receive(control)
    writer.join()
    assert parallel_messages._gate_set(gate[1]) == wanted
    assert after == ("share",)


@pytest.mark.parametrize("most", [None, 40_009, 3])
def test_the_childs_messages_cross_whole_and_in_order_however_they_are_written(monkeypatch, most):
    """The child's sender writes what has queued up in one writev: messages queued while the run
    does not read (more of them than writev takes at once, and more than the pipe holds) arrive
    whole and in the order they were sent, also where the kernel takes only part of a writev
    (`most`: at most that many bytes a call) or fewer parts than were given."""
    import os
    from engine._pipe import pipe, receive
    if most is not None:
        writev = os.writev

        def short_writev(fd, parts):            # a real write that stops short, as a signal can make it
            return writev(fd, [bytes(memoryview(b"".join(parts))[:most])])
        monkeypatch.setattr(parallel_child.os, "writev", short_writev)
        monkeypatch.setattr(parallel_child, "_IOV_MAX", 2)
    messages = [("ok", {"ids": [str(n) for n in range(k * 5_000, (k + 1) * 5_000)], "n": k}) for k in range(40)]
    r, w = pipe()
    with os.fdopen(w, "wb") as out:
        with parallel_child._Sender(out) as send_later:
            for message in messages[:-1]:
                send_later(message)              # queued; nothing reads the pipe yet
            with os.fdopen(r, "rb") as results:
                first = receive(results)
                send_later(messages[-1])
                received = [first] + [receive(results) for _ in messages[1:]]
    assert [m[1]["n"] for m in received] == list(range(40))
    assert received == [(kind, body) for kind, body in messages]


@pytest.mark.parametrize("records", [
    # as the Mapper makes them: the same fields in the same order, the key equal to the external_id
    {"1": ("1", {"external_id": "1", "name": "Ä", "phone": None}, None),
     "2": ("2", {"external_id": "2", "name": None, "phone": "+49301234567"}, None)},
    # composite ERP keys and contracts (occupancies)
    {"7-1": ("7/1", {"external_id": "7-1", "user_id": "1"}, "7"), "7-2": ("7/2", {"external_id": "7-2", "user_id": "2"}, "7")},
    # records whose fields differ (one lacks a field, one has them in another order)
    {"1": ("1", {"external_id": "1", "name": "a"}, None), "2": ("2", {"external_id": "2"}, None),
     "3": ("3", {"name": "c", "external_id": "3"}, None)},
    # an external_id field that is not the record's id
    {"a": ("a", {"external_id": "b", "name": "x"}, None)},
    {},
])
def test_records_cross_to_the_parent_unchanged(records):
    from engine.entity_data import Rec
    ids = list(records)
    recs = [Rec(*value) for value in records.values()]
    sent = parallel_messages._blocks(ids, recs, 0)
    from engine._pipe import encode
    import marshal
    rebuilt = parallel_messages._records(marshal.loads(encode(sent)[9:]))
    assert [(i, r.key, r.data, list(r.data), r.contract) for i, r in rebuilt.items()] == \
        [(i, r.key, r.data, list(r.data), r.contract) for i, r in zip(ids, recs)]


@pytest.mark.parametrize("gated", [
    (["1", "2"], ["1", "2"], ["user_without_occupancy"] * 2),        # keys are the external_ids, one reason
    (["1", "2"], ["K1", "K2"], ["user_without_occupancy", "other"]),  # neither
    ([], [], []),
])
def test_the_gated_persons_cross_to_the_parent_unchanged(gated):
    import marshal
    from engine._pipe import encode
    sent = marshal.loads(encode(parallel_messages._compact(*gated))[9:])
    assert tuple(map(list, parallel_messages._uncompact(*sent))) == gated


def test_persons_whose_only_contract_is_refused_give_the_same_run(ws, monkeypatch, spy):
    """Persons with a contract in the window that the record check refuses (a contract type the
    roles table does not know) have no occupancy left: the serial path drops them before
    normalising them. The second process has normalised them already; the run must still drop
    them the same way, without the findings of their normalising, and also a person that
    normalising refused itself and an earlier run sent (whose contract there ended): kept as
    last sent, it stayed in the portal without an occupancy."""
    building = ws.in_scope_building()
    unit, other_unit = ws.add_unit(building, "Wohnung Rolle"), ws.add_unit(building, "Wohnung Telefon")
    refused = ws.add_person("Fremdsprachig", "Fritz", "fritz@example.org")
    garbage_phone = ws.add_person("Ohnetelefon", "Olga", "olga@example.org", telefon="keine")
    first = ws.add_contract(unit, "E", "2020-01-01", None, [refused])
    ws.add_contract(other_unit, "V", "2020-01-01", None, [garbage_phone])
    ws.add_contract(other_unit, "M", "2020-01-01", None, [ws.next_key("adresse", "adressnr") + 7])   # unknown person
    ws.run()
    assert str(refused) in ws.portal()["users"]
    ws.erp_execute(("UPDATE vertrag SET beginn = '2000-01-01', ende = '2010-01-01' WHERE vertragnr = ?", (first,)),
                   ("UPDATE adresse SET sprache = 'fr' WHERE adressnr = ?", (refused,)))
    ws.add_contract(unit, "V", "2020-01-01", None, [refused])
    spy.clear()
    serial, par = both_ways(ws, monkeypatch)
    assert spy == [True]
    assert par == serial
    dropped = {f[2] for f in serial["findings"] if f[0] == "user_without_occupancy"}
    assert {str(refused), str(garbage_phone)} <= dropped
    assert not [f for f in par["findings"] if f[2] in (str(refused), str(garbage_phone)) and f[1] == "users"
                and f[0] != "user_without_occupancy"]
    assert ("users", "delete", str(refused)) in {c[:3] for c in par["plan"]}


def test_an_expression_only_a_person_the_gate_stops_breaks_does_not_stop_the_run_when_the_gate_comes_late(
        ws, monkeypatch, spy):
    """The run never maps a person without a contract in the window, so an expression that only
    such a person breaks is no error of the run. The child maps persons before the run's gate
    arrives (a loaded machine: here it takes the gate only once every person is mapped); the
    plan is still the serial path's, and the person is reported as not sent."""
    look = parallel_child._LateGate._look

    def late_look(self):                              # in the child: the gate is taken by wait() only
        if self._arrived:
            return look(self)
    monkeypatch.setattr(parallel_child._LateGate, "_look", late_look)
    nr = ws.add_person("Ohnevertrag", None, "ohne.vertrag@example.org")
    tenant = ws.tenant(source={"batch_size": 50}, overrides={"entities": {"users": {"fields": {
        "first_name": f"AdressNr == `{nr}` && join(' ', [Vorname, Nachname]) || Vorname"}}}})
    serial, par = both_ways(ws, monkeypatch, tenant)
    assert spy == [True]
    assert par == serial
    assert ("user_without_occupancy", "users", str(nr)) in [f[:3] for f in par["findings"]]


def test_an_expression_a_person_with_a_contract_breaks_stops_the_run_also_when_the_gate_comes_late(
        ws, monkeypatch, spy):
    """The other side of the same rule: a person the run sends breaks the expression, so the run
    stops (exit 3) with the same message as the serial path, however late the gate came."""
    from engine.errors import ConfigError
    look = parallel_child._LateGate._look

    def late_look(self):
        if self._arrived:
            return look(self)
    monkeypatch.setattr(parallel_child._LateGate, "_look", late_look)
    nr = max(int(i) for i in ws.plan(ws.tenant()).data["users"].records if i.isdigit())     # a person the run sends
    tenant = ws.tenant(source={"batch_size": 50}, overrides={"entities": {"users": {"fields": {
        "first_name": f"AdressNr == `{nr}` && join(' ', [Vorname, `null`]) || Vorname"}}}})
    messages = []
    for parallel_on in ("0", "1"):
        monkeypatch.setenv(parallel.ENVIRONMENT, parallel_on)
        with pytest.raises(ConfigError) as caught:
            ws.plan(tenant)
        messages.append(caught.value.message)
    assert messages[0] == messages[1]
    assert f"users {nr}: the field 'first_name'" in messages[1]


def test_a_stop_as_the_run_takes_the_second_process_results_over_is_a_stop_not_an_internal_error(ws, monkeypatch):
    """A SIGTERM that arrives just as the results' pipe becomes a file (the file owns the
    descriptor, the worker still names it) once closed the descriptor twice: the run ended as an
    internal error (OSError EBADF, exit 70) instead of as stopped (exit 143)."""
    import os

    from engine._stop import Terminated, request_stop
    real_fdopen = os.fdopen

    def fdopen_then_stopped(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        if mode == "rb" and not kwargs and not args:    # the results' pipe (the gate's is opened unbuffered)
            # the race: the handler's exception drops the new file, held by nothing yet, which
            # closes the descriptor; then the stop is raised, as engine.cli's SIGTERM handler does
            f.close()
            request_stop(Terminated)
        return f

    monkeypatch.setenv(parallel.ENVIRONMENT, "1")
    monkeypatch.setattr(parallel.os, "fdopen", fdopen_then_stopped)
    with pytest.raises(Terminated):
        ws.plan()
