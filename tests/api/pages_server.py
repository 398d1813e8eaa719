"""A small JSON API on 127.0.0.1 for the API source's tests: fixed pages, every request noted."""
from __future__ import annotations

import datetime as dt
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.config.model import ApiAuth, ApiSource, EntityMapping, Paginator
from engine.expr import compile_expression
from engine.sources.api import ApiExtractor
from local_http import ServedInThread


class Server(ServedInThread):
    """Answers GET with the page its `pages` maps the path (with query) to: (records, sent as they
    are in JSON; next link or None; `{other}` in a link stands for `other_url`; a next written `cursor:VALUE` is sent as the
    body's `next_cursor` instead), or what `fallback(path)` gives for a path not in `pages`; POST
    with the first of `posts`, then with `post` (status, content type, body); GET with the first of `gets`
    (status, headers, body: bytes, or a function of the path giving them; None: the connection is
    closed without an answer) while there is one.
    `seen`: (path, X-API-Key) of every request."""

    def __init__(self, pages: dict[str, tuple[list[dict], str | None]]):
        self.pages, self.seen = pages, []
        self.fallback = lambda path: ([], None)
        self.post: tuple[int, str, bytes] = (404, "text/plain", b"no")
        self.posts: list[tuple[int, str, bytes]] = []       # answered first, one each, before `post`
        self.gets: list = []                                 # answered first, one each, before `pages`
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.seen.append((self.path, self.headers.get("X-API-Key")))
                if outer.gets:
                    answer = outer.gets.pop(0)
                    if answer is None:
                        self.close_connection = True
                        return
                    status, headers, body = answer(self.path) if callable(answer) else answer
                    self.send_response(status)
                    for name, value in {"Content-Type": "application/json", **headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                records, nxt = outer.pages.get(self.path) or outer.fallback(self.path)
                cursor = nxt[len("cursor:"):] if nxt and nxt.startswith("cursor:") else None
                nxt = None if cursor else nxt
                body = json.dumps({"data": records, **({"next_cursor": cursor} if cursor else {})}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if nxt:
                    self.send_header("Link", f'<{nxt.format(other=outer.other_url)}>; rel="next"')
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.seen.append((self.path, self.headers.get("X-API-Key")))
                status, content_type, body = outer.posts.pop(0) if outer.posts else outer.post
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.other_url = ""


def read_ids(base_url: str, auth: ApiAuth, paginator: str = "none", page_size: int | None = None,
             max_retries: int | None = None, **options) -> list[int]:
    """The ids the API source reads from /v1/objects (records under `data`) as buildings; `options`
    for the paginator (verify)."""
    source = ApiSource(type="api", base_url=base_url, auth=auth, timeout=5,
                       **({"page_size": page_size} if page_size else {}),
                       **({"max_retries": max_retries} if max_retries is not None else {}))
    entity = EntityMapping(name="buildings", fields={"external_id": compile_expression("to_string(id)")}, key=("id",),
                           endpoint="/v1/objects", record_selector="data", paginator=Paginator(type=paginator, **options))
    extractor = ApiExtractor(source, "api-test", run_date=dt.date(2026, 6, 1))
    try:
        return [r["id"] for _, records in extractor.batches(entity, {}) for r in records]
    finally:
        extractor.close()
