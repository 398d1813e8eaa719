"""A stand-in for DOMUS Cloud Connect (the vendor's REST API, which cannot run here): the
`idwell-sync erp-sandbox` command, the tests and benchmarks/api.py.

Serves a demo ERP database (engine.demo) as paged JSON over real HTTP on 127.0.0.1, in the
shape mappings/domus-api.yaml reads: /objects, /units and /contracts/parties paged by page
number, /persons by cursor. Requests need the header X-API-Key. `fail_every` answers every n-th
request with 503 (or 429; `fail_status` may be several, taken in turn) with a Retry-After of
`retry_after` seconds, to exercise the client's retries, and so does each of the first
`fail_first` requests; `failed` counts them by status.
`before(path, query)`, when set, is called before each page is answered (path without
/api/v1, query as a dict), so that a test can change the ERP while a run reads its pages.
`links`: a full page of an endpoint paged by number also names the next one in a `Link:
<...?page=N&pageSize=S>; rel="next"` header, as an API paged by `link_header` whose links count
pages does; without page and pageSize in the query, the first page of 100 is answered.
`link_param` names the page in those links (`?seite=N`, for an API whose links count pages by
a name of its own); the page is read from it as from `page`. `link_extra` is added to those links
as it is (`after=5000219`: an API whose links name the last record read besides the page).
`latency` (seconds) is waited before each request is answered, in the request's own thread, as a
network between the client and the API would add to each (benchmarks/api.py).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse


QUERIES = {
    "/objects": ("SELECT objektnr, mandant, bezeichnung, strasse, hausnr, plz, ort, land FROM objekt ORDER BY objektnr",
                 lambda r: {"objectNumber": r[0], "client": r[1], "name": r[2],
                            "address": {"street": r[3], "houseNumber": r[4], "zip": r[5], "city": r[6], "country": r[7]}}),
    "/units": ("SELECT einheitid, objektnr, einheitnr, bezeichnung, typcode, fiktiv, etage, flaeche FROM einheit ORDER BY einheitid",
               lambda r: {"id": r[0], "objectNumber": r[1], "number": r[2], "name": r[3], "typeCode": r[4],
                          "fictitious": bool(r[5]), "floor": r[6], "area": r[7]}),
    "/persons": ("SELECT adressnr, anrede, titel, vorname, nachname, email, telefon, mobil, sprache FROM adresse "
                 "WHERE adressnr > ? ORDER BY adressnr",
                 lambda r: {"id": r[0], "salutation": r[1], "title": r[2], "firstName": r[3], "lastName": r[4],
                            "contact": {"email": r[5], "phone": r[6], "mobile": r[7]}, "language": r[8]}),
    "/contracts/parties": ("SELECT v.vertragnr, p.adressnr, v.einheitid, v.art, v.beginn, v.ende FROM vertrag v "
                           "JOIN vertragpartner p ON p.vertragnr = v.vertragnr ORDER BY v.vertragnr, p.adressnr",
                           lambda r: {"contractNumber": r[0], "personId": r[1], "unitId": r[2], "kind": r[3],
                                      "start": r[4], "end": r[5]}),
}


def answer_json(h: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
    """Answer the request `h` handles with `body` as JSON (and `headers`)."""
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(data)


class CloudConnect:
    """Serves while in a `with` block (from a daemon thread), or with serve_forever();
    `port` 0 takes a free one; `url` is the API's base_url."""
    def __init__(self, database: str, api_key: str, *, fail_every: int = 0, fail_status: int | tuple[int, ...] = 503,
                 retry_after: str = "0", links: bool = False, link_param: str = "page", link_extra: str = "",
                 fail_first: int = 0, latency: float = 0.0, port: int = 0):
        self.latency = latency
        self.database, self.api_key, self.links, self.link_param = database, api_key, links, link_param
        self.link_extra = link_extra
        self.fail_every, self.fail_first, self.retry_after = fail_every, fail_first, retry_after
        self.fail_statuses = fail_status if isinstance(fail_status, tuple) else (fail_status,)
        self.requests = 0
        self.failures = 0
        self.failed: Counter = Counter()            # status -> requests answered with it
        self.before: Callable[[str, dict], None] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # no line per request on the terminal
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"

    def __enter__(self) -> "CloudConnect":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.requests += 1
            fail = (self.fail_every and self.requests % self.fail_every == 0) or self.requests <= self.fail_first
        if h.headers.get("X-API-Key") != self.api_key:
            return answer_json(h, 401, {"error": "invalid API key"})
        if fail:
            with self._lock:
                status = self.fail_statuses[self.failures % len(self.fail_statuses)]
                self.failures += 1
                self.failed[status] += 1
            return answer_json(h, status, {"error": "try again"}, {"Retry-After": self.retry_after})
        url = urlparse(h.path)
        path = url.path.removeprefix("/api/v1")
        if path not in QUERIES:
            return answer_json(h, 404, {"error": f"no endpoint {path}"})
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.before is not None:
            with self._lock:
                self.before(path, q)
        sql, shape = QUERIES[path]
        con = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
        try:
            if path == "/persons":
                limit = 200
                rows = con.execute(sql + f" LIMIT {limit}", (int(q.get("cursor", 0)),)).fetchall()
                nxt = str(rows[-1][0]) if len(rows) == limit else None
                return answer_json(h, 200, {"data": [shape(r) for r in rows], "meta": {"nextCursor": nxt}})
            page, size = int(q.get("page", q.get(self.link_param, 1))), int(q.get("pageSize", 100))
            rows = self.page_rows(con, path, page, size)
            link = (f"</api/v1{path}?{self.link_param}={page + 1}&pageSize={size}"
                    f"{'&' + self.link_extra if self.link_extra else ''}>; rel=\"next\"")
            return answer_json(h, 200, {"data": [shape(r) for r in rows], "page": page},
                                {"Link": link} if self.links and len(rows) == size else None)
        finally:
            con.close()

    def page_rows(self, con: sqlite3.Connection, path: str, page: int, size: int) -> list[tuple]:
        """The rows of a page of an endpoint paged by number, as the ERP has them now (a subclass
        may answer them from elsewhere: benchmarks/api.py)."""
        return con.execute(QUERIES[path][0] + f" LIMIT {size} OFFSET {(page - 1) * size}").fetchall()
