"""How the state store's rows hold their values: times as naive UTC, records as compact JSON,
messages clipped (and masked again when read); the host a row of a run or a lock names, and
how many rows one statement writes."""
from __future__ import annotations

import datetime as dt
import json
import socket
from typing import Any, Mapping

from engine.redact import redact

_CHUNK = 5000
_HOST = socket.gethostname()
MESSAGE_LIMIT = 500                   # characters of a failed run's message kept in the history


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)      # stored as naive UTC


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


def _clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _shown(message: str | None) -> str | None:
    """A stored message as history and status show it: masked again (engine.redact's shapes), for
    rows that a version without masking, or a store shared with another tool, wrote."""
    return redact(message) if message else message


def _dump(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
