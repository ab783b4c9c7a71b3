"""The LOK IN protocol over real loopback WebSocket connections: welcome, ping/pong, echo,
broadcast, keepalive, compression, and the API of RunningServer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
from typing import Any

from websockets.asyncio.client import connect

from lokin_doctor import __version__
from lokin_doctor.server import RunningServer


async def recv_json(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        message = await ws.recv()
    assert isinstance(message, str)
    data = json.loads(message)
    assert isinstance(data, dict)
    return data


async def test_running_server_api(server: RunningServer) -> None:
    assert server.port > 0  # port 0 was asked: the real port is reported
    assert server.url == f"ws://127.0.0.1:{server.port}/"
    assert server.http_url == f"http://127.0.0.1:{server.port}/"
    assert server.host == "127.0.0.1"
    assert server.connections == 0


async def test_welcome_carries_a_client_id(server: RunningServer) -> None:
    async with connect(server.url) as ws:
        welcome = await recv_json(ws)
    assert welcome["type"] == "welcome"
    assert re.fullmatch(r"user_[0-9a-f]{10}", welcome["clientId"])
    assert welcome["server"] == "lokin-doctor"
    assert welcome["version"] == __version__


async def test_client_ids_are_unique(server: RunningServer) -> None:
    async with connect(server.url) as a, connect(server.url) as b:
        assert (await recv_json(a))["clientId"] != (await recv_json(b))["clientId"]


async def test_ping_gets_pong_with_the_same_id(server: RunningServer) -> None:
    async with connect(server.url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "ping", "id": 42}))
        pong = await recv_json(ws)
    assert pong["type"] == "pong"
    assert pong["id"] == 42
    assert isinstance(pong["time"], int)


async def test_text_is_echoed(server: RunningServer) -> None:
    async with connect(server.url) as ws:
        await recv_json(ws)
        for text in ("hello", '{"type": "chat", "text": "salut"}', "[1, 2]", "{not json", "é✓"):
            await ws.send(text)
            async with asyncio.timeout(5):
                assert await ws.recv() == text


async def test_binary_is_echoed_as_binary(server: RunningServer) -> None:
    payload = os.urandom(3000)
    async with connect(server.url) as ws:
        await recv_json(ws)
        await ws.send(payload)
        async with asyncio.timeout(5):
            echoed = await ws.recv()
    assert isinstance(echoed, bytes)
    assert echoed == payload


async def test_broadcast_reaches_every_client(server: RunningServer) -> None:
    async with connect(server.url) as a, connect(server.url) as b:
        a_id = (await recv_json(a))["clientId"]
        await recv_json(b)
        await a.send(json.dumps({"type": "broadcast", "data": {"text": "bonjour"}, "from": "spoofed"}))
        got_b = await recv_json(b)
        got_a = await recv_json(a)
    for got in (got_a, got_b):
        assert got["type"] == "broadcast"
        assert got["data"] == {"text": "bonjour"}
        assert got["from"] == a_id  # set by the server, not by the sender


async def test_any_path_is_a_websocket_endpoint(server: RunningServer) -> None:
    for path in ("/", "/ws", "/socket/deep?x=1", "/health", "/metrics"):
        async with connect(f"ws://127.0.0.1:{server.port}{path}") as ws:
            assert (await recv_json(ws))["type"] == "welcome"


async def test_no_compression_by_default(server: RunningServer) -> None:
    async with connect(server.url, compression="deflate") as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_compression_is_opt_in(make_server: Any) -> None:
    async with make_server(compression=True) as srv, connect(srv.url, compression="deflate") as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        await recv_json(ws)
        await ws.send("x" * 5000)
        async with asyncio.timeout(5):
            assert await ws.recv() == "x" * 5000


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def test_server_sends_keepalive_pings(make_server: Any) -> None:
    # A raw client that never answers: we see the server's ping frames on the wire.
    async with make_server(ping_interval=0.2, ping_timeout=5) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            opcode, payload = await _read_frame(reader)
            assert opcode == 0x1 and b"welcome" in payload
            opcode, _ = await _read_frame(reader)
        assert opcode == 0x9  # ping
        writer.close()
