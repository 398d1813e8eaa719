"""Runs killed with kill -9 in the middle: one whose lock is taken and whose row in the run history
is written (as run_tenant does), then nothing cleaned up; a real run killed while it applies its plan."""
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


KILLED_WHILE_APPLYING = """
import os, signal, sys
from engine.config import load_tenant
from engine.demo import REFERENCE_DATE
from engine.pipeline import run_tenant
from engine.state import StateStore
from engine.targets.local import LocalStore

class KilledWhileApplying(LocalStore):
    def apply(self, changes, progress=None):
        super().apply([c for c in changes if f"{c.entity}:{c.external_id}" in lands])
        os.kill(os.getpid(), signal.SIGKILL)

tenant, lands = load_tenant(sys.argv[1]), set(sys.argv[2:])
run_tenant(tenant, StateStore(tenant.state_url), run_date=REFERENCE_DATE,
           target=KilledWhileApplying(tenant.target.path, tenant=tenant.id))
"""


def kill_while_applying(tenant_file, lands=()) -> None:
    """Runs the tenant of `tenant_file` (its state_url, its local portal store) in a process of
    its own, as of the demo's reference date, and kills it with kill -9 while it applies its plan:
    once the portal wrote the changes of the records `lands` names ("users:4711"), and no other.
    The run noted its writes ahead; it records nothing else."""
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_APPLYING, str(tenant_file), *lands],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
