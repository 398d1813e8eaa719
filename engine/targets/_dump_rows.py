"""python -m engine.targets._dump_rows STORE ENTITY...: the local portal store's managed records
as rows, pickled to standard output, one (entity, rows) object per entity.

engine.current runs this beside a run so that the store is read while the source is extracted.
Everything is read and pickled before the first byte is written: the run then only waits for
the pipe, never for this reader's work.
"""
from __future__ import annotations

import pickle
import sys

from engine.targets._store_portal import read_rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    path, entities = argv[0], argv[1:]
    blobs = [pickle.dumps((entity, read_rows(path, entity)), protocol=pickle.HIGHEST_PROTOCOL) for entity in entities]
    out = sys.stdout.buffer
    for blob in blobs:
        out.write(blob)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
