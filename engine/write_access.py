"""Whether a run could write an SQLite store that `plan` only reads: the local portal store and
an SQLite state store. A plan opens them read-only (SQLite's read-only mode), so it succeeds
where the night's run fails on them (exit 5 for the portal store, 10 for the state store): on a
file system mounted read-only, a file or folder that the user may not write, or a store whose
write lock another process holds.

Checked without writing, creating or locking anything: os.access and os.statvfs on the file,
its folder and SQLite's journal beside it (-wal, -shm), and F_GETLK (fcntl) for the lock
SQLite's writer holds. The answer is for the user that runs the plan: the night's run under
another user may find otherwise, and a lock may be taken or released after the plan looked.
"""
from __future__ import annotations

import fcntl
import os
import pwd
import struct
import time
from pathlib import Path

LOCK_HELD_FOR = 1.0
"""Seconds a write lock must stay held while the plan looks before it is named: runs of other
tenants that share a state store hold its lock for moments, and a run waits those out."""
_FLOCK = "hhqqi4x"                     # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
_WRITE_LOCKS = (("-shm", 120), ("", 0x40000001))
"""Where SQLite's writer holds its lock (unix VFS): in WAL mode a byte of the -shm file
(WAL_WRITE_LOCK), in rollback-journal mode the RESERVED byte of the store's own file."""


def why_unwritable(path: Path, elsewhere: str, *, held_for: float = LOCK_HELD_FOR) -> tuple[str, str] | None:
    """(why a run could not write the SQLite store `path`, or create it where it is not there yet;
    what to do), None when it could. `elsewhere`: how to use another store instead, the end of
    what to do (e.g. 'change target.path in the tenant file'). Call it while this process has
    the store open nowhere: closing a descriptor of a file drops this process's locks on it,
    SQLite's as well."""
    path = Path(path).absolute()
    if why := why_not_searchable(path, elsewhere):
        return why
    if not path.exists():
        return _not_creatable(path, elsewhere)
    who = f"the user that runs this plan ({_user()})"
    if _read_only_mount(path):
        return "it is on a file system mounted read-only", f"mount it read-write for the run, or {elsewhere}"
    journal = [Path(f"{path}{end}") for end in ("-wal", "-shm")]
    folder = [] if _wal(path) and all(j.exists() for j in journal) else \
        [(path.parent, f"its folder {path.parent}, where SQLite creates its journal (-wal, -shm),")]
    for file, why in ((path, "the file"), *folder, *((j, f"SQLite's journal {j}") for j in journal if j.exists())):
        if not os.access(file, os.W_OK):
            return (f"{why} is not writable for {who}",
                    f"let the user that runs idwell-sync write to {file}, or {elsewhere}")
    if (pid := _write_lock_holder(path, held_for)) is not None:
        process = f"process {pid}" if pid > 0 else "another process"
        return (f"{process} holds its write lock (for more than {held_for:g} s while the plan looked): a run "
                f"waits for it, and fails when it is not released in time",
                f"find the process (`fuser {path}`), and let it finish or stop it before the run")
    return None


def why_not_creatable(path: Path, elsewhere: str) -> tuple[str, str] | None:
    """(why the store `path`, which is not there, cannot be created; what to do, ending with
    `elsewhere`), None when its nearest existing folder is a folder that can be written."""
    return why_not_searchable(path, elsewhere) or _not_creatable(path, elsewhere)


def _not_creatable(path: Path, elsewhere: str) -> tuple[str, str] | None:
    """why_not_creatable where every folder of `path` that is there can be searched."""
    nearest = next(p for p in Path(path).absolute().parents if p.exists())
    if not nearest.is_dir():
        return f"{nearest} is a file, not a folder", f"move {nearest} out of the way, or {elsewhere}"
    if not os.access(nearest, os.W_OK):
        return (f"the folder {nearest} is not writable",
                f"let the user that runs idwell-sync write to {nearest}, or {elsewhere}")
    return None


def why_not_searchable(path: Path, elsewhere: str) -> tuple[str, str] | None:
    """(why the store `path` cannot be reached at all: one of its folders may not be searched (no
    x permission), so not even whether the store is there can be known (Path.exists() raises);
    what to do, ending with `elsewhere`), None when every folder of it that is there can be
    searched. Asks os.access from the root down, which raises nothing."""
    for folder in reversed(Path(path).absolute().parents):
        if not os.path.isdir(folder):               # not there (below a folder that can be searched)
            return None
        if not os.access(folder, os.X_OK):
            return (f"its folder {folder} may not be searched (no x permission) by {_runner()}: not even whether "
                    f"the store is there can be known",
                    f"let the user that runs idwell-sync search (x permission) {folder}, or {elsewhere}")
    return None


def _runner() -> str:
    return f"the user that runs idwell-sync ({_user()})"


def _write_lock_holder(path: Path, held_for: float) -> int | None:
    """The pid of the process that has held SQLite's write lock on the store `path` throughout
    `held_for` seconds (0: its pid is not known), None when the lock was free at some moment."""
    deadline = time.monotonic() + held_for
    while True:
        pid = _lock_holder_now(path)
        if pid is None or time.monotonic() >= deadline:
            return pid
        time.sleep(0.1)


def _lock_holder_now(path: Path) -> int | None:
    for end, offset in _WRITE_LOCKS:
        try:
            fd = os.open(f"{path}{end}", os.O_RDONLY)
        except OSError:                             # no -shm: no writer in WAL mode; unreadable: not known
            continue
        try:
            probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
            kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
        except OSError:                             # a file system without POSIX locks
            continue
        finally:
            os.close(fd)
        if kind != fcntl.F_UNLCK:
            return max(pid, 0)
    return None


def _wal(path: Path) -> bool:
    """The store is in WAL mode (its header says so, as the engine's stores are): with its -wal
    and -shm files there, SQLite writes it without creating a file in its folder."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
