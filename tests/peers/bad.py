"""Misbehaving servers written on raw asyncio streams, one per failure a doctor must recognise.

Each kind answers every connection the same way; see :data:`KINDS`. Valid 101 replies carry a correct
``Sec-WebSocket-Accept`` and server frames are unmasked, as RFC 6455 wants.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable

from tests.peers._common import LOOPBACK, LoopThread, ensure_loopback, scaled, url_host
from tests.peers.peer import Peer, SeenRequest

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The longest any connection of a bad server is kept open, whatever the client does.
CONNECTION_LIFETIME = 120.0

SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"

WEB_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>LOK IN</title></head>"
    b"<body><h1>LOK IN</h1><p>Bienvenue</p></body></html>\n"
)

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(sha1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """An unmasked (server-to-client) frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one (client, masked) frame: (opcode, unmasked payload). Raises IncompleteReadError at EOF."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(n)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, payload


async def read_request(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[str, dict[str, str]]:
    """Read the request head; return (path, lower-cased headers). ("", {}) if none came."""
    try:
        async with asyncio.timeout(scaled(timeout)):
            head = await reader.readuntil(b"\r\n\r\n")
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return "", {}
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return path, headers


def http_response(status: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def switching_protocols(key: str, *, wrong: bool = False) -> bytes:
    value = accept_key(key + "wrong" if wrong else key)
    return http_response(
        "101 Switching Protocols",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", value),
            ("Server", "lokin-bad-peer"),
        ],
    )


async def drain_until_eof(reader: asyncio.StreamReader) -> None:
    """Swallow whatever the client sends until it closes (bounded by the connection lifetime)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


def simple(status: str, body: bytes, content_type: str, *extra: tuple[str, str]) -> bytes:
    return http_response(
        status,
        [
            ("Server", "lokin-bad-peer"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *extra,
            ("Connection", "close"),
        ],
        body,
    )


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "BadServer"], Awaitable[None]]


class BadServer:
    def __init__(self, kind: str, delay: float, reply: bytes = b"") -> None:
        self.kind = kind
        self.delay = delay
        #: The bytes the "replay" kind answers every request with.
        self.reply = reply
        self.peer: Peer | None = None
        self.writers: set[Writer] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def record(self, path: str, headers: dict[str, str]) -> None:
        if self.peer is not None and (path or headers):
            self.peer.requests.append(SeenRequest(path, headers))

    async def request(self, reader: asyncio.StreamReader) -> tuple[str, dict[str, str]]:
        path, headers = await read_request(reader)
        self.record(path, headers)
        return path, headers


async def _silent(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    await drain_until_eof(reader)


async def _garbage(reader: Reader, writer: Writer, srv: BadServer) -> None:
    # An SSH server speaks first, then rejects the client's "identification" and hangs up.
    writer.write(SSH_BANNER)
    await writer.drain()
    await srv.request(reader)
    writer.write(b"Invalid SSH identification string.\r\n")
    await writer.drain()


async def _bad_accept(reader: Reader, writer: Writer, srv: BadServer) -> None:
    _, headers = await srv.request(reader)
    writer.write(switching_protocols(headers.get("sec-websocket-key", ""), wrong=True))
    await writer.drain()
    await drain_until_eof(reader)


async def _not_found(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(simple("404 Not Found", b"Not Found\n", "text/plain; charset=utf-8"))
    await writer.drain()


async def _redirect(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    body = b"Moved Permanently. Redirecting to https://example.invalid/ws\n"
    writer.write(
        simple(
            "301 Moved Permanently",
            body,
            "text/plain; charset=utf-8",
            ("Location", "https://example.invalid/ws"),
        )
    )
    await writer.drain()


async def _close_after_101(reader: Reader, writer: Writer, srv: BadServer) -> None:
    _, headers = await srv.request(reader)
    writer.write(switching_protocols(headers.get("sec-websocket-key", "")))
    writer.write(close_frame(1011, "bye"))
    await writer.drain()
    # FIN right after the close frame; give the client a moment to answer so that closing the socket
    # with its close frame unread does not turn into an RST.
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(scaled(1.0)):
            await drain_until_eof(reader)


async def _reset(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _close_no_reply(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)


async def _web_page(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(simple("200 OK", WEB_PAGE, "text/html; charset=utf-8"))
    await writer.drain()


async def _welcome_frame(writer: asyncio.StreamWriter) -> None:
    welcome = json.dumps({"type": "welcome", "clientId": "user_" + secrets.token_hex(4)})
    writer.write(encode_frame(OP_TEXT, welcome.encode()))
    await writer.drain()


async def _no_pong(reader: Reader, writer: Writer, srv: BadServer) -> None:
    _, headers = await srv.request(reader)
    writer.write(switching_protocols(headers.get("sec-websocket-key", "")))
    await _welcome_frame(writer)
    # Never answer a ping, never answer (or send) a close: just swallow frames.
    await drain_until_eof(reader)


async def _slow(reader: Reader, writer: Writer, srv: BadServer) -> None:
    _, headers = await srv.request(reader)
    await asyncio.sleep(srv.delay)
    writer.write(switching_protocols(headers.get("sec-websocket-key", "")))
    await _welcome_frame(writer)
    # Then a well-behaved minimal session: echo data, answer pings, answer the close.
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            opcode, payload = await read_frame(reader)
            if opcode in (OP_TEXT, OP_BINARY):
                writer.write(encode_frame(opcode, payload))
            elif opcode == OP_PING:
                writer.write(encode_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                writer.write(encode_frame(OP_CLOSE, payload[:2]))
                await writer.drain()
                return
            await writer.drain()


async def _unauthorized(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(
        simple(
            "401 Unauthorized",
            b"Unauthorized\n",
            "text/plain; charset=utf-8",
            ("WWW-Authenticate", 'Basic realm="lokin"'),
        )
    )
    await writer.drain()


async def _http_no_length(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(
        http_response(
            "200 OK",
            [("Server", "lokin-bad-peer"), ("Content-Type", "text/plain; charset=utf-8")],
            b"hello from a plain HTTP server\n",
        )
    )
    await writer.drain()
    # No Content-Length and no close: the body never ends.
    await drain_until_eof(reader)


async def _replay(reader: Reader, writer: Writer, srv: BadServer) -> None:
    # The exact bytes given (a proxy's, a CDN's, a server's answer), then FIN: a body with no length ends there.
    await srv.request(reader)
    writer.write(srv.reply)
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(scaled(2.0)):
            await drain_until_eof(reader)


KINDS: dict[str, Handler] = {
    "replay": _replay,
    "silent": _silent,
    "garbage": _garbage,
    "bad-accept": _bad_accept,
    "not-found": _not_found,
    "redirect": _redirect,
    "close-after-101": _close_after_101,
    "reset": _reset,
    "close-no-reply": _close_no_reply,
    "web-page": _web_page,
    "no-pong": _no_pong,
    "slow": _slow,
    "unauthorized": _unauthorized,
    "http-no-length": _http_no_length,
}


def all_kinds() -> dict[str, Handler]:
    """:data:`KINDS` plus the hostile peers of :mod:`tests.peers.hostile` (imported here: no cycle)."""
    from tests.peers.hostile import HOSTILE_KINDS

    return {**KINDS, **HOSTILE_KINDS}


def start_bad_server(
    kind: str, *, delay: float = 1.5, host: str = LOOPBACK, port: int = 0, reply: bytes = b""
) -> Peer:
    """Start a bad server of ``kind`` (see :func:`all_kinds`) on a loop thread; ``delay`` is for "slow"
    and the hostile peers' timers; ``reply`` the bytes the "replay" kind answers with."""
    kinds = all_kinds()
    if kind not in kinds:
        raise ValueError(f"unknown bad_server kind {kind!r}; choose from {sorted(kinds)}")
    ensure_loopback(host)
    handle = kinds[kind]
    srv = BadServer(kind, delay, reply)

    async def on_connect(reader: Reader, writer: Writer) -> None:
        srv.writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            srv.tasks.add(task)
        try:
            async with asyncio.timeout(scaled(CONNECTION_LIFETIME)):
                await handle(reader, writer, srv)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only our own shutdown cancels; finishing quietly keeps asyncio.streams from logging it.
            pass
        finally:
            srv.writers.discard(writer)
            if task is not None:
                srv.tasks.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    thread = LoopThread(f"peer-bad-{kind}")

    async def start() -> asyncio.Server:
        return await asyncio.start_server(on_connect, host, port)

    try:
        server = thread.run(start())
    except BaseException:
        thread.stop()
        raise
    bound = server.sockets[0].getsockname()[1]

    def stop() -> None:
        async def close() -> None:
            server.close()
            # Connections still open (silent, no-pong...) are aborted; their handlers then return.
            for writer in list(srv.writers):
                writer.transport.abort()
            if srv.tasks:
                await asyncio.wait(list(srv.tasks), timeout=1)
            for task in list(srv.tasks):
                task.cancel()

        try:
            thread.run(close(), timeout=5)
        finally:
            thread.stop()

    peer = Peer(
        host=host,
        port=bound,
        url=f"ws://{url_host(host)}:{bound}/",
        kind=f"bad:{kind}",
        extra={"delay": delay} if kind == "slow" else {},
        _stop=stop,
    )
    srv.peer = peer
    return peer
