"""Hostile and subtly broken servers (raw asyncio streams), started through ``bad_server(kind)``.

Each kind answers every connection the same way. The timers (drop "a moment later") use the
``delay`` the fixture passes (default 1.5 s; tests pass a short one).

* ``reserved-opcode``: valid 101 + welcome, then a frame with the reserved opcode 0x3.
* ``bad-rsv``: valid 101 + welcome, then a text frame with RSV2 set (no extension negotiated).
* ``bad-utf8-greeting``: valid 101, then a text frame whose payload is not UTF-8 (``b"\\xff\\xfe..."``).
* ``welcome-then-close``: 101 + welcome, answers pings, then ``delay`` s later close 1011 "handler crashed".
* ``welcome-then-1008``: the same with close 1008 "auth timeout".
* ``welcome-then-cut``: 101 + welcome, answers pings, then ``delay`` s later RST (no close frame).
* ``flood``: 101, then text frames of 64 KiB as fast as the client takes them; never answers a ping.
* ``giant-frame``: 101, then a binary frame header announcing 2**62 bytes, then zeros forever.
* ``huge-headers``: ``HTTP/1.1 101`` then header lines of 1 KiB, forever (the head never ends).
* ``long-header-line``: a 101 whose one header line is 64 KiB long.
* ``subprotocol-not-offered``: 101 with ``Sec-WebSocket-Protocol: chat`` (whatever the client offered).
* ``extension-not-offered``: 101 with ``Sec-WebSocket-Extensions: x-webkit-deflate-frame``.
* ``extension-bad-params``: 101 with ``permessage-deflate; server_max_window_bits=7`` (valid: 8-15).
* ``subprotocol-required``: 400 with websockets' body "missing subprotocol" when none is offered (the
  real thing is :func:`start_subprotocol_server`; this one also says which to offer).
* ``reset-at-accept``: RST right at accept, before reading a byte (SO_LINGER 0).
* ``welcome-idle``: 101 + welcome, answers pings and the close: healthy, for timing the linger window.
* ``fragmented-utf8-greeting``: a valid UTF-8 welcome split inside a character across two fragments.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from tests.peers.bad import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    BadServer,
    Handler,
    Reader,
    Writer,
    _welcome_frame,
    accept_key,
    close_frame,
    drain_until_eof,
    encode_frame,
    http_response,
    read_frame,
    simple,
    switching_protocols,
)
from tests.peers.peer import Peer


async def _upgrade(reader: Reader, writer: Writer, srv: BadServer, *extra: tuple[str, str]) -> None:
    _, headers = await srv.request(reader)
    key = headers.get("sec-websocket-key", "")
    writer.write(
        http_response(
            "101 Switching Protocols",
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key)),
                ("Server", "lokin-hostile-peer"),
                *extra,
            ],
        )
    )
    await writer.drain()


async def _serve_frames(reader: Reader, writer: Writer, until: float | None) -> bool:
    """Answer pings and a close until ``until`` (loop time); True when the client closed first."""
    loop = asyncio.get_running_loop()
    while True:
        timeout = None if until is None else max(0.0, until - loop.time())
        try:
            async with asyncio.timeout(timeout):
                opcode, payload = await read_frame(reader)
        except TimeoutError:
            return False
        if opcode == OP_PING:
            writer.write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            writer.write(encode_frame(OP_CLOSE, payload[:2]))
            await writer.drain()
            return True
        await writer.drain()


async def _bad_frame_after_welcome(reader: Reader, writer: Writer, srv: BadServer, frame: bytes) -> None:
    await _upgrade(reader, writer, srv)
    await _welcome_frame(writer)
    writer.write(frame)
    await writer.drain()
    await drain_until_eof(reader)


async def _reserved_opcode(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _bad_frame_after_welcome(reader, writer, srv, bytes([0x83, 2]) + b"hi")


async def _bad_rsv(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _bad_frame_after_welcome(reader, writer, srv, bytes([0x80 | 0x20 | OP_TEXT, 2]) + b"hi")


async def _bad_utf8_greeting(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv)
    writer.write(encode_frame(OP_TEXT, b"\xff\xfe welcome \xc3"))
    await writer.drain()
    await drain_until_eof(reader)


async def _welcome_then(
    reader: Reader, writer: Writer, srv: BadServer, code: int | None, reason: str
) -> None:
    await _upgrade(reader, writer, srv)
    await _welcome_frame(writer)
    loop = asyncio.get_running_loop()
    if await _serve_frames(reader, writer, loop.time() + srv.delay):
        return
    if code is None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return
    writer.write(close_frame(code, reason))
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2.0):
            await drain_until_eof(reader)


async def _fragmented_utf8_greeting(reader: Reader, writer: Writer, srv: BadServer) -> None:
    # Valid UTF-8 split inside a character across two fragments: a browser takes it whole.
    await _upgrade(reader, writer, srv)
    text = '{"type":"welcome","clientId":"user_caf\u00e9","note":"\u00e9t\u00e9"}'.encode()
    cut = text.index(b"\xc3") + 1
    writer.write(encode_frame(OP_TEXT, text[:cut], fin=False) + encode_frame(0x0, text[cut:]))
    await writer.drain()
    await _serve_frames(reader, writer, None)


async def _welcome_then_close(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _welcome_then(reader, writer, srv, 1011, "handler crashed")


async def _welcome_then_1008(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _welcome_then(reader, writer, srv, 1008, "auth timeout")


async def _welcome_then_cut(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _welcome_then(reader, writer, srv, None, "")


async def _welcome_idle(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv)
    await _welcome_frame(writer)
    await _serve_frames(reader, writer, None)


async def _flood(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv)
    frame = encode_frame(OP_TEXT, b"x" * 65536)
    drainer = asyncio.ensure_future(drain_until_eof(reader))
    try:
        while not drainer.done():
            writer.write(frame * 16)
            await writer.drain()
    finally:
        drainer.cancel()


async def _giant_frame(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv)
    writer.write(bytes([0x80 | OP_BINARY, 127]) + struct.pack("!Q", 2**62))
    drainer = asyncio.ensure_future(drain_until_eof(reader))
    zeros = bytes(1 << 20)
    try:
        while not drainer.done():
            writer.write(zeros)
            await writer.drain()
    finally:
        drainer.cancel()


async def _huge_headers(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
    line = b"X-Pad: " + b"a" * 1017 + b"\r\n"
    drainer = asyncio.ensure_future(drain_until_eof(reader))
    try:
        while not drainer.done():
            writer.write(line * 64)
            await writer.drain()
    finally:
        drainer.cancel()


async def _long_header_line(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await srv.request(reader)
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-Long: " + b"a" * 65536 + b"\r\n\r\n"
    )
    await writer.drain()
    await drain_until_eof(reader)


async def _subprotocol_not_offered(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv, ("Sec-WebSocket-Protocol", "chat"))
    await drain_until_eof(reader)


async def _extension_not_offered(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(reader, writer, srv, ("Sec-WebSocket-Extensions", "x-webkit-deflate-frame"))
    await drain_until_eof(reader)


async def _extension_bad_params(reader: Reader, writer: Writer, srv: BadServer) -> None:
    await _upgrade(
        reader, writer, srv, ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=7")
    )
    await drain_until_eof(reader)


async def _subprotocol_required(reader: Reader, writer: Writer, srv: BadServer) -> None:
    _, headers = await srv.request(reader)
    if "sec-websocket-protocol" in headers and "lokin.v1" in headers["sec-websocket-protocol"]:
        writer.write(
            switching_protocols(headers.get("sec-websocket-key", "")).replace(
                b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: lokin.v1\r\n\r\n"
            )
        )
        await writer.drain()
        await _welcome_frame(writer)
        await _serve_frames(reader, writer, None)
        return
    body = b"Failed to open a WebSocket connection: missing subprotocol; expected one of lokin.v1.\n"
    writer.write(simple("400 Bad Request", body, "text/plain; charset=utf-8"))
    await writer.drain()


async def _reset_at_accept(reader: Reader, writer: Writer, srv: BadServer) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


HOSTILE_KINDS: dict[str, Handler] = {
    "reserved-opcode": _reserved_opcode,
    "bad-rsv": _bad_rsv,
    "bad-utf8-greeting": _bad_utf8_greeting,
    "welcome-then-close": _welcome_then_close,
    "welcome-then-1008": _welcome_then_1008,
    "welcome-then-cut": _welcome_then_cut,
    "welcome-idle": _welcome_idle,
    "fragmented-utf8-greeting": _fragmented_utf8_greeting,
    "flood": _flood,
    "giant-frame": _giant_frame,
    "huge-headers": _huge_headers,
    "long-header-line": _long_header_line,
    "subprotocol-not-offered": _subprotocol_not_offered,
    "extension-not-offered": _extension_not_offered,
    "extension-bad-params": _extension_bad_params,
    "subprotocol-required": _subprotocol_required,
    "reset-at-accept": _reset_at_accept,
}

__all__ = ["HOSTILE_KINDS", "Peer"]
