"""`idwell-sync sandbox`: a local server of the import API (engine/contract/idwell-import-api.yaml).

It serves the local portal store (engine.targets._store_portal.PortalStore) over real HTTP, so a
tenant can rehearse its first sync, and the `idwell` target can be tested, against the same rules
the local target enforces. See docs/sandbox.md.

    server = start_sandbox(data="var/sandbox/portal.sqlite", tokens=["sandbox"])
    server.base_url          # http://127.0.0.1:PORT/import/v1
    server.serve_forever()
"""
from __future__ import annotations

from pathlib import Path

from engine.sandbox._api import BASE_PATH, BATCH_MAX, ImportApi, parse_tokens
from engine.sandbox._faults import Faults
from engine.sandbox._server import SandboxServer
from engine.sandbox._writelog import WriteLog, content_hash, read_write_log
from engine.targets._store_portal import PortalStore

__all__ = ["BASE_PATH", "BATCH_MAX", "Faults", "ImportApi", "SandboxServer", "WriteLog", "content_hash",
           "read_write_log", "start_sandbox", "stop_sandbox", "default_write_log"]

DEFAULT_CUSTOMER = "sandbox"


def default_write_log(data: Path | str) -> Path:
    data = Path(data)
    return data.with_name(data.stem + ".writes.jsonl")


def start_sandbox(*, data: Path | str, tokens: list[str], port: int = 0, customer: str = DEFAULT_CUSTOMER,
                  faults: Faults | None = None, write_log: Path | str | None = None) -> SandboxServer:
    """Open the store and bind the server (not yet serving: call serve_forever)."""
    store = PortalStore(data)
    log = WriteLog(write_log or default_write_log(data))
    api = ImportApi(store, parse_tokens(tokens, customer), customer, log)
    try:
        return SandboxServer(port, api, faults)
    except OSError:
        store.close()
        log.close()
        raise


def stop_sandbox(server: SandboxServer) -> None:
    server.server_close()
    server.api.store.close()
    if server.api.write_log is not None:
        server.api.write_log.close()
