"""A raw WebSocket client on a blocking socket: the exact bytes a test wants, in ONE ``sendall``.

Frames are built by hand (masked, any opcode, reserved bits, fragments) so a test controls what
shares a TCP segment; the server's frames (unmasked) are read back one by one.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from dataclasses import dataclass

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def handshake(port: int, path: str = "/", extra: str = "") -> bytes:
    """An HTTP/1.1 upgrade request (a valid one unless ``extra`` spoils it)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """One client frame (masked, as RFC 6455 requires from clients)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int = 1000, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool

    @property
    def close_code(self) -> int | None:
        if self.opcode != CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


class RawClient:
    """A blocking loopback socket with a read buffer; every read is bounded by ``timeout``."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)  # one call: the bytes leave together (one segment on loopback)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_http(self) -> tuple[int, dict[str, str], bytes]:
        """One HTTP response head (status, lower-case headers) and its Content-Length body."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"EOF before an HTTP response; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                break
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def read_frame(self) -> Frame:
        """The next frame from the server (EOFError if the connection ends first)."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            if not self._fill():
                raise EOFError(f"EOF before a complete frame; {len(self.buf)} bytes left")

    def _parse(self) -> Frame | None:
        b = self.buf
        if len(b) < 2:
            return None
        fin, opcode, n, pos = bool(b[0] & 0x80), b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < pos + n:
            return None
        self.buf = b[pos + n :]
        return Frame(opcode, b[pos : pos + n], fin)

    def frames_until_close(self, limit: int = 100) -> list[Frame]:
        """Frames up to and including the server's close frame."""
        got = []
        for _ in range(limit):
            f = self.read_frame()
            got.append(f)
            if f.opcode == CLOSE:
                return got
        raise AssertionError(f"no close frame within {limit} frames: {got}")

    def at_eof(self) -> bool:
        """True when the server closes (or half-closes) before sending anything more."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                if not self._fill():
                    return True
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
