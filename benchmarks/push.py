"""Push throughput to the import API: the engine's `idwell` target against a plain httpx loop.

    .venv/bin/python -m benchmarks.push [--records 20000] [--rounds 5] [--latency-ms 0]

One sandbox process (idwell-sync sandbox, no faults) serves both clients in the same run:
  plain    a sequential httpx loop that POSTs the prepared batch bodies, nothing else;
  engine   IdwellTarget.apply on the same records as Changes: grouping, batching, Idempotency-Key
           hashing, retries bookkeeping, parallel batches (concurrency 1 and the default 4).
Each trial writes a fresh set of users (its own external_id prefix, so every write is a create),
the clients take turns, and the median of the rounds is reported as records per second with the
ratio engine/plain (the target is at least 0.8). Prints a Markdown table and the machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from engine.config.model import IdwellTarget as IdwellConfig
from engine.config.secrets import Secret
from engine.sandbox.process import sandbox_process
from engine.targets.base import Change
from engine.targets.idwell import open_idwell

TOKEN = "bench-token"
TOKEN_ENV = "IDWELL_BENCH_TOKEN"


def records(prefix: str, n: int) -> list[dict]:
    return [{"external_id": f"{prefix}-{i}", "salutation": "mr" if i % 2 else "ms", "title": None,
             "first_name": f"Vorname{i % 97}", "last_name": f"Nachname {i}", "email": f"{prefix}.{i}@example.org",
             "phone": f"+49301{i:07d}", "mobile": None, "language": "de"} for i in range(n)]


def push_plain(base_url: str, batches: list[list[dict]]) -> None:
    with httpx.Client(base_url=base_url + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        for body in batches:
            r = client.post("users/batch", json={"upsert": body})
            r.raise_for_status()


def push_engine(base_url: str, changes: list[Change], batch_size: int, concurrency: int) -> None:
    os.environ[TOKEN_ENV] = TOKEN
    tenant = SimpleNamespace(id="bench", target=IdwellConfig(
        "idwell", base_url, Secret("${env:%s}" % TOKEN_ENV), batch_size=batch_size, concurrency=concurrency))
    target = open_idwell(tenant)
    try:
        outcomes = target.apply(changes)
    finally:
        target.close()
    refused = [o for o in outcomes if not o.ok]
    if refused:
        raise SystemExit(f"benchmark broken: {len(refused)} records refused, e.g. {refused[0]}")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} CPUs (nproc), {model}, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000, help="users per trial (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="trials per client; the median is reported")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--latency-ms", type=int, default=0, help="latency the sandbox adds to every request")
    args = p.parse_args(argv)
    clients = {"plain httpx loop": None, "engine, concurrency 1": 1, "engine, concurrency 4 (default)": 4}
    seconds: dict[str, list[float]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        extra = ("--latency-ms", str(args.latency_ms)) if args.latency_ms else ()
        with sandbox_process(Path(tmp) / "portal.sqlite", *extra, token=TOKEN) as sb:
            push_plain(sb.base_url, [records("warmup", 200)])
            trial = 0
            for _ in range(args.rounds):
                for name, concurrency in clients.items():
                    trial += 1
                    recs = records(f"t{trial}", args.records)
                    batches = [recs[i:i + args.batch_size] for i in range(0, len(recs), args.batch_size)]
                    changes = [Change("users", "create", r["external_id"], r, key=r["external_id"]) for r in recs]
                    t = time.perf_counter()
                    if concurrency is None:
                        push_plain(sb.base_url, batches)
                    else:
                        push_engine(sb.base_url, changes, args.batch_size, concurrency)
                    seconds[name].append(time.perf_counter() - t)
    plain = statistics.median(seconds["plain httpx loop"])
    print(f"push of {args.records:,} users in batches of {args.batch_size} to one sandbox process"
          f"{f' with {args.latency_ms} ms latency' if args.latency_ms else ''}, median of {args.rounds} rounds\n")
    print("| client | seconds | records/s | ratio to plain |")
    print("| --- | ---: | ---: | ---: |")
    for name in clients:
        s = statistics.median(seconds[name])
        print(f"| {name} | {s:.2f} | {args.records / s:,.0f} | {plain / s:.2f} |")
    print(f"\nmachine: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
