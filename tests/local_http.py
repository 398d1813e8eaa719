"""Test HTTP servers on 127.0.0.1: the part every one of them has."""
from __future__ import annotations

import threading


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
