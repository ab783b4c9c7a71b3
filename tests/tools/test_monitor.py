"""``lokin-doctor monitor``: the server process, its ESTABLISHED connections, /health."""

from __future__ import annotations

import asyncio
import os
from contextlib import AsyncExitStack
from typing import Any

from websockets.asyncio.client import connect

from tests.peers._common import free_port

from .conftest import cli

K = 3


async def test_monitor_once_json_sees_the_open_connections_and_the_pid(serve: Any) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(K):
            ws = await stack.enter_async_context(connect(serve.url, open_timeout=5))
            await asyncio.wait_for(ws.recv(), 5)  # the welcome: the connection is fully open
        run = await cli("monitor", "--port", str(serve.port), "--once", "--json")
    assert run.code == 0, run.stdout + run.stderr
    doc = run.doc
    assert doc["port"] == serve.port and doc["listening"] is True
    assert doc["established"]["count"] == K
    assert doc["established"]["top_remotes"] == [{"address": "127.0.0.1", "count": K}]
    assert doc["server"]["pid"] == os.getpid()  # the server runs in this test process
    assert doc["server"]["rss_bytes"] > 0 and doc["server"]["uptime_s"] >= 0
    assert {li["pid"] for li in doc["listeners"]} == {os.getpid()}
    health = doc["health"]
    assert health["status"] == 200
    assert health["body"]["connections"] == K


async def test_monitor_once_nothing_listening_exits_1() -> None:
    port = free_port()
    run = await cli("monitor", "--port", str(port), "--once", "--json")
    assert run.code == 1
    doc = run.doc
    assert doc["listening"] is False and doc["server"] is None and doc["health"] is None
    assert doc["established"]["count"] == 0


async def test_monitor_count_bounds_the_json_lines(serve: Any) -> None:
    run = await cli("monitor", "--port", str(serve.port), "--json", "--count", "2", "--interval", "0.2")
    assert run.code == 0
    lines = run.stdout.splitlines()
    assert len(lines) == 2


async def test_monitor_text_view_once(serve: Any) -> None:
    run = await cli("monitor", "--port", str(serve.port), "--once")
    assert run.code == 0
    assert f"port {serve.port}" in run.stdout
    assert "ESTABLISHED" in run.stdout and "/health" in run.stdout
    assert str(os.getpid()) in run.stdout


async def test_monitor_bad_port_is_a_usage_error() -> None:
    run = await cli("monitor", "--port", "70000", "--once")
    assert run.code == 2
