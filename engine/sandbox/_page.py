"""The sandbox's read-only HTML page: what a rehearsal left in the portal, for a person in a browser."""
from __future__ import annotations

from html import escape
from typing import Any

from engine.targets._store_portal import PortalStore

SHOWN = 500          # rows per table; the page says how many more there are
COLUMNS: dict[str, tuple[str, ...]] = {
    "buildings": ("external_id", "name", "street", "house_number", "postal_code", "city"),
    "units": ("external_id", "building_id", "number", "name", "type", "floor", "area_m2"),
    "users": ("external_id", "salutation", "title", "first_name", "last_name", "email", "phone", "mobile"),
}
_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin-bottom:2rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}th{background:#f0f0f0}
nav a{margin-right:1rem}.more{color:#666}"""


def render_page(store: PortalStore, base_url: str) -> bytes:
    counts = {r: store.count(r) for r in ("buildings", "units", "users", "occupancies")}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>idwell-sync sandbox</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>idwell-sync sandbox: the portal's managed records</h1>",
        f"<p>Import API: <code>{escape(base_url)}</code>. Store: <code>{escape(str(store.path))}</code>. "
        f"Read-only; reload to see the latest state.</p>",
        "<nav>" + "".join(f"<a href='#{r}'>{r} ({n:,})</a>" for r, n in counts.items()) + "</nav>",
    ]
    for resource, columns in COLUMNS.items():
        parts.append(f"<h2 id='{resource}'>{resource} ({counts[resource]:,})</h2>")
        parts.append(_table(store, resource, columns, counts[resource]))
    parts.append("</body></html>")
    return "".join(parts).encode("utf-8")


def _table(store: PortalStore, resource: str, columns: tuple[str, ...], total: int) -> str:
    if total == 0:
        return "<p class='more'>none</p>"
    rows = ["<table><thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr></thead><tbody>"]
    for i, record in enumerate(store.iter_records(resource, page=SHOWN)):
        if i == SHOWN:
            break
        rows.append("<tr>" + "".join(f"<td>{_cell(record.get(c))}</td>" for c in columns) + "</tr>")
    rows.append("</tbody></table>")
    if total > SHOWN:
        rows.append(f"<p class='more'>... and {total - SHOWN:,} more</p>")
    return "".join(rows)


def _cell(value: Any) -> str:
    return "" if value is None else escape(str(value))
