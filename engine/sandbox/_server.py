"""The sandbox's HTTP server: the standard library's ThreadingHTTPServer on 127.0.0.1.

HTTP/1.1 with keep-alive (a client reuses its connections as it would with the real API).
Requests below /import/v1 go through fault injection, then to ImportApi; GET / is the read-only
HTML page (no token, no faults).
"""
from __future__ import annotations

import logging
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.sandbox._api import BASE_PATH, ImportApi, Reply, error
from engine.sandbox._faults import Faults
from engine.sandbox._page import render_page

MAX_BODY = 64 * 1024 * 1024
log = logging.getLogger("engine.sandbox")


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, api: ImportApi, faults: Faults | None = None):
        super().__init__(("127.0.0.1", port), _Handler)
        self.api = api
        self.faults = faults or Faults()

    def handle_error(self, request, client_address) -> None:
        """A client that drops its connection (a reset, a browser's unused pre-connect) is
        logged in one line; anything else is a bug of the sandbox and keeps its traceback."""
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            log.info("client %s:%s closed the connection", *client_address[:2])
            return
        super().handle_error(request, client_address)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + BASE_PATH


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "idwell-sandbox/1.0"
    disable_nagle_algorithm = True        # headers and body are two writes: no 40 ms delayed-ACK stall
    server: SandboxServer

    def do_GET(self) -> None:  # noqa: N802 - the standard library's names
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        length = self.headers.get("Content-Length")
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():     # a client streaming its body
            size, body = self._read_chunked()
        else:
            body = self.rfile.read(size) if 0 < size <= MAX_BODY else b""
        if not 0 <= size <= MAX_BODY:
            self.close_connection = True
            return self._send(error(413 if size > MAX_BODY else 400, "too_large" if size > MAX_BODY else "invalid",
                                    "the body is too large or its Content-Length (or chunked encoding) is unreadable"))
        path = self.path.split("?", 1)[0]
        if self.command == "GET" and path in ("/", "/index.html"):
            page = render_page(self.server.api.store, self.server.base_url)
            return self._send(Reply(200, page, {"Content-Type": "text/html; charset=utf-8"}))
        if not (path == BASE_PATH or path.startswith(BASE_PATH + "/")):
            return self._send(error(404, "not_found", f"the import API is at {BASE_PATH}; the page at /"))
        faults = self.server.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        fault = faults.draw()
        if fault == "429":
            return self._send(error(429, "rate_limited", "too many requests (injected)",
                                    headers={"Retry-After": str(faults.retry_after)}))
        if fault == "503":
            return self._send(error(503, "unavailable", "service unavailable (injected)"))
        if fault == "drop" and self.command == "GET":
            return self._drop()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            reply = self.server.api.handle(self.command, self.path, headers, body)
        except Exception:  # noqa: BLE001 - a bug of the sandbox answers 500, and says so in its log
            log.exception("sandbox: %s %s failed", self.command, self.path)
            reply = error(500, "unavailable", "internal error of the sandbox (see its log)")
        if fault == "drop":
            return self._drop()
        if fault == "cut" and reply.body:       # a proxy that passes on the part it got
            reply = Reply(reply.status, reply.body[:len(reply.body) // 2], reply.headers)
        self._send(reply)

    def _read_chunked(self) -> tuple[int, bytes]:
        """(its size, the body) of a body sent with Transfer-Encoding: chunked; the size is -1 if
        the encoding is malformed, and over MAX_BODY (without reading further) if it is too large."""
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return -1, b""
            if n < 0:
                return -1, b""
            if n == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):     # trailers, then the end
                    pass
                return total, b"".join(parts)
            total += n
            if total > MAX_BODY:
                return total, b""
            parts.append(self.rfile.read(n))
            if self.rfile.readline(1024) not in (b"\r\n", b"\n"):           # each chunk ends with CRLF
                return -1, b""

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    def _drop(self) -> None:
        """Close the connection without a word (an injected fault)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, fmt: str, *args) -> None:
        log.info("%s %s", self.address_string(), fmt % args)
