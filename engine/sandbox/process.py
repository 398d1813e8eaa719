"""Run `idwell-sync sandbox` as a child process: for tests, benchmarks and scripted rehearsals.

    with sandbox_process(tmp_path / "portal.sqlite", "--fail-429", "0.2") as sb:
        sb.base_url      # http://127.0.0.1:PORT/import/v1
        sb.store()       # a PortalStore on the same file, to look or to edit as a person would

The child binds a free port (--port 0) and prints its URL; this waits for that line (bounded),
and terminates the child afterwards (SIGTERM, then SIGKILL if it does not stop).
"""
from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from engine.targets._store_portal import PortalStore

_URL = re.compile(r"(http://127\.0\.0\.1:\d+)(/import/v1)")
START_TIMEOUT = 30.0


@dataclass
class SandboxProcess:
    proc: subprocess.Popen
    root_url: str
    base_url: str
    data: Path
    write_log: Path
    stderr: Path
    token: str

    def store(self) -> PortalStore:
        return PortalStore(self.data)


@contextmanager
def sandbox_process(data: Path | str, *args: str, token: str = "sandbox",
                    extra_tokens: tuple[str, ...] = ()) -> Iterator[SandboxProcess]:
    data = Path(data)
    write_log = data.with_name(data.stem + ".writes.jsonl")
    stderr = data.with_name(data.stem + ".sandbox.log")
    data.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "engine", "sandbox", "--port", "0", "--data", str(data),
           "--write-log", str(write_log), "--token", token, *(f for t in extra_tokens for f in ("--token", t)), *args]
    with stderr.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        root, base = _wait_for_url(proc, stderr)
        yield SandboxProcess(proc, root, base, data, write_log, stderr, token)
    finally:
        _stop(proc)


def _wait_for_url(proc: subprocess.Popen, stderr: Path) -> tuple[str, str]:
    deadline = time.monotonic() + START_TIMEOUT
    buffered = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            m = _URL.search(buffered.decode("utf-8", "replace"))
            if m:
                return m.group(1), m.group(1) + m.group(2)
        elif proc.poll() is not None:
            break
    _stop(proc)
    raise RuntimeError(f"the sandbox did not start within {START_TIMEOUT:.0f}s (exit {proc.returncode}); "
                       f"its output: {buffered.decode('utf-8', 'replace')!r} {stderr.read_text()[-2000:]!r}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()
