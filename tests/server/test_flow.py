"""Behaviour of the sans-I/O core that the older tests did not pin: fragmented messages, invalid
UTF-8, the keepalive timeout (one timer for all connections), backpressure and the broadcast cap."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

from websockets.asyncio.client import connect

from lokin_doctor.server import app as app_module

from .conftest import wait_until


async def raw_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw WebSocket client (never answers pings), after the 101 and the welcome."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        await read_frame(reader)  # welcome
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


def masked_frame(opcode: int, payload: bytes) -> bytes:
    if len(payload) < 126:
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload))
    return head + b"\0\0\0\0" + payload


async def test_fragmented_messages_are_echoed_whole(server: Any) -> None:
    async with connect(server.url) as ws:
        await ws.recv()
        await ws.send(iter(["ab", "cd", "é"]))
        async with asyncio.timeout(5):
            assert await ws.recv() == "abcdé"
        await ws.send(iter([b"\x00\x01", b"\x02"]))
        async with asyncio.timeout(5):
            assert await ws.recv() == b"\x00\x01\x02"
        await ws.send(iter(['{"type": ', '"ping", "id": 3}']))
        async with asyncio.timeout(5):
            assert json.loads(await ws.recv())["id"] == 3


async def test_invalid_utf8_closes_with_1007(server: Any) -> None:
    reader, writer = await raw_open(server.port)
    writer.write(masked_frame(0x1, b"\xff\xfe"))
    async with asyncio.timeout(5):
        opcode, payload = await read_frame(reader)
    assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == 1007
    writer.close()


async def test_silent_client_is_closed_with_1011_after_the_ping_timeout(make_server: Any) -> None:
    async with make_server(ping_interval=0.2, ping_timeout=0.2) as srv:
        reader, writer = await raw_open(srv.port)
        codes = []
        async with asyncio.timeout(5):
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 0x8:
                    codes.append(struct.unpack("!H", payload[:2])[0])
                    break
        assert codes == [1011]
        writer.close()
        await wait_until(lambda: srv.connections == 0, what="the dropped client to be released")


async def test_client_answering_pings_stays(make_server: Any) -> None:
    async with (
        make_server(ping_interval=0.1, ping_timeout=0.1) as srv,
        connect(srv.url, ping_interval=None) as ws,
    ):
        await ws.recv()
        await asyncio.sleep(0.8)  # several keepalive rounds; the client library answers the pings
        await ws.send("still here")
        async with asyncio.timeout(5):
            assert await ws.recv() == "still here"


async def test_client_that_does_not_read_is_not_read_either(make_server: Any) -> None:
    # Echoes pile up in the server's write buffer: over WRITE_HIGH the server stops reading, so
    # the client's own writes stop draining. Reading the echoes lets the server resume.
    async with make_server(ping_interval=None) as srv:
        reader, writer = await raw_open(srv.port)
        payload = os.urandom(8192)
        frame = masked_frame(0x2, payload)
        sent = 0
        blocked = False
        for _ in range(4000):  # up to 32 MB: far more than the loopback socket buffers hold
            writer.write(frame)
            sent += 1
            if sent % 16 == 0:
                try:
                    await asyncio.wait_for(writer.drain(), 1.0)
                except TimeoutError:
                    blocked = True
                    break
        assert blocked, "the server kept reading a client that does not read"
        assert srv.health()["messages_in"] < sent
        async with asyncio.timeout(20):
            for _ in range(sent):
                opcode, echoed = await read_frame(reader)
                assert opcode == 0x2 and echoed == payload
        assert srv.health()["messages_in"] == sent
        writer.close()


async def test_broadcast_target_over_the_cap_is_closed_with_1008(make_server: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(app_module, "BROADCAST_DROP_LIMIT", 64 * 1024)
    # A long close timeout: the silent client reads its backlog, close frame included, before the abort.
    async with make_server(ping_interval=None, shutdown_timeout=10) as srv:
        reader, writer = await raw_open(srv.port)  # does not read until the server gave up on it

        def failed_with_1008() -> bool:
            return any(
                c.protocol.close_sent is not None and c.protocol.close_sent.code == 1008
                for c in list(srv._app._clients)
            )

        async with connect(srv.url) as sender:
            await sender.recv()
            big = {"type": "broadcast", "data": "y" * 60_000}
            async with asyncio.timeout(10):
                for _ in range(200):  # 12 MB for the silent client: more than its socket buffers
                    await sender.send(json.dumps(big))
                    await sender.recv()
                    if failed_with_1008():
                        break
            assert failed_with_1008()
            # What the silent client finds at the end of its backlog: a close frame with code 1008.
            async with asyncio.timeout(10):
                while True:
                    opcode, payload = await read_frame(reader)
                    if opcode == 0x8:
                        break
            (code,) = struct.unpack("!H", payload[:2])
            assert code == 1008
            assert b"too slow" in payload[2:]
            writer.close()
            await wait_until(lambda: srv.connections == 1, what="the slow client to be dropped")
