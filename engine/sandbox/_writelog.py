"""The sandbox's write log: one JSON line per write the portal store accepted.

    {"seq": 17, "resource": "users", "external_id": "P-1001", "op": "upsert", "status": 201,
     "hash": "9f86d0...", "key": "<Idempotency-Key or null>"}

`hash` is the SHA-256 of the record as sent (canonical JSON: sorted keys, no spaces), null for a
delete. A test reads the log to prove that no record was written twice, or twice with different
content, during a run with injected faults.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator


def content_hash(record: Any) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class WriteLog:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = sum(1 for _ in self.path.open(encoding="utf-8"))

    def append(self, resource: str, writes: Iterable[tuple[str, str, int, Any]], key: str | None) -> None:
        """writes: (external_id, op, status, record or None), as applied, in order."""
        with self._lock:
            lines = []
            for external_id, op, status, record in writes:
                self._seq += 1
                lines.append(json.dumps({
                    "seq": self._seq, "resource": resource, "external_id": external_id, "op": op, "status": status,
                    "hash": content_hash(record) if record is not None else None, "key": key,
                }, ensure_ascii=False))
            self._fh.write("\n".join(lines) + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_write_log(path: Path | str) -> Iterator[dict[str, Any]]:
    """The entries of a write log, in the order they were written."""
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
