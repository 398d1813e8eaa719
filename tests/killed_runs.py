"""A run killed with kill -9 in the middle: its lock taken and its row in the run history written
(as run_tenant does), then nothing cleaned up."""
from __future__ import annotations

import subprocess
import sys

RUN = """
import sys
from engine.state import StateStore
store = StateStore(sys.argv[1])
with store.lock(sys.argv[2]):            # as run_tenant does: the lock, then the run's row
    store.start_run(sys.argv[2])
    print("running", flush=True)
    sys.stdin.readline()
"""


def kill_a_running_run(state_url: str, tenant: str) -> int:
    """Starts a run of `tenant` in a process of its own, kills it with kill -9 once it runs;
    returns the pid it had (its lock names it)."""
    killed = subprocess.Popen([sys.executable, "-c", RUN, state_url, tenant], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "running", killed.stderr.read()
    killed.kill()
    killed.wait(timeout=30)
    return killed.pid
