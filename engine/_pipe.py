"""Messages between the run and its helper processes (engine.parallel, engine.current).

One message is a format byte, its length, then the bytes (made in full before the first is
written). marshal, which both processes (the same interpreter) read alike, is about ten
times faster than pickle for plain lists, dicts, texts and bytes; pickle where a value is of
another type (a date or Decimal left in a record).
"""
from __future__ import annotations

import marshal
import os
import pickle
from typing import Any, BinaryIO

PIPE_SIZE = 1 << 20
"""Bytes a pipe between the run and a helper holds (Linux: F_SETPIPE_SZ, at most
/proc/sys/fs/pipe-max-size, 1 MB by default). With the default 64 KB, a writer thread that
shares its process with busy Python code waits for the GIL after every 64 KB it writes
(up to 5 ms each): a 15 MB message then takes a second to cross."""


def encode(message: Any) -> bytes:
    """One message as the bytes `send` writes."""
    try:
        kind, blob = b"M", marshal.dumps(message)
    except ValueError:
        kind, blob = b"P", pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return kind + len(blob).to_bytes(8, "big") + blob


def send(out: BinaryIO, message: Any) -> None:
    out.write(encode(message))
    out.flush()


def receive(f: BinaryIO) -> Any:
    """The next message; `f` buffered, or unbuffered where a reader must see by select() whether
    a message waits (a buffered reader may have read the next one ahead, out of select's sight)."""
    head = _read_exactly(f, 9)
    if len(head) < 9:
        raise EOFError("the forked process ended without an answer")
    blob = _read_exactly(f, int.from_bytes(head[1:], "big"))
    return marshal.loads(blob) if head[:1] == b"M" else pickle.loads(blob)


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """n bytes, fewer only at the end of the stream: an unbuffered pipe gives what one read finds."""
    data = f.read(n) or b""
    if len(data) < n:
        parts, got = [data], len(data)
        while got < n and (more := f.read(n - got)):
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def end_child(pid: int, *, kill: bool) -> None:
    """Waits for a forked helper to end (kill: stops it first); one that is gone already is fine."""
    if kill:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def pipe() -> tuple[int, int]:
    """os.pipe(), as wide as the system allows (PIPE_SIZE)."""
    r, w = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):   # not Linux, or a lower limit: the default size
        pass
    return r, w
