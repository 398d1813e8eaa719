"""Fault injection: what a flaky gateway in front of the import API does to a share of requests.

For each API request one draw decides: a 429 with Retry-After, a 503, a dropped connection (the
socket is closed without an answer), an answer cut off (its body cut in half, with a
Content-Length that fits, as a proxy passes on what it got), or nothing. A dropped or cut-off
write is dropped or cut after the store applied it: the client lost the answer, not the write,
which is exactly the case the Idempotency-Key exists for. A fixed seed makes the sequence of
draws repeatable.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

Fault = Literal["429", "503", "drop", "cut"]


@dataclass
class Faults:
    share_429: float = 0.0
    share_503: float = 0.0
    share_drop: float = 0.0
    latency_ms: int = 0
    retry_after: int = 1               # seconds, sent with every injected 429
    seed: int | None = None
    share_cut: float = 0.0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for name in ("share_429", "share_503", "share_drop", "share_cut"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a share from 0 to 1, got {value}")
        if self.share_429 + self.share_503 + self.share_drop + self.share_cut > 1.0:
            raise ValueError("the shares of 429, 503, dropped connections and cut-off answers add up to more than 1")
        if self.latency_ms < 0 or self.retry_after < 0:
            raise ValueError("latency and Retry-After cannot be negative")
        self._rng = random.Random(self.seed)

    @property
    def active(self) -> bool:
        return bool(self.share_429 or self.share_503 or self.share_drop or self.share_cut or self.latency_ms)

    def draw(self) -> Fault | None:
        if not (self.share_429 or self.share_503 or self.share_drop or self.share_cut):
            return None
        with self._lock:
            r = self._rng.random()
        if r < self.share_429:
            return "429"
        if r < self.share_429 + self.share_503:
            return "503"
        if r < self.share_429 + self.share_503 + self.share_drop:
            return "drop"
        if r < self.share_429 + self.share_503 + self.share_drop + self.share_cut:
            return "cut"
        return None

    def describe(self) -> str:
        if not self.active:
            return "none"
        parts = [f"{self.share_429:.0%} 429 (Retry-After {self.retry_after}s)" if self.share_429 else "",
                 f"{self.share_503:.0%} 503" if self.share_503 else "",
                 f"{self.share_drop:.0%} dropped connections" if self.share_drop else "",
                 f"{self.share_cut:.0%} answers cut off" if self.share_cut else "",
                 f"{self.latency_ms} ms latency" if self.latency_ms else "",
                 f"seed {self.seed}" if self.seed is not None else ""]
        return ", ".join(p for p in parts if p)
