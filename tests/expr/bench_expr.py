"""Micro benchmark of compiled expressions (not a test: run it by hand, figures go to docs).

    .venv/bin/python tests/expr/bench_expr.py [ROWS]

Prints nanoseconds per row for: a raw SQLite fetch of the same rows (the budget reference),
single expressions compiled to closures versus jmespath.search on a dict built from the row,
a whole users mapping (9 fields), and the e-mail and phone functions with and without their
caches.
"""
from __future__ import annotations

import platform
import random
import sqlite3
import sys
import time

import jmespath

from engine.config.model import CodeTable
from engine.expr import compile_expression, jmespath_options
from engine.expr.emails import _analyze as email_cache
from engine.expr.phones import _analyze as phone_cache

COLUMNS = ["AdressNr", "Anrede", "Titel", "Vorname", "Nachname", "Email", "Telefon", "Mobil", "Sprache", "TypCode", "Beginn"]
TABLES = {
    "salutations": CodeTable("salutations", {"herr": "mr", "frau": "ms", "firma": "company"}),
    "unit_types": CodeTable("unit_types", {"1": "apartment", "3": "parking"}, "other"),
}
USERS = {
    "external_id": "to_string(AdressNr)",
    "salutation": "map_values(lower(trim(Anrede)), 'salutations')",
    "title": "trim(Titel)",
    "first_name": "trim(Vorname)",
    "last_name": "trim(Nachname)",
    "email": "Email",
    "phone": "Telefon",
    "mobile": "Mobil",
    "language": "coalesce(lower(trim(Sprache)), 'de')",
}
SINGLE = [
    "Nachname", "trim(Nachname)", "to_string(AdressNr)", "coalesce(lower(trim(Sprache)), 'de')",
    "map_values(to_string(TypCode), 'unit_types')", "concat(to_string(AdressNr), '-', Vorname)",
    "to_date(Beginn)", "Vorname || Nachname", "merge(@, `{}`).Nachname",
]


def make_rows(n: int, unique: bool) -> list[tuple]:
    rng = random.Random(7)
    rows = []
    for i in range(n):
        k = i if unique else rng.randrange(max(n // 20, 1))
        rows.append((
            100000 + i, rng.choice(["Herr", "Frau ", "Firma", None]), rng.choice([None, "Dr."]),
            f" Vorname{i % 997} ", f"Nachname{i % 1009}", f"person{k}@web.de",
            f"030 {1000000 + k}", f"0171/{2000000 + k}", rng.choice(["DE", None, " en "]),
            rng.choice([1, 3, 5]), f"{1 + i % 28:02d}.{1 + i % 12:02d}.2020",
        ))
    return rows


def per_row(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e9:8.0f} ns/row"


def timed(function, rows, before=lambda: None, repeat: int = 3) -> float:
    """The best of `repeat` runs (the machine may be busy with other work)."""
    best = float("inf")
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        function(rows)
        best = min(best, time.perf_counter() - start)
    return best


def clear_caches() -> None:
    email_cache.cache_clear()
    phone_cache.cache_clear()


def main(n: int) -> None:
    rows = make_rows(n, unique=True)
    print(f"{n} rows; Python {platform.python_version()}; {platform.machine()}; {platform.processor() or platform.platform()}")
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t ({', '.join(COLUMNS)})")
    db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    fetch = timed(lambda _: db.execute("SELECT * FROM t").fetchall(), None)
    print(f"{'SQLite fetchall (reference)':48} {per_row(fetch, n)}")

    options = jmespath_options(TABLES)
    for text in SINGLE:
        read = compile_expression(text, code_tables=TABLES).bind(COLUMNS)
        compiled = timed(lambda rs: [read(r) for r in rs], rows)
        parsed = jmespath.compile(text)
        searched = timed(lambda rs: [parsed.search(dict(zip(COLUMNS, r)), options) for r in rs], rows)
        print(f"{text:48} {per_row(compiled, n)}   jmespath {per_row(searched, n)}   x{searched / compiled:5.1f}")

    readers = [(field, compile_expression(t, code_tables=TABLES).bind(COLUMNS)) for field, t in USERS.items()]
    mapped = timed(lambda rs: [{f: read(r) for f, read in readers} for r in rs], rows)
    parsed = [(field, jmespath.compile(t)) for field, t in USERS.items()]
    searched = timed(lambda rs: [{f: p.search(d, options) for f, p in parsed}
                                 for d in (dict(zip(COLUMNS, r)) for r in rs)], rows)
    print(f"{'users mapping, 9 fields':48} {per_row(mapped, n)}   jmespath {per_row(searched, n)}   x{searched / mapped:5.1f}")

    for label, unique in (("all values distinct", True), ("each value ~20 times", False)):
        sample = make_rows(n, unique)
        for text in ("normalize_email(Email)", "normalize_phone(Telefon)", "normalize_phone(Mobil)"):
            read = compile_expression(text).bind(COLUMNS)
            spent = timed(lambda rs: [read(r) for r in rs], sample, before=clear_caches)
            print(f"{text + ', ' + label:48} {per_row(spent, n)}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
