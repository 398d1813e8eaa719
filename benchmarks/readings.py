"""Memory the two readings of an API endpoint paged by position keep (engine.sources._readings).

    python -m benchmarks.readings [--records 500000] [--page-size 500]

A run reads an endpoint paged by page number twice (ApiExtractor.batches): the first reading
keeps each record's identity (its external_id) with a digest of its content, the second notes,
for each identity the first reading had once, the page of the second reading it came on
(`Readings._met`), to tell a record that moved on from two ERP records with one key. This
feeds the Readings of a run the pages of a large tenant's persons (DOMUS Cloud Connect's shape,
the domus-api mapping's external_id `to_text(id)`), made page by page and let go as a run lets
them go, with nothing added or removed between the readings, and reports what each structure
holds once the second reading is done: `_met` by its own size (the dict, its keys and values,
counted once each), and the growth of the traced heap over the second reading (tracemalloc),
besides the process's peak RSS.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tracemalloc


def person(n: int) -> dict:
    return {"id": 1000000 + n, "salutation": "Herr" if n % 2 else "Frau", "title": None,
            "firstName": f"Vorname{n}", "lastName": f"Nachname{n}",
            "contact": {"email": f"person{n}@example.de", "phone": "030 1234567", "mobile": None},
            "language": "de"}


def pages(records: int, size: int):
    for start in range(0, records, size):
        yield [person(n) for n in range(start, min(start + size, records))]


def deep_size(mapping: dict) -> int:
    """The dict, its keys and its values, each object counted once."""
    seen: set[int] = set()
    total = sys.getsizeof(mapping)
    for item in (*mapping.keys(), *mapping.values()):
        if id(item) not in seen:
            seen.add(id(item))
            total += sys.getsizeof(item)
    return total


def measure(records: int, size: int) -> dict:
    from engine.config.model import EntityMapping, Paginator
    from engine.expr import compile_expression
    from engine.sources._readings import Readings
    from engine.sources.api import external_id_getter
    entity = EntityMapping("users", {"external_id": compile_expression("to_text(id)")}, ("id",),
                           paginator=Paginator("page_number", page_param="page", size_param="pageSize"))
    readings = Readings(entity.paginator, external_id_getter(entity))
    assert readings.second_reading
    tracemalloc.start()
    for page in pages(records, size):
        readings.first(page, None)
    gc.collect()
    after_first = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    for number, page in enumerate(pages(records, size)):
        readings.second(page, number)
    gc.collect()
    after_second, peak_second = tracemalloc.get_traced_memory()
    met = deep_size(readings._met)
    first = deep_size(readings._first)
    entries = len(readings._met)
    tracemalloc.stop()
    readings.disputed()
    readings.held()
    return {"records": records, "page_size": size, "met_entries": entries, "met_mb": round(met / 1e6, 1),
            "first_mb": round(first / 1e6, 1), "traced_after_first_mb": round(after_first / 1e6, 1),
            "second_reading_growth_mb": round((after_second - after_first) / 1e6, 1),
            "second_reading_peak_mb": round(peak_second / 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--page-size", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(measure(args.records, args.page_size), indent=2))


if __name__ == "__main__":
    main()
