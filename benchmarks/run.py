"""Engine speed on the demo ERP at sizes M and L: `plan` against the raw fetch of the same rows.

    python -m benchmarks.run [--sizes M L] [--db sqlite|postgresql] [--repeat N]

For each size: generate the ERP (once, kept in var/bench/), then, each in its own process so
that peak RSS is measured per phase:
  raw      the mapping's queries fetched with cursor.fetchall() on the same database;
  plan     the engine's plan into an empty portal store (extract, map, filter, normalise,
           resolve, dedup, diff);
  apply    a full run into the local store (not a target: prepares the no-op rerun);
  noop     the engine's plan again, which must also read the portal's whole state.
Prints a Markdown table with the ratios plan/raw and noop/raw and the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("var/bench")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _source_url(db: str, size: str) -> str:
    if db == "sqlite":
        return f"sqlite:///{(WORK / f'erp-{size}.sqlite').resolve()}"
    return f"{PG_URL}?options=-csearch_path%3Dbench_{size.lower()}"


def _tenant_file(db: str, size: str) -> Path:
    """The demo tenant with its source and target pointed at the benchmark's files."""
    import yaml
    text = (ROOT / "tenants" / "demo.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    doc["id"] = f"bench-{db}-{size.lower()}"
    doc["source"] = {"type": "sql", "url": _source_url(db, size), "batch_size": 10000}
    doc["target"] = {"type": "local", "path": str((WORK / f"portal-{db}-{size}.sqlite").resolve())}
    doc["deletion"] = {"max_count": 10_000_000, "max_share": 1.0, "min_source_ratio": 0.0}
    folder = WORK / "tenants"
    folder.mkdir(parents=True, exist_ok=True)
    (WORK / "mappings").mkdir(exist_ok=True)
    shutil.copy(ROOT / "mappings" / "domus-sql.yaml", WORK / "mappings" / "domus-sql.yaml")
    path = folder / f"{doc['id']}.yaml"
    path.write_text("# yaml-language-server: $schema=../../../schema/tenant.schema.json\n"
                    + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def phase(name: str, db: str, size: str) -> dict:
    """Runs in a child process; prints one JSON line with its figures."""
    from engine.config import load_tenant
    tenant = load_tenant(_tenant_file(db, size))
    if name == "raw":
        import yaml
        from engine.sources.connect import create_sql_engine
        queries = [e["query"] for e in yaml.safe_load((ROOT / "mappings" / "domus-sql.yaml").read_text())["entities"].values()]
        engine = create_sql_engine(tenant.source)
        raw = engine.raw_connection()
        t, cpu = time.perf_counter(), time.process_time()
        rows = 0
        for q in queries:
            cur = raw.cursor()
            cur.execute(q)
            rows += len(cur.fetchall())
            cur.close()
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
        raw.close()
        return {"seconds": seconds, "cpu": cpu, "rows": rows}
    from engine.pipeline import prepare, run_tenant
    from engine.state import StateStore
    from engine.targets import open_target
    state = StateStore(f"sqlite:///{(WORK / f'state-{db}-{size}.sqlite').resolve()}")
    target = open_target(tenant)
    try:
        if name == "apply":
            t = time.perf_counter()
            result = run_tenant(tenant, state, allow_deletes=True, target=target)
            return {"seconds": time.perf_counter() - t, "writes": result.summary["writes"]}
        t, cpu, helpers = time.perf_counter(), time.process_time(), _children_cpu()
        prepared = prepare(tenant, target, state)
        seconds, cpu, helpers = time.perf_counter() - t, time.process_time() - cpu, _children_cpu() - helpers
        return {"seconds": seconds, "cpu": cpu + helpers, "helper_cpu": helpers, "writes": prepared.plan.writes,
                "timings": prepared.timings, "rows": sum(prepared.extracted.values())}
    finally:
        target.close()
        state.close()


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the engine's second process for the users,
    the reader of the portal's state)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _child(name: str, db: str, size: str) -> dict:
    """One phase in a fresh process; its peak RSS is its own (RUSAGE_CHILDREN would give the
    largest of all phases so far)."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.run", "--phase", name, "--db", db, "--sizes", size],
                         capture_output=True, text=True, check=True, cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _prepare_size(db: str, size: str) -> None:
    from engine.demo import generate
    WORK.mkdir(parents=True, exist_ok=True)
    marker = WORK / f"erp-{db}-{size}.done"
    if not marker.exists():
        print(f"generating size {size} into {db} ...", file=sys.stderr)
        t = time.perf_counter()
        generate(_source_url(db, size), size=size, seed=42, schema=None if db == "sqlite" else f"bench_{size.lower()}")
        print(f"  {time.perf_counter() - t:.1f}s", file=sys.stderr)
        marker.touch()
    for f in WORK.glob(f"*-{db}-{size}.sqlite"):
        f.unlink()


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor() or "unknown CPU")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["M", "L"], choices=["S", "M", "L"])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=1, help="runs of raw/plan/noop; the best is reported")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        figures = phase(args.phase, args.db, args.sizes[0])
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # this phase's own
        figures["helper_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # its largest child
        print(json.dumps(figures))
        return 0
    rows = []
    for size in args.sizes:
        _prepare_size(args.db, size)
        best = {}
        for name in ("raw", "plan"):
            best[name] = min((_child(name, args.db, size) for _ in range(args.repeat)), key=lambda f: f["seconds"])
        best["apply"] = _child("apply", args.db, size)
        best["noop"] = min((_child("noop", args.db, size) for _ in range(args.repeat)), key=lambda f: f["seconds"])
        assert best["noop"]["writes"] == 0, "the no-op rerun planned writes"
        rows.append((size, best))
        print(json.dumps({"size": size, **best}), file=sys.stderr)
    print(f"\nMachine: {machine()}; database: {args.db}; command: python -m benchmarks.run --db {args.db} "
          f"--sizes {' '.join(args.sizes)} --repeat {args.repeat}\n")
    print("Times are wall clock, CPU time in parentheses (the engine's own processes included: the second "
          "process that extracts the users, the reader of the portal's state); ratios against the raw fetch "
          "(targets on L: plan <= 3.0x, no-op rerun <= 4.0x, peak RSS <= 1.5 GB). Peak RSS: the run's process, "
          "plus its largest helper process.\n")
    print("| size | rows | raw fetch | plan (empty store) | ratio | no-op rerun | ratio | apply (local store) | peak RSS plan / no-op |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, b in rows:
        raw, plan, noop, apply_ = b["raw"], b["plan"], b["noop"], b["apply"]
        print(f"| {size} | {raw['rows']:,} | {_time(raw)} | {_time(plan)} | {_ratio(plan, raw)} | {_time(noop)} | "
              f"{_ratio(noop, raw)} | {apply_['seconds']:.1f}s ({apply_['writes']:,} writes) | "
              f"{_rss(plan)} / {_rss(noop)} MB |")
    return 0


def _rss(figures: dict) -> str:
    return f"{figures['peak_rss_mb']:.0f}+{figures.get('helper_rss_mb', 0):.0f}"


def _time(figures: dict) -> str:
    return f"{figures['seconds']:.2f}s ({figures['cpu']:.2f}s)"


def _ratio(figures: dict, raw: dict) -> str:
    return f"{figures['seconds'] / raw['seconds']:.2f}x ({figures['cpu'] / raw['cpu']:.2f}x)"


if __name__ == "__main__":
    sys.exit(main())
