"""`generate`: write a deterministic demo ERP (DOMUS-like) of a given size into SQLite or PostgreSQL.

The showcase (every hard case, by hand) comes first, then the seeded random bulk, object by object,
in batches to the sink; the indexes follow the load. Same seed and size give the same rows on every
database. For a SQLite file the manifest is also written next to it as `<file>.manifest.json`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from sqlalchemy.engine import make_url

from engine.demo.builder import Builder
from engine.demo.bulk import Bulk, Dice
from engine.demo.cases import Showcase
from engine.demo.manifest import Manifest
from engine.demo.sinks import open_sink

# size -> (units, persons); contracts and parties follow from the units
SIZES: dict[str, tuple[int, int]] = {
    "S": (300, 750),
    "M": (20_000, 50_000),
    "L": (200_000, 500_000),
}


def generate(url: str, size: str = "S", seed: int = 42, *, schema: str | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> Manifest:
    """Replace the demo tables at `url` with a generated ERP; return its manifest.

    url: `sqlite:///path/erp.sqlite` or `postgresql+psycopg://...`; schema: PostgreSQL only, dropped
    and created anew (ignored for SQLite). progress(phase, done, total) is called per batch of units
    ("units") and once when the load is indexed ("indexes").
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; valid values are: {', '.join(SIZES)}")
    units, persons = SIZES[size]
    manifest = Manifest(size=size, seed=seed)
    sink = open_sink(url, schema)
    builder = Builder(sink, manifest, progress=progress, unit_target=units)
    bulk = Bulk(builder, Dice(f"idwell-demo:{size}:{seed}"))
    Showcase(builder, bulk.people).run()
    bulk.run(units, persons)
    builder.finish()
    if progress:
        progress("indexes", 0, 1)
    sink.finish()
    if progress:
        progress("indexes", 1, 1)
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database and database != ":memory:":
        manifest.write(Path(database).with_name(Path(database).name + ".manifest.json"))
    return manifest
