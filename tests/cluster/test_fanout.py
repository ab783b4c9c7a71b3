"""The broadcast fan-out writes one pre-serialized frame to every client: same bytes, same order."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

from websockets.asyncio.client import connect

from lokin_doctor.server import RunningServer, ServerConfig, running_server


def masked(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + b"\0\0\0\0" + data


async def read_frames(reader: asyncio.StreamReader, n: int) -> list[str]:
    out = []
    async with asyncio.timeout(5):
        for _ in range(n):
            head = await reader.readexactly(2)
            assert head[0] == 0x81 and head[1] <= 126, head  # unmasked text frames
            length = head[1] if head[1] < 126 else int.from_bytes(await reader.readexactly(2), "big")
            out.append((await reader.readexactly(length)).decode())
    return out


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with asyncio.timeout(5):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    await read_frames(reader, 1)  # the welcome
    return reader, writer


async def test_replies_and_broadcasts_keep_their_order_in_one_read(server: RunningServer) -> None:
    reader, writer = await raw_client(server.port)
    other, other_writer = await raw_client(server.port)
    # One TCP segment: an echo, a broadcast, an echo, a broadcast.
    writer.write(
        masked("a")
        + masked('{"type": "broadcast", "n": 1}')
        + masked("c")
        + masked('{"type": "broadcast", "n": 2}')
    )
    got = await read_frames(reader, 4)
    assert got[0] == "a" and json.loads(got[1])["n"] == 1 and got[2] == "c" and json.loads(got[3])["n"] == 2
    seen = await read_frames(other, 2)
    assert [json.loads(m)["n"] for m in seen] == [1, 2]
    assert seen[0] == got[1]  # the same bytes for every client
    for w in (writer, other_writer):
        w.close()


async def test_broadcast_with_compression_still_reaches_everyone() -> None:
    async with AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            running_server(ServerConfig(port=0, quiet=True, compression=True))
        )
        a = await stack.enter_async_context(connect(server.url))
        b = await stack.enter_async_context(connect(server.url, compression=None))
        for ws in (a, b):
            await ws.recv()
        await a.send(json.dumps({"type": "broadcast", "z": "é" * 200}))
        for ws in (a, b):
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["z"] == "é" * 200
