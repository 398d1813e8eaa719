"""Progress on a terminal for long phases; silent (one log line per phase) when not a terminal."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("engine.progress")


class Progress:
    def __init__(self, enabled: bool | None = None, stream=None, level: int = logging.INFO):
        """`stream`: standard error as it is now (default); `level`: of the log line of each finished
        phase (a second process's: DEBUG, so that -v shows each phase once, as the run reports it)."""
        self.stream, self.level = sys.stderr if stream is None else stream, level
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._label, self._done, self._total, self._last, self._t0 = "", 0, None, 0.0, 0.0
        self._stage = ""

    def start(self, label: str, total: int | None = None) -> None:
        self._label, self._done, self._total, self._t0 = label, 0, total, time.monotonic()
        self._stage = ""
        self._show(force=True)

    def stage(self, what: str, done: int, total: int | None = None) -> None:
        """Another count of the current phase (its rows read, their records made now; records
        received from a second process): shown on the live line after the phase's own count,
        which stays what `finish` reports."""
        self._stage = f", {what} {done:,}" + (f"/{total:,}" if total else "")
        self._show(force=done == 0)

    def advance(self, n: int = 1) -> None:
        self._done += n
        self._show()

    def finish(self, note: str = "") -> None:
        elapsed = time.monotonic() - self._t0
        line = f"{self._label}: {self._done:,} in {elapsed:.1f}s{(' ' + note) if note else ''}"
        if self.enabled:
            self.stream.write("\r\x1b[2K" + line + "\n")
            self.stream.flush()
        log.log(self.level, line)

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        of = f"/{self._total:,}" if self._total else ""
        self.stream.write(f"\r\x1b[2K{self._label}: {self._done:,}{of}{self._stage}")
        self.stream.flush()
