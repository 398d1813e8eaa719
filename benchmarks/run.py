"""Engine speed on the demo ERP at sizes M and L: `plan` against the raw fetch of the same rows.

    python -m benchmarks.run [--sizes M L] [--db sqlite|postgresql] [--repeat N]

For each size: generate the ERP (once, kept in var/bench/), then, each in its own process so
that peak RSS is measured per phase:
  apply    a full run into the local store (not a target: prepares the no-op rerun);
  raw      the mapping's queries fetched with cursor.fetchall() on the same database;
  plan     the engine's plan into an empty portal store (extract, map, filter, normalise,
           resolve, dedup, diff);
  noop     the engine's plan against the filled store, which must also read its whole state.
raw, plan and noop run in rounds (--repeat), one after the other, so that each round's
ratios plan/raw and noop/raw compare runs made within a minute of each other: the speed of a
shared machine drifts more than that from minute to minute. Prints a Markdown table with the
fastest time of each phase, the median of the rounds' ratios, and the peak RSS; then each
round's ratios, the fastest plan and no-op against the fastest raw fetch, and the CPU the whole
machine spent on each (a database server's work included) with the plan's floor on its cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
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
    return write_tenant(doc, "domus-sql")


def write_tenant(doc: dict, mapping: str) -> Path:
    """A benchmark's tenant file in var/bench/tenants/ (the deletion guard off: a benchmark's
    store is its own), with a copy of its mapping beside it."""
    import yaml
    doc["deletion"] = {"max_count": 10_000_000, "max_share": 1.0, "min_source_ratio": 0.0}
    folder = WORK / "tenants"
    folder.mkdir(parents=True, exist_ok=True)
    (WORK / "mappings").mkdir(exist_ok=True)
    shutil.copy(ROOT / "mappings" / f"{mapping}.yaml", WORK / "mappings" / f"{mapping}.yaml")
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
        t, cpu, busy = time.perf_counter(), time.process_time(), _machine_busy()
        rows = 0
        for q in queries:
            cur = raw.cursor()
            cur.execute(q)
            rows += len(cur.fetchall())
            cur.close()
        seconds, cpu, busy = time.perf_counter() - t, time.process_time() - cpu, _machine_busy() - busy
        raw.close()
        return {"seconds": seconds, "cpu": cpu, "machine_cpu": busy, "rows": rows}
    import dataclasses
    from engine.pipeline import prepare, run_tenant
    from engine.state import StateStore
    from engine.targets import open_target
    kind = "empty-" if name == "plan" else ""        # plan: an empty portal store and no memory, each time
    for f in WORK.glob(f"*-{kind}{db}-{size}.sqlite*") if kind else ():
        f.unlink()
    state = StateStore(f"sqlite:///{(WORK / f'state-{kind}{db}-{size}.sqlite').resolve()}")
    if kind:
        path = str((WORK / f"portal-{kind}{db}-{size}.sqlite").resolve())
        tenant = dataclasses.replace(tenant, target=dataclasses.replace(tenant.target, path=path))
    target = open_target(tenant)
    try:
        if name == "apply":
            t = time.perf_counter()
            result = run_tenant(tenant, state, allow_deletes=True, target=target)
            return {"seconds": time.perf_counter() - t, "writes": result.summary["writes"]}
        t, cpu, helpers, busy = time.perf_counter(), time.process_time(), _children_cpu(), _machine_busy()
        prepared = prepare(tenant, target, state)
        seconds, cpu, helpers = time.perf_counter() - t, time.process_time() - cpu, _children_cpu() - helpers
        busy = _machine_busy() - busy
        return {"seconds": seconds, "cpu": cpu + helpers, "helper_cpu": helpers, "machine_cpu": busy,
                "writes": prepared.plan.writes,
                "timings": prepared.timings, "rows": sum(prepared.extracted.values())}
    finally:
        target.close()
        state.close()


class PeakPss:
    """The peak of the memory a phase's process and its helper processes use together, sampled
    five times a second: the sum of each process's PSS (/proc/PID/smaps_rollup), in which a page
    that a forked helper shares with the run counts once, split between them. ru_maxrss counts
    such a page in full in each process, so run + helper RSS overstates a run with a forked
    helper. Sampled from the benchmark's own process, not the phase's: a sampling thread in the
    measured process would take the interpreter lock from the run five times a second (the raw
    fetch, with nothing to sample, would run without that cost)."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakPss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_mb = max(self.peak_mb, sum(map(_pss_kb, [self.pid, *_children_of(self.pid)])) / 1024)


def _children_of(pid: int) -> list[int]:
    """Every descendant of pid (the helpers and their own children), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the engine's second process, the reader of
    the portal's state, the forked comparison)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy since it started (/proc/stat: user, nice,
    system, irq, softirq; not idle, not waiting for I/O, not stolen by the host), or NaN where
    there is no /proc/stat. Around a phase's timed part it takes in what the phase's own CPU
    time cannot: a database server's work for it, in the server's processes (and anything else
    that ran meanwhile)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _child(name: str, db: str, size: str, *, sample_pss: bool = False) -> dict:
    """One phase in a fresh process; its peak RSS is its own (RUSAGE_CHILDREN would give the
    largest of all phases so far). `sample_pss`: the peak PSS too (a run of its own, see
    phase_process)."""
    figures, peak_pss_mb = phase_process([sys.executable, "-m", "benchmarks.run", "--phase", name, "--db", db,
                                          "--sizes", size], sample_pss=sample_pss)
    if sample_pss:
        figures["peak_pss_mb"] = peak_pss_mb
    return figures


def phase_process(command: list[str], *, sample_pss: bool = True) -> tuple[dict, float]:
    """Runs a phase's command in a fresh process: (the JSON object its last line prints, the peak
    PSS of it and its helpers in MB (PeakPss), 0.0 without `sample_pss`). Sampling costs CPU:
    each sample walks the page tables of every process of the phase, about 6 ms for a process
    of 850 MB on a 2-core machine, five times a second, on a core the phase would otherwise
    have; a phase that keeps both cores busy (plan, no-op) loses that time, the raw fetch (one
    core) does not. So main() times the rounds without it and takes the memory from a run of
    its own."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=os.getcwd()) as proc:
        try:
            if sample_pss:
                with PeakPss(proc.pid) as pss:
                    out, err = proc.communicate()
            else:
                out, err = proc.communicate()
        except BaseException:                 # interrupted: the phase does not run on alone
            proc.kill()
            raise
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, command, out, err)
    figures = json.loads(out.strip().splitlines()[-1])
    # a phase shorter than the sampling interval is never sampled: its own PSS at its end stands in
    return figures, max(pss.peak_mb, figures.get("end_pss_mb", 0.0)) if sample_pss else 0.0


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
    for f in WORK.glob(f"*-{db}-{size}.sqlite*"):
        f.unlink()


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor() or "unknown CPU")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, Python {platform.python_version()} ({interpreter()})"


def interpreter() -> str:
    """The interpreter the phases run on, by its file: its build moves the engine's figures by
    more than a tenth (docs/benchmarks.md, "The interpreter"), the raw fetch's far less."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    # by what is loaded, not by sysconfig: Debian's says Py_ENABLE_SHARED for an executable that has
    # the interpreter linked in
    shared = " with a shared libpython" if any("libpython" in line for line in _mapped_files()) else ""
    return base + shared


def _mapped_files() -> list[str]:
    try:
        return Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []


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
        figures["end_pss_mb"] = _pss_kb(os.getpid()) / 1024          # for a phase too short to be sampled
        figures["helper_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # its largest child
        print(json.dumps(figures))
        return 0
    rows = []
    for size in args.sizes:
        _prepare_size(args.db, size)
        apply_ = _child("apply", args.db, size)
        rounds = []
        for _ in range(args.repeat):
            rounds.append({name: _child(name, args.db, size) for name in ("raw", "plan", "noop")})
            assert rounds[-1]["noop"]["writes"] == 0, "the no-op rerun planned writes"
            print(json.dumps({"size": size, **rounds[-1]}), file=sys.stderr)
        best = {name: min((r[name] for r in rounds), key=lambda f: f["seconds"]) for name in ("raw", "plan", "noop")}
        for name in ("plan", "noop"):         # the memory: a run of each, sampled, not timed
            sampled = _child(name, args.db, size, sample_pss=True)
            best[name] = {**best[name], "peak_pss_mb": sampled["peak_pss_mb"],
                          "peak_rss_mb": max(r[name]["peak_rss_mb"] for r in [*rounds, {name: sampled}]),
                          "helper_rss_mb": max(r[name]["helper_rss_mb"] for r in [*rounds, {name: sampled}])}
            print(json.dumps({"size": size, "memory": name, **sampled}), file=sys.stderr)
        best["apply"] = apply_
        ratios = {name: sorted(r[name]["seconds"] / r["raw"]["seconds"] for r in rounds) for name in ("plan", "noop")}
        rows.append((size, best, ratios))
    print(f"\nMachine: {machine()}; database: {args.db}; command: python -m benchmarks.run --db {args.db} "
          f"--sizes {' '.join(args.sizes)} --repeat {args.repeat}\n")
    print("Times are wall clock, the fastest of the rounds, CPU time in parentheses (the engine's own processes "
          "included: the second process, the reader of the portal's state, the forked comparison); ratios: the "
          "median of the rounds' ratios against the raw fetch of the same round (targets on L: plan <= 3.0x, "
          "no-op rerun <= 4.0x, peak RSS <= 1.5 GB). Peak RSS: the run's process, plus its largest helper process; "
          "in parentheses the peak of the PSS of the run and all its helpers together, sampled five times a "
          "second in a run of its own after the rounds, which is not timed (a page a forked helper shares "
          "with the run counts once).\n")
    print("| size | rows | raw fetch | plan (empty store) | ratio | no-op rerun | ratio | apply (local store) | peak RSS plan / no-op (PSS) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, b, ratios in rows:
        raw, plan, noop, apply_ = b["raw"], b["plan"], b["noop"], b["apply"]
        print(f"| {size} | {raw['rows']:,} | {_time(raw)} | {_time(plan)} | {_median(ratios['plan'])} | {_time(noop)} | "
              f"{_median(ratios['noop'])} | {apply_['seconds']:.1f}s ({apply_['writes']:,} writes) | "
              f"{_rss(plan)} / {_rss(noop)} MB |")
    print()
    for size, b, ratios in rows:
        print(f"Rounds, size {size}: plan/raw " + " ".join(f"{r:.2f}x" for r in ratios["plan"]) +
              "; no-op/raw " + " ".join(f"{r:.2f}x" for r in ratios["noop"]))
        # a host whose speed moves between the phases of a round moves its ratio; the fastest run
        # of each phase is the one the host slowed least
        print(f"Fastest against fastest, size {size}: plan {b['plan']['seconds'] / b['raw']['seconds']:.2f}x; "
              f"no-op {b['noop']['seconds'] / b['raw']['seconds']:.2f}x")
        print(_machine_line(size, b, os.cpu_count() or 1))
    return 0


def _machine_line(size: str, best: dict, cores: int) -> str:
    """The CPU the whole machine spent on the fastest round of each phase, and what of it ran
    outside the phase's own processes (a database server's work: PostgreSQL's backends fetch for
    the raw fetch and the engine alike, on the same cores); with it the plan's floor on these
    cores: its machine CPU spread evenly over all of them, against the raw fetch."""
    raw, plan, noop = best["raw"], best["plan"], best["noop"]
    if any(math.isnan(f.get("machine_cpu", math.nan)) for f in (raw, plan, noop)):
        return f"Machine CPU, size {size}: not measured (no /proc/stat)"
    parts = ", ".join(f"{name} {f['machine_cpu']:.2f}s ({max(0.0, f['machine_cpu'] - f['cpu']):.2f}s outside "
                      "its processes)" for name, f in (("raw", raw), ("plan", plan), ("no-op", noop)))
    floor = plan["machine_cpu"] / cores
    return (f"Machine CPU of the fastest runs, size {size}: {parts}; the plan's machine CPU spread evenly over "
            f"{cores} cores: {floor:.2f}s, {floor / raw['seconds']:.2f}x the fastest raw fetch")


def _median(values: list[float]) -> str:
    n = len(values)
    middle = values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2
    return f"{middle:.2f}x"


def _rss(figures: dict) -> str:
    return f"{figures['peak_rss_mb']:.0f}+{figures.get('helper_rss_mb', 0):.0f} ({figures.get('peak_pss_mb', 0):.0f})"


def _time(figures: dict) -> str:
    return f"{figures['seconds']:.2f}s ({figures['cpu']:.2f}s)"


if __name__ == "__main__":
    sys.exit(main())
