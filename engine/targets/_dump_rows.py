"""python -m engine.targets._dump_rows STORE ENTITY...: the local portal store's managed records,
packed for engine.current, to standard output: one message (engine._pipe) per entity,
("ok", entity, external_ids, each row in marshal's format 0, the users' e-mails or None).

engine.current runs this beside a run so that the store is read while the source is extracted.
Everything is read and packed before the first byte is written: the run then only waits for
the pipe, never for this reader's work.
"""
from __future__ import annotations

import sys

from engine._pipe import send
from engine.current import pack
from engine.targets._store_portal import read_rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, entities = argv[0], argv[1:]
    messages = [("ok", *pack(entity, read_rows(path, entity))) for entity in entities]
    out = sys.stdout.buffer
    for message in messages:
        send(out, message)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
