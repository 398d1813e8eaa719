"""Test HTTP servers on 127.0.0.1: the part every one of them has."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class ServedInThread:
    """Serves `self.httpd` (a ThreadingHTTPServer the subclass makes) from a daemon thread while
    in a `with` block; shut down and closed at its end."""
    httpd = None

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handled(ServedInThread):
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) answering with `handler`, while in the block."""
    with _Handled(handler) as served:
        yield served.httpd
