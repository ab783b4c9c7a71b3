"""Two ``serve --redis`` instances behave as one LOK IN room through a real redis-server, and survive it
going away and coming back."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from lokin_doctor.server import RunningServer, ServerConfig, running_server
from tests.peers._common import free_port
from tests.peers.redis import RedisPeer
from tests.server.conftest import http_get


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def health(server: RunningServer) -> dict[str, Any]:
    reply = await http_get(server.port, "/health")
    assert reply.status == 200
    doc: dict[str, Any] = json.loads(reply.body)
    return doc


async def join(url: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url)
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    return ws, welcome


async def drain(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every message received within ``seconds``."""
    got = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    return got


@pytest.fixture
async def pair(redis_server: RedisPeer) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two instances on the same Redis."""
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                running_server(ServerConfig(port=0, quiet=True, redis=redis_server.url, open_timeout=2))
            )
            for _ in range(2)
        ]
        for s in servers:
            await until(lambda s=s: s.health().get("broker", {}).get("state") == "up", 10, "broker up")
        yield servers[0], servers[1]


async def test_a_broadcast_reaches_every_client_of_both_instances_exactly_once(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    clients = [await join(a.url) for _ in range(3)] + [await join(b.url) for _ in range(2)]
    welcomes = [w for _, w in clients]
    instances = {w["instance"] for w in welcomes}
    assert instances == {(await health(a))["instance"], (await health(b))["instance"]} and len(instances) == 2
    ids = [w["clientId"] for w in welcomes]
    assert len(set(ids)) == 5
    for w in welcomes:  # unique across instances: the instance is part of the id
        assert re.fullmatch(r"user_[0-9a-f]{10}-[0-9a-f]{12}", w["clientId"]) and w["clientId"].endswith(
            w["instance"]
        )
    sender, sender_welcome = clients[0]
    sent_at = time.time() * 1000
    await sender.send(json.dumps({"type": "broadcast", "data": {"text": "bonjour"}}))
    for ws, _ in clients:
        got = await drain(ws, 1.0)
        assert len(got) == 1, got  # exactly once, the sender included
        assert got[0]["data"] == {"text": "bonjour"} and got[0]["from"] == sender_welcome["clientId"]
        assert 0 <= got[0]["time"] - int(sent_at) < 2000
    # And from the other side.
    await clients[4][0].send(json.dumps({"type": "broadcast", "n": 2}))
    for ws, _ in clients:
        got = await drain(ws, 0.6)
        assert [m["n"] for m in got] == [2]
    ha = await health(a)
    assert ha["status"] == "ok" and ha["broker"]["state"] == "up" and ha["broker"]["published"] == 1
    assert ha["broker"]["received"] == 1
    metrics = (await http_get(a.port, "/metrics")).text
    assert "lokin_broker_up 1.0" in metrics and "lokin_broker_published_total 1.0" in metrics
    for ws, _ in clients:
        await ws.close()


async def test_redis_killed_mid_run_degrades_then_recovers(
    pair: tuple[RunningServer, RunningServer], redis_server: RedisPeer
) -> None:
    a, b = pair
    (wa, _), (wa2, _), (wb, _) = await join(a.url), await join(a.url), await join(b.url)
    redis_server.kill()
    await until(lambda: a.health()["status"] == "degraded", 5, "degraded /health")
    doc = await health(a)
    assert doc["status"] == "degraded" and doc["broker"]["state"] == "down"
    assert doc["reason"].startswith("Redis down: ") and "this instance's clients only" in doc["reason"]
    assert "lokin_broker_up 0.0" in (await http_get(a.port, "/metrics")).text
    # Local service goes on: echo, ping, and a broadcast to this instance's clients.
    started = time.monotonic()
    await wa.send("echo?")
    assert await wa.recv() == "echo?"
    await wa.send(json.dumps({"type": "ping", "id": 1}))
    assert json.loads(await wa.recv())["type"] == "pong"
    assert time.monotonic() - started < 0.5  # no stall while the broker reconnects
    late, _ = await join(a.url)  # handshakes too
    await wa.send(json.dumps({"type": "broadcast", "n": "down"}))
    for ws in (wa, wa2, late):
        assert [m["n"] for m in await drain(ws, 0.5)] == ["down"]
    assert await drain(wb, 0.3) == []  # not across: Redis is gone (no replay later either)
    await asyncio.sleep(0.5)
    redis_server.start()  # same port
    await until(lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 15, "recovered")
    await wb.send(json.dumps({"type": "broadcast", "n": "back"}))
    for ws in (wa, wa2, late, wb):
        assert [m["n"] for m in await drain(ws, 1.0)] == ["back"]
    assert (await health(a))["broker"]["failures"] >= 1


async def test_redis_unreachable_at_start_serves_degraded() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with running_server(ServerConfig(port=0, quiet=True, redis=url, open_timeout=1)) as server:
        ws, welcome = await join(server.url)  # serving at once, without waiting for Redis
        await until(lambda: server.health()["status"] == "degraded", 5, "degraded")
        doc = await health(server)
        assert doc["broker"]["state"] == "down" and "ConnectionError" in doc["broker"]["reason"]
        await ws.send(json.dumps({"type": "broadcast", "x": 1}))
        assert json.loads(await ws.recv())["from"] == welcome["clientId"]
        await ws.close()


async def test_without_redis_health_has_the_instance_and_no_broker(server: RunningServer) -> None:
    doc = await health(server)
    assert doc["status"] == "ok" and re.fullmatch(r"[0-9a-f]{12}", doc["instance"]) and "broker" not in doc
    ws, welcome = await join(server.url)
    assert welcome["instance"] == doc["instance"] and re.fullmatch(r"user_[0-9a-f]{10}", welcome["clientId"])
    await ws.close()


async def test_a_frozen_redis_stalls_neither_the_loop_nor_the_handshakes(
    pair: tuple[RunningServer, RunningServer], redis_server: RedisPeer
) -> None:
    import os
    import signal

    a, b = pair
    (wa, _), (wb, _) = await join(a.url), await join(b.url)
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)  # the TCP connections stay up; nothing answers any more
    try:
        await wa.send(json.dumps({"type": "broadcast", "n": "frozen"}))  # its PUBLISH waits on Redis
        assert [m["n"] for m in await drain(wa, 0.3)] == ["frozen"]
        for _ in range(5):  # meanwhile handshakes and echoes take no longer than usual
            started = time.monotonic()
            ws, _ = await join(a.url)
            await ws.send("still here")
            assert await ws.recv() == "still here"
            assert time.monotonic() - started < 0.5
            await ws.close()
        # The unanswered PUBLISH (bounded by the broker's 2 s) turns the broker down.
        await until(lambda: a.health()["status"] == "degraded", 6, "degraded while Redis is frozen")
        assert "no answer from Redis in time" in a.health()["broker"]["reason"]
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    await until(lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 15, "recovered")
    await wb.send(json.dumps({"type": "broadcast", "n": "thawed"}))
    assert [m["n"] for m in await drain(wa, 1.0)] == ["thawed"]
