"""Engine speed reading the demo ERP through the DOMUS Cloud Connect API: `plan` against a plain
HTTP loop over the same pages.

    python -m benchmarks.api [--size M|L] [--latency-ms N] [--repeat N]

The demo ERP of the size (generated once into var/bench/, the file benchmarks.run reads) is
served by the Cloud Connect stand-in (engine.demo.cloud_connect, which `idwell-sync erp-sandbox`
serves too) in a process of its own on
127.0.0.1, which waits --latency-ms before answering each request, as a network would (the pages
paged by number answered from rows read once at the start: serve says why). Then,
each in a fresh process, so that peak RSS is measured per phase:
  plain  the simplest client: an httpx loop that GETs each endpoint of mappings/domus-api.yaml
         page by page once (the same page size, and the stand-in's cursor for /persons) and
         parses the JSON, until a short page;
  plan   the engine's plan (engine.pipeline.prepare) of a tenant with mappings/domus-api.yaml
         against the stand-in, into an empty local store: the API source reads the pages by page
         number twice (and a few a third time: engine.sources._readings), then maps, filters,
         normalises, dedups and diffs.
The two run in rounds (--repeat), one after the other, so that each round's ratio plan/plain
compares runs made within a minute of each other. The stand-in counts the requests of each phase
by endpoint, from which the pages read twice and three times follow. Prints a JSON line per
round (stderr) and a Markdown table (stdout): the fastest time of each phase, the median of the
rounds' ratios, the peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from benchmarks.run import ROOT, WORK, _children_cpu, _median, _pss_kb, _source_url, machine, phase_process, write_tenant

KEY_ENV = "BENCH_CC_KEY"
KEY = "bench-key"                   # the stand-in's API key: a benchmark's, not a secret
PAGE_SIZE = 500                     # the API source's default page_size


def _mapping() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "mappings" / "domus-api.yaml").read_text(encoding="utf-8"))


def _tenant_file(size: str, url: str) -> Path:
    """The demo tenant reading the stand-in at `url` through mappings/domus-api.yaml."""
    import yaml
    doc = yaml.safe_load((ROOT / "tenants" / "demo.yaml").read_text(encoding="utf-8"))
    doc["id"] = f"bench-api-{size.lower()}"
    doc["mapping"] = "domus-api"
    doc["source"] = {"type": "api", "base_url": url, "page_size": PAGE_SIZE,
                     "auth": {"type": "api_key", "header": "X-API-Key", "key": "${env:" + KEY_ENV + "}"}}
    doc["overrides"]["entities"]["buildings"]["filters"][0]["field"] = "client"    # the API's name of Mandant
    doc["target"] = {"type": "local", "path": str((WORK / f"portal-api-{size}.sqlite").resolve())}
    return write_tenant(doc, "domus-api")


# -- the stand-in's process -------------------------------------------------------------------

def serve(database: str, latency_ms: float) -> int:
    """Serves `database` through the stand-in until stdin ends; prints its URL first. A line
    `count` on stdin answers the requests since the last `count` by endpoint, and the CPU
    seconds the stand-in spent meanwhile, as a JSON line.

    The pages of the endpoints paged by number come from the rows of each endpoint's query, read
    once at the start (the ERP does not change here): the stand-in asks SQLite for each page with
    LIMIT/OFFSET, which steps through every row before the page, so that at size L its own SQL
    (minutes per reading of /contracts/parties) would outweigh both clients. The answers are the
    stand-in's all the same (its handler, shapes, key check and latency)."""
    import sqlite3
    from urllib.parse import urlparse
    from engine.demo.cloud_connect import QUERIES, CloudConnect

    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    snapshot = {path: con.execute(sql).fetchall() for path, (sql, _) in QUERIES.items() if path != "/persons"}
    con.close()

    class Counted(CloudConnect):
        by_path: Counter = Counter()

        def handle(self, h):
            with self._lock:
                self.by_path[urlparse(h.path).path.removeprefix("/api/v1")] += 1
            super().handle(h)

        def page_rows(self, con, path, page, size):
            return snapshot[path][(page - 1) * size:page * size]

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with Counted(database, KEY, latency=latency_ms / 1000) as cc:
        print(cc.url, flush=True)
        since = cpu()
        for line in sys.stdin:
            if line.strip() == "count":
                with cc._lock:
                    counts, cc.by_path = dict(cc.by_path), Counter()
                now = cpu()
                print(json.dumps({"requests": counts, "cpu": now - since}), flush=True)
                since = now
    return 0


class Server:
    """The stand-in in its own process (serve), while in a `with` block."""

    def __init__(self, database: Path, latency_ms: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.api", "--serve", str(database),
                                      "--latency-ms", str(latency_ms)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.proc.kill()
            raise RuntimeError(f"the Cloud Connect stand-in did not start (it said {self.url!r})")

    def count(self) -> dict:
        """The requests answered since the last count, by endpoint (`requests`), and the CPU
        seconds the stand-in spent meanwhile (`cpu`)."""
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the phases, each in a process of its own ---------------------------------------------------

def plain(url: str) -> dict:
    """Every page of the mapping's endpoints, once, with httpx; the JSON parsed, the records counted."""
    import httpx
    entities = _mapping()["entities"].values()
    records = requests = 0
    pages: dict[str, int] = {}          # endpoint -> pages with records
    t, cpu = time.perf_counter(), time.process_time()
    with httpx.Client(base_url=url + "/", headers={"X-API-Key": KEY, "Accept": "application/json"}) as client:
        for entity in entities:
            pager, endpoint = entity["paginator"], entity["endpoint"].lstrip("/")
            page, cursor = 1, None
            while True:
                if pager["type"] == "page_number":
                    params = {pager["page_param"]: page, pager["size_param"]: PAGE_SIZE}
                else:
                    params = {pager["cursor_param"]: cursor} if cursor else {}
                body = client.get(endpoint, params=params).raise_for_status().json()
                requests += 1
                data = body["data"]
                records += len(data)
                if data:
                    pages[entity["endpoint"]] = pages.get(entity["endpoint"], 0) + 1
                if pager["type"] == "page_number":
                    if len(data) < PAGE_SIZE:
                        break
                    page += 1
                else:
                    cursor = body["meta"]["nextCursor"]
                    if not cursor:
                        break
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "records": records,
            "requests": requests, "pages": pages}


def plan(size: str, url: str) -> dict:
    """The engine's plan of the tenant into an empty local store, with no memory of earlier runs."""
    import logging

    from engine.config import load_tenant
    from engine.pipeline import prepare
    from engine.state import StateStore
    from engine.targets import open_target
    os.environ[KEY_ENV] = KEY
    tenant = load_tenant(_tenant_file(size, url))
    for f in WORK.glob(f"*-api-{size}.sqlite*"):
        f.unlink()
    third: dict[str, int] = {}          # entity -> pages read a third time, as the source logs it

    class Third(logging.Handler):
        def emit(self, record):
            if "a third time" in str(record.msg):
                third[record.args[1]] = record.args[2]
    log = logging.getLogger("engine.sources.api")
    log.addHandler(Third(logging.INFO))
    log.setLevel(logging.INFO)
    state = StateStore(f"sqlite:///{(WORK / f'state-api-{size}.sqlite').resolve()}")
    target = open_target(tenant)
    try:
        t, cpu, helpers = time.perf_counter(), time.process_time(), _children_cpu()
        prepared = prepare(tenant, target, state)
        seconds, cpu, helpers = time.perf_counter() - t, time.process_time() - cpu, _children_cpu() - helpers
    finally:
        target.close()
        state.close()
    return {"seconds": seconds, "cpu": cpu + helpers, "writes": prepared.plan.writes,
            "records": sum(prepared.extracted.values()), "third_logged": third, "timings": prepared.timings}


def _child(name: str, size: str, url: str, *, sample_pss: bool = False) -> dict:
    """One client in a fresh process; `sample_pss`: its peak PSS too, from a run of its own that
    is not timed (sampling walks the client's page tables five times a second, on the core the
    stand-in answers on: benchmarks.run.phase_process)."""
    figures, peak_pss_mb = phase_process([sys.executable, "-m", "benchmarks.api", "--phase", name,
                                          "--size", size, "--url", url], sample_pss=sample_pss)
    return {**figures, "peak_pss_mb": peak_pss_mb} if sample_pss else figures


def _prepare_size(size: str) -> Path:
    """The demo ERP of the size, generated once (the file and marker benchmarks.run uses)."""
    from engine.demo import generate
    WORK.mkdir(parents=True, exist_ok=True)
    marker = WORK / f"erp-sqlite-{size}.done"
    if not marker.exists():
        print(f"generating size {size} ...", file=sys.stderr)
        t = time.perf_counter()
        generate(_source_url("sqlite", size), size=size, seed=42)
        print(f"  {time.perf_counter() - t:.1f}s", file=sys.stderr)
        marker.touch()
    return (WORK / f"erp-{size}.sqlite").resolve()


def _round(server: Server, size: str) -> dict:
    """plain, then plan, with the stand-in's count of each one's requests by endpoint."""
    server.count()
    loop = _child("plain", size, server.url)
    counted = server.count()
    loop["by_endpoint"], loop["server_cpu"] = counted["requests"], counted["cpu"]
    engine = _child("plan", size, server.url)
    counted = server.count()
    engine["by_endpoint"], engine["server_cpu"] = counted["requests"], counted["cpu"]
    engine["requests"] = sum(engine["by_endpoint"].values())
    # an endpoint paged by number is read until an empty page: its pages with records, then one more
    twice = {e: n for e, n in loop["pages"].items()
             if next(x for x in _mapping()["entities"].values() if x["endpoint"] == e)["paginator"]["type"]
             == "page_number"}
    engine["pages_twice"] = sum(twice.values())
    engine["pages_three_times"] = sum(engine["by_endpoint"].get(e, 0) - 2 * (n + 1) for e, n in twice.items())
    return {"size": size, "plain": loop, "plan": engine}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="M", choices=["S", "M", "L"])
    parser.add_argument("--latency-ms", type=float, default=0.0, help="waited by the API before each answer")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of plain and plan; the best is reported")
    parser.add_argument("--phase", choices=["plain", "plan"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.latency_ms)
    if args.phase:
        figures = plain(args.url) if args.phase == "plain" else plan(args.size, args.url)
        figures["peak_rss_mb"] = _peak_rss_mb()
        figures["end_pss_mb"] = _pss_kb(os.getpid()) / 1024          # for a run too short to be sampled
        print(json.dumps(figures))
        return 0
    database = _prepare_size(args.size)
    rounds = []
    with Server(database, args.latency_ms) as server:
        for _ in range(args.repeat):
            rounds.append(_round(server, args.size))
            print(json.dumps(rounds[-1]), file=sys.stderr)
        sampled = {}
        for name in ("plain", "plan"):      # the memory: a run of each, sampled, not timed
            sampled[name] = _child(name, args.size, server.url, sample_pss=True)
            server.count()
            print(json.dumps({"size": args.size, "memory": name, **sampled[name]}), file=sys.stderr)
    load = os.getloadavg()
    best = {name: min((r[name] for r in rounds), key=lambda f: f["seconds"]) for name in ("plain", "plan")}
    best = {name: {**figures, "peak_pss_mb": sampled[name]["peak_pss_mb"],
                   "peak_rss_mb": max(figures["peak_rss_mb"], sampled[name]["peak_rss_mb"])}
            for name, figures in best.items()}
    ratios = sorted(r["plan"]["seconds"] / r["plain"]["seconds"] for r in rounds)
    loop, engine = best["plain"], best["plan"]
    print(f"\nMachine: {machine()}; load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; command: "
          f"python -m benchmarks.api --size {args.size} --latency-ms {args.latency_ms:g} --repeat {args.repeat}\n")
    print("Times are wall clock, the fastest of the rounds; in parentheses the CPU seconds of the client's "
          "process + those of the stand-in's process meanwhile. The plan's extract: reading the pages (requests, "
          "JSON, the readings) up to the records handed on, mapping included where it overlaps. Ratio: the median "
          "of the rounds' plan/plain. Peak RSS of the client's process, in parentheses its PSS sampled five "
          "times a second in a run of its own after the rounds, which is not timed.\n")
    print("| size | latency | records (plain / plan) | plain loop | plan (empty store) | of which extract | "
          "requests plain / plan | pages read twice / three times | ratio | peak RSS plain / plan (PSS) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.size} | {args.latency_ms:g} ms | {loop['records']:,} / {engine['records']:,} | {_time(loop)} | "
          f"{_time(engine)} | {engine['timings']['extract']:.2f}s | {loop['requests']:,} / {engine['requests']:,} | "
          f"{engine['pages_twice']:,} / {engine['pages_three_times']:,} | {_median(ratios)} | "
          f"{loop['peak_rss_mb']:.0f} ({loop['peak_pss_mb']:.0f}) / {engine['peak_rss_mb']:.0f} "
          f"({engine['peak_pss_mb']:.0f}) MB |")
    print("\nRounds: plan/plain " + " ".join(f"{r:.2f}x" for r in ratios))
    return 0


def _peak_rss_mb() -> float:
    """This process's peak RSS since it started its program (VmHWM): ru_maxrss would keep that of
    the benchmark's process it was forked from, which generated the ERP."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(figures: dict) -> str:
    return f"{figures['seconds']:.2f}s ({figures['cpu']:.2f}s + {figures['server_cpu']:.2f}s)"


if __name__ == "__main__":
    sys.exit(main())
