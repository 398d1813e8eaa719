"""The ticks file of `idwell-sync due --ticks-file FILE`: the end of the period the last tick
handed out, so that the next tick knows which ticks did not happen (engine.commands.due).

FILE holds one line, that end as ISO 8601 UTC text (2026-12-03T02:35:00Z). A tick holds an
exclusive flock on FILE.lock from reading FILE until it has written it, so that of two ticks that
overlap the later one waits and sees the earlier one's end: they do not both make up the same
cron times. The lock is a file of its own because FILE is replaced, and a lock held on the
replaced file would not keep out a tick that opens the new one.

The new end is written to FILE.tmp before any id is printed, so that a folder that cannot be
written is found out while nothing has been made up yet (a tick that could not record what it
made up would make it up again at every tick), and it is put in place with os.replace after the
ids are printed: a tick stopped in between leaves FILE as it was, and the next tick makes its
period up.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
from pathlib import Path
from typing import Iterator

from engine.commands.history import utc_text


class TicksFileError(Exception):
    """FILE or its lock cannot be written; the message names FILE and what to do."""


class TicksFile:
    """FILE while a tick holds its lock (TicksFile.locked)."""

    def __init__(self, path: Path):
        self.path = path
        self._temp: Path | None = None

    @classmethod
    @contextlib.contextmanager
    def locked(cls, path: Path, wait: float | None = None) -> Iterator[TicksFile]:
        """FILE with FILE.lock held, waiting up to `wait` seconds for a tick that holds it;
        TicksFileError when the lock cannot be created (the folder is missing or not writable)
        or another tick keeps holding it (a tick that hangs must not hold up every later one)."""
        try:
            lock = open(f"{path}.lock", "a", encoding="utf-8")
        except OSError as exc:
            raise TicksFileError(cannot_write(path, exc)) from None
        with lock:
            _flock_within(lock, LOCK_WAIT if wait is None else wait, path)    # released when the lock file closes
            ticks = cls(path)
            try:
                yield ticks
            finally:
                ticks._discard()

    def read_last(self) -> tuple[dt.datetime | None, str | None]:
        """(the end FILE holds, None); (None, None) when there is no FILE yet; (None, what is
        wrong and what to do) when it cannot be read or holds no time."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as exc:
            return None, self._garbled(f"cannot be read ({type(exc).__name__})")
        try:
            last = dt.datetime.fromisoformat(text)
        except ValueError:
            shown = text if len(text) <= 40 else text[:39] + "\u2026"
            return None, self._garbled(f"holds {shown!r}" if text else "is empty")
        return (last if last.tzinfo else last.replace(tzinfo=dt.timezone.utc)), None

    def _garbled(self, what: str) -> str:
        return (f"{self.path} (--ticks-file) {what}, not the end of a tick (e.g. 2026-12-03T02:35:00Z). It is "
                "written anew now; ticks that did not happen before this one are not made up: `idwell-sync status` "
                "shows the tenants that missed their night, start them by hand (`idwell-sync run TENANT`)")

    def prepare(self, end: dt.datetime) -> None:
        """Write `end` to FILE.tmp (flushed to disk), for commit to put in place; TicksFileError
        when it cannot be written."""
        temp = Path(f"{self.path}.tmp")            # one name is enough: only the lock's holder writes it
        try:
            out = open(temp, "w", encoding="utf-8")
        except OSError as exc:
            raise TicksFileError(cannot_write(self.path, exc)) from None
        self._temp = temp
        try:
            with out:
                out.write(utc_text(end) + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise TicksFileError(cannot_write(self.path, exc)) from None

    def commit(self) -> None:
        """Put the prepared end in place of FILE (atomically: a reader sees the old or the new)."""
        try:
            os.replace(self._temp, self.path)
        except OSError as exc:
            raise TicksFileError(cannot_write(self.path, exc)) from None
        self._temp = None

    def _discard(self) -> None:
        if self._temp is not None:
            with contextlib.suppress(OSError):
                self._temp.unlink(missing_ok=True)
            self._temp = None


LOCK_WAIT = 60.0
"""Seconds a tick waits for the ticks file's lock: a tick holds it for well under a second."""


class _Waited(Exception):
    pass


def _flock_within(lock, wait: float, path: Path) -> None:
    """flock(LOCK_EX), given up after `wait` seconds (an alarm interrupts the waiting call) where
    the main thread may set one; else waiting as long as it takes."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        fcntl.flock(lock, fcntl.LOCK_EX)
        return

    def give_up(*_):
        raise _Waited()
    before = signal.signal(signal.SIGALRM, give_up)
    try:
        signal.setitimer(signal.ITIMER_REAL, wait)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Waited:
        raise TicksFileError(f"{path}.lock (--ticks-file) has been held by another tick for {wait:.0f} s; a tick "
                             "takes well under a second, so that one is stuck (look for a hanging `idwell-sync due`, "
                             f"e.g. with `fuser {path}.lock`). This tick's own tenants are printed, ticks that did "
                             "not happen are not made up") from None
    finally:
        signal.signal(signal.SIGALRM, before)


def cannot_write(path: Path, exc: OSError) -> str:
    folder = path.parent
    denied = (f"no permission to write in {folder}",
              f"let the user that runs `due` write {path}, {path}.lock and {path}.tmp in {folder}")
    target = exc.filename2 or exc.filename or path             # os.replace's target is filename2
    why, fix = {
        errno.ENOENT: (f"there is no folder {folder}", f"create the folder {folder}, or give another --ticks-file"),
        errno.EACCES: denied,
        errno.EPERM: denied,
        errno.EISDIR: (f"{target} is a folder", "remove it, or give another --ticks-file"),
    }.get(exc.errno, (exc.strerror or type(exc).__name__, f"make {path} writable for the user that runs `due`"))
    return (f"{path} (--ticks-file) cannot be written: {why}. This tick's own tenants are printed, but ticks that "
            f"do not happen are not made up until it can be: {fix}")
