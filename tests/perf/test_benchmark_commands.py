"""The benchmark commands of docs/benchmarks.md run, on size S (their figures are not judged
here: tests never assert timings). A change to the engine's internals broke
`python -m benchmarks.floor` once without any test noticing."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_and_floor_report_their_figures_on_size_s(tmp_path):
    done = _bench("benchmarks.run", "--sizes", "S", "--repeat", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.startswith("{")]
    rounds = [line for line in lines if "memory" not in line]
    assert len(rounds) == 1
    figures = rounds[0]
    # the memory comes from runs of their own, sampled, not from the timed rounds
    memory = {line["memory"]: line for line in lines if "memory" in line}
    assert set(memory) == {"plan", "noop"} and all(m["peak_pss_mb"] > 0 for m in memory.values())
    assert "peak_pss_mb" not in figures["plan"] and "peak_pss_mb" not in figures["noop"]
    assert figures["raw"]["rows"] == figures["plan"]["rows"] > 0
    assert figures["plan"]["writes"] > 0             # into an empty store
    assert figures["noop"]["writes"] == 0            # against the store the apply filled
    table_row = next(line for line in done.stdout.splitlines() if line.startswith("| S |"))
    assert f"{figures['plan']['writes']:,} writes" in table_row
    assert f"({memory['plan']['peak_pss_mb']:.0f}) / " in table_row
    fastest = next(line for line in done.stdout.splitlines() if line.startswith("Fastest against fastest, size S"))
    assert f"plan {figures['plan']['seconds'] / figures['raw']['seconds']:.2f}x" in fastest   # one round: its own
    assert (tmp_path / "var" / "bench" / "erp-S.sqlite").exists()
    # the interpreter's build moves the figures by a sixth: the machine line names it by its file
    machine = next(line for line in done.stdout.splitlines() if line.startswith("Machine: "))
    assert f"Python {platform.python_version()} ({os.path.realpath(sys._base_executable)}" in machine
    # the whole machine's CPU over each timed part, a database server's work included; the plan's
    # floor is its machine CPU spread over the cores, against the raw fetch
    cpu_line = next(line for line in done.stdout.splitlines() if line.startswith("Machine CPU of the fastest runs, size S"))
    plan = figures["plan"]
    assert figures["raw"]["machine_cpu"] >= 0 and plan["machine_cpu"] > 0 and figures["noop"]["machine_cpu"] > 0
    assert f"plan {plan['machine_cpu']:.2f}s (" in cpu_line
    spread = plan["machine_cpu"] / os.cpu_count()
    assert cpu_line.endswith(f"{spread:.2f}s, {spread / figures['raw']['seconds']:.2f}x the fastest raw fetch")

    floor = _bench("benchmarks.floor", "--size", "S", "--repeat", "1", cwd=tmp_path)
    assert floor.returncode == 0, floor.stderr[-2000:]
    result = json.loads(floor.stdout.strip().splitlines()[-1])
    assert set(result["kept"]) == {"buildings", "units", "users", "occupancies"}
    assert all(result["kept"][e] > 0 for e in result["kept"])
    # every row the raw fetch read is kept or excluded by the floor's mapping, gates and filters
    assert sum(result["kept"].values()) + sum(result["excluded"].values()) == figures["raw"]["rows"]


def test_api_benchmark_reports_its_figures_on_size_s(tmp_path):
    """benchmarks.api serves the demo ERP through the Cloud Connect stand-in and reads it twice:
    with a plain loop over the pages and with the engine's plan (docs/benchmarks.md, "Read from
    the Cloud Connect API")."""
    done = _bench("benchmarks.api", "--size", "S", "--repeat", "1", "--latency-ms", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    rounds = [line for line in lines if "memory" not in line]
    assert len(rounds) == 1
    plain, plan = rounds[0]["plain"], rounds[0]["plan"]
    # the memory comes from a run of each client of its own, sampled, not from the timed round
    memory = {line["memory"]: line for line in lines if "memory" in line}
    assert set(memory) == {"plain", "plan"} and all(m["peak_pss_mb"] > 0 for m in memory.values())
    assert memory["plain"]["records"] == memory["plan"]["records"] == plan["records"]
    assert plain["records"] == plan["records"] > 0   # the same records, read by both
    assert plan["writes"] > 0                        # into an empty store
    # the pages paged by number are read twice, so the plan asks for more than the plain loop
    assert plan["requests"] > plain["requests"] > 0
    assert plan["pages_twice"] > 0 and plan["pages_three_times"] >= 0
    for figures in (plain, plan):
        assert {"seconds", "cpu", "server_cpu", "peak_rss_mb"} <= figures.keys()
        assert "peak_pss_mb" not in figures
    table_row = next(line for line in done.stdout.splitlines() if line.startswith("| S |"))
    assert f"{plain['records']:,} / {plan['records']:,}" in table_row
    assert f"{plain['requests']:,} / {plan['requests']:,}" in table_row
    assert f"({memory['plain']['peak_pss_mb']:.0f}) / " in table_row
    assert table_row.rstrip(" |").endswith(f"({memory['plan']['peak_pss_mb']:.0f}) MB")
