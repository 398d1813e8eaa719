"""A listener on 127.0.0.1 that speaks just enough TDS to read the login FreeTDS sends.

It answers the PRELOGIN with "encryption not supported" (the client asked with Encryption=request,
i.e. encrypt: no), reads the LOGIN7 packet, decodes user name, password (XOR 0xA5 with swapped
nibbles, UTF-16) and database, and closes the connection: the client then reports a failed
connect, and the test compares what arrived with what the tenant's secret holds.
"""
from __future__ import annotations

import socket
import struct
import threading

HOST = "127.0.0.1"


class TdsLoginListener:
    def __enter__(self) -> "TdsLoginListener":
        self.logins: list[dict[str, str]] = []
        self._sock = socket.socket()
        self._sock.bind((HOST, 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tds-listener", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    kind, body = _read_packet(conn)
                    if kind == 0x12:                       # PRELOGIN
                        conn.sendall(_prelogin_answer())
                        kind, body = _read_packet(conn)
                    if kind == 0x10:                       # LOGIN7
                        self.logins.append({"user": _field(body, 40).decode("utf-16-le"),
                                            "password": _unscramble(_field(body, 44)).decode("utf-16-le"),
                                            "database": _field(body, 68).decode("utf-16-le")})
                except (OSError, ValueError, struct.error):
                    pass


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise ValueError("closed")
        data += part
    return data


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    head = _read_exactly(conn, 8)
    length = struct.unpack(">H", head[2:4])[0]
    return head[0], _read_exactly(conn, length - 8)


def _prelogin_answer() -> bytes:
    version, encryption = bytes([15, 0, 0x07, 0xD0, 0, 0]), bytes([2])     # 2: ENCRYPT_NOT_SUP
    start = 5 + 5 + 1
    payload = (bytes([0]) + struct.pack(">HH", start, len(version)) + bytes([1]) +
               struct.pack(">HH", start + len(version), 1) + b"\xff" + version + encryption)
    return bytes([0x04, 0x01]) + struct.pack(">H", 8 + len(payload)) + bytes([0, 0, 1, 0]) + payload


def _field(body: bytes, at: int) -> bytes:
    offset, chars = struct.unpack("<HH", body[at:at + 4])
    return body[offset:offset + 2 * chars]


def _unscramble(data: bytes) -> bytes:
    return bytes(((b ^ 0xA5) << 4 & 0xF0) | ((b ^ 0xA5) >> 4) for b in data)
