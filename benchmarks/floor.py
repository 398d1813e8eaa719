"""How fast could a plan be without a dict per record? A floor for a columnar core, on size L.

    python -m benchmarks.floor [--db sqlite|postgresql] [--size L]     (after `python -m benchmarks.run --sizes L`)

One process, the engine's own parts where they work on columns already: the same extraction
(engine.sources), the mapping's compiled column expressions, filters and gates
(mapping_columns._ColumnBindings.first, then every field's column over the kept rows), the
e-mail and phone normalisation over whole columns (analyze_emails, normalize_phones), and each
kept record packed as the diff against a packed portal compares it (marshal, format 0), built
from the columns. What it leaves out, and a columnar core would still have to do: findings as
objects (it counts them), the check of codes a code table does not hold (code_not_in_table),
references between entities, dedup, the diff itself and the records of
the changes. So its time is a lower bound of such a core's serial work, and the ratio to the raw
fetch of the same rows says whether a rewrite could reach the targets of issue 3 at all: the
plan's target is 3.0x the raw fetch with two cores.
"""
from __future__ import annotations

import argparse
import json
import marshal
import time
from itertools import repeat

from benchmarks.run import ROOT, _tenant_file


def floor(db: str, size: str = "L") -> dict:
    import yaml
    from engine import contract
    from engine.config import load_tenant
    from engine.expr.emails import analyze_emails
    from engine.expr.phones import normalize_phones
    from engine.extract import window_params
    from engine.mapping import SLICE
    from engine.mapping_columns import _ColumnBindings
    from engine.references import occupancy_gate, window_gate
    from engine.sources import open_source
    from engine.sources.connect import create_sql_engine
    import datetime as dt

    tenant = load_tenant(_tenant_file(db, size))
    run_date = dt.date.today()
    queries = [e["query"] for e in yaml.safe_load((ROOT / "mappings" / "domus-sql.yaml").read_text())["entities"].values()]
    raw = create_sql_engine(tenant.source).raw_connection()
    t, cpu = time.perf_counter(), time.process_time()
    for q in queries:
        cur = raw.cursor()
        cur.execute(q)
        cur.fetchall()
        cur.close()
    raw_seconds, raw_cpu = time.perf_counter() - t, time.process_time() - cpu
    raw.close()

    params = window_params(tenant, run_date)
    source = open_source(tenant, run_date=run_date)
    kept: dict[str, int] = {}
    gated: dict[str, int] = {}
    packed: dict[str, list[bytes]] = {}
    steps: dict[str, float] = {}
    t, cpu = time.perf_counter(), time.process_time()
    user_ids: set = set()
    for entity in ("occupancies", "buildings", "units", "users"):
        mapping = tenant.entities[entity]
        gate = window_gate(tenant.window, run_date) if entity == "occupancies" else \
            occupancy_gate(user_ids) if entity == "users" else None
        gate_fields, gate_fn = gate if gate else ((), None)
        names = [f for f in contract.fields(entity) if f in mapping.fields and f != "external_id"]
        columns_of = {n: [] for n in ("external_id", *names)}
        bindings, seen_columns = None, None
        s0 = time.process_time()
        for columns, rows in source.batches(mapping, params):
            if bindings is None or columns != seen_columns:
                bindings, seen_columns = _ColumnBindings(mapping, columns, names, gate_fields, [], {}, {}, {}), columns
            for start in range(0, len(rows), SLICE):
                g = bindings.first(rows[start:start + SLICE], gate_fn)
                m = len(g.kept)
                columns_of["external_id"].extend(g.pick(g.ids))
                for name, _ in bindings.early:
                    columns_of[name].extend(g.pick(g.early[name]))
                for name, get in bindings.getters:
                    columns_of[name].extend(get(g.sub, m))
                gated[entity] = gated.get(entity, 0) + len(g.gated) + len(g.filtered)
        steps[f"map {entity}"] = time.process_time() - s0
        if entity == "occupancies":
            user_ids = set(columns_of["user_id"])
        s0 = time.process_time()
        if entity == "users":
            columns_of["email"] = analyze_emails(columns_of["email"])[0]
            for name in ("phone", "mobile"):
                columns_of[name] = normalize_phones(columns_of[name])
        steps[f"normalise {entity}"] = time.process_time() - s0
        s0 = time.process_time()
        fields = contract.fields(entity)
        values = [columns_of.get(n) or list(repeat(None, len(columns_of["external_id"]))) for n in fields]
        packed[entity] = list(map(marshal.dumps, zip(*values), repeat(0)))
        steps[f"pack {entity}"] = time.process_time() - s0
        kept[entity] = len(columns_of["external_id"])
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    source.close()
    return {"raw_seconds": raw_seconds, "raw_cpu": raw_cpu, "floor_seconds": seconds, "floor_cpu": cpu,
            "ratio_cpu": cpu / raw_cpu, "kept": kept, "excluded": gated,
            "steps": {k: round(v, 3) for k, v in steps.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--size", choices=("S", "M", "L"), default="L",
                        help="a size `python -m benchmarks.run --sizes SIZE` has generated (default L)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.repeat):
        print(json.dumps(floor(args.db, args.size)), flush=True)


if __name__ == "__main__":
    main()
