"""extract and transform for a run whose users a second process extracts (engine.parallel): the
same records and findings, in the same order, as engine.extract.extract followed by
engine.transform.transform."""
from __future__ import annotations

import datetime as dt
import time

from engine.config.model import ENTITIES, Tenant
from engine.entity_data import EntityData
from engine.extract import EXTRACT_ORDER, extract_entity, gated_findings, users_gate, window_params
from engine.findings import Finding
from engine.mapping import unknown_code_findings
from engine.normalize import LastSent
from engine.progress import Progress
from engine.references import index_occupancies, occupied_users, window_gate
from engine.transform import transform_with_users, transform_without_users


def _extract_transform_parallel(tenant: Tenant, run_date: dt.date, worker, findings: list[Finding],
                                progress: Progress, previous_winners: dict[str, str], holders,
                                timings: dict[str, float], portal_may_read,
                                pack: bool, last_sent: LastSent | None = None
                                ) -> tuple[dict[str, EntityData], dict[str, str]]:
    """extract and transform with the users extracted by a second process (engine.parallel);
    the same records and findings, in the same order, as extract followed by transform.
    `portal_may_read()` is called when only the users are left to extract. `pack`: pack each
    record as it is normalised (EntityData.packed_rows), for the diff against a packed portal:
    buildings, units and occupancies here, the users by whoever normalises them."""
    from engine.sources import open_source
    t = time.perf_counter()
    params = window_params(tenant, run_date)
    found: dict[str, list[Finding]] = {e: [] for e in EXTRACT_ORDER}
    data: dict[str, EntityData] = {}
    source = open_source(tenant, run_date=run_date)
    try:     # contracts, buildings and units here while the child extracts the persons
        gates: list = []         # the users' gate, sent as soon as it is known: the child waits for it

        def send_gate(user_ids: set | None) -> None:
            if user_ids is not None:
                gates.append(users_gate(tenant, user_ids))
                worker.send_gate(gates[0][1].wanted if gates[0] else None)
        sends_all = users_gate(tenant, set()) is None        # the tenant sends every person: no gate to wait for
        if sends_all:
            send_gate(set())
        data["occupancies"] = extract_entity(tenant, "occupancies", source, params, run_date,
                                             window_gate(tenant.window, run_date), found["occupancies"], progress,
                                             keep_gated=True, early=None if sends_all else ("user_id", send_gate))
        if not gates:                   # not known before the contracts' records were made
            send_gate(occupied_users(data["occupancies"]))
        gate = gates[0]
        found["occupancies"].extend(unknown_code_findings(data["occupancies"]))
        gated_findings(tenant, data["occupancies"], run_date, found["occupancies"])
        for entity in ("buildings", "units"):
            data[entity] = extract_entity(tenant, entity, source, params, run_date, None, found[entity], progress)
    finally:
        source.close()
    before, after = transform_without_users(tenant, data, run_date, pack=pack, last_sent=last_sent)
    portal_may_read()               # the child normalises the users now, this process takes a share
    index = index_occupancies(data["occupancies"], data["units"])     # while the child starts on them
    result = worker.result(tenant.rules, progress)
    if result is None:        # the child failed: the users are extracted here, with the same gate
        source = open_source(tenant, run_date=run_date)
        try:
            data["users"] = extract_entity(tenant, "users", source, params, run_date, gate, found["users"], progress)
        finally:
            source.close()
        normalised = None
    else:
        data["users"], normalised = result.users, result.normalise_findings
        found["users"] = result.extract_findings
    timings["extract"] = time.perf_counter() - t      # with normalising, which ran beside it
    t = time.perf_counter()
    progress.start("resolve, dedup")
    for entity in EXTRACT_ORDER:
        findings.extend(found[entity])
    data = {e: data[e] for e in ENTITIES}
    winners = transform_with_users(tenant, data, before, normalised, after, previous_winners, findings, holders,
                                   index, last_sent, None if result is None else result.order)
    timings["transform"] = time.perf_counter() - t
    return data, winners
