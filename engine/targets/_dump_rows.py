"""python -m engine.targets._dump_rows [--wait] STORE ENTITY...: the local portal store's
managed records, packed for engine.current, to standard output: one message (engine._pipe) per
entity, ("ok", entity, external_ids, each row in marshal's format 0, the users' e-mails or None).

engine.current runs this beside a run so that the store is read while the source is extracted,
at a lower priority (NICE); with --wait it reads only once a line arrives on standard input.
Each entity is written as soon as it is packed, by a thread, while the next one is read: the run
compares the first entities (buildings, units) while this reader still packs the large ones,
and a pipe the run has not emptied yet never holds up the reading.
"""
from __future__ import annotations

import os
import queue
import sys
import threading

NICE = 10
"""The reader's lower priority: with the run's processes busy on both cores it gets a tenth of
the time, with a core idle (a process waiting for the other) all of it."""


def main(argv: list[str]) -> int:
    wait = argv[:1] == ["--wait"]
    argv = argv[1:] if wait else argv
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, entities = argv[0], argv[1:]
    if hasattr(os, "nice"):      # beside a run: take the time the run leaves idle, not the run's
        os.nice(NICE)            # (before the imports, which are the reader's first work)
    from engine._pipe import encode
    import engine.current  # noqa: F401  (what _packed uses, imported now: before the wait)
    import engine.targets._store_portal  # noqa: F401
    if wait:                     # started early (imports done), reading when the run says so
        sys.stdin.buffer.readline()
    out = sys.stdout.buffer
    blobs: queue.SimpleQueue = queue.SimpleQueue()

    def write() -> None:
        while (blob := blobs.get()) is not None:
            try:
                out.write(blob)
                out.flush()
            except OSError:      # the run is gone or stopped reading: nothing left to deliver
                return
    writer = threading.Thread(target=write, name="send-packed", daemon=True)
    writer.start()
    try:
        for entity in entities:
            blobs.put(encode(("ok", *_packed(path, entity))))
    finally:
        blobs.put(None)
        writer.join()
    return 0


def _packed(path: str, entity: str) -> tuple[str, list[str], list[bytes], list | None]:
    """engine.current.pack of every row of the entity, read and packed batch by batch."""
    from engine.current import pack
    from engine.targets._store_portal import read_row_batches
    ids: list[str] = []
    packed: list[bytes] = []
    emails: list | None = [] if entity == "users" else None
    for rows in read_row_batches(path, entity):
        _, batch_ids, batch_packed, batch_emails = pack(entity, rows)
        ids += batch_ids
        packed += batch_packed
        if emails is not None:
            emails += batch_emails
    return entity, ids, packed, emails


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    # ends at once: freeing every row one by one would keep hundreds of MB alive, and a core
    # busy, while the run compares them
    os._exit(code)
