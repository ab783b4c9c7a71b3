"""Plain HTTP on the WebSocket port: /health, /metrics, the test page, 426 elsewhere."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from lokin_doctor import __version__
from lokin_doctor.server import RunningServer

from .conftest import http_get


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_health_is_json(server: RunningServer) -> None:
    async with connect(server.url) as ws:
        await ws.recv()
        reply = await http_get(server.port, "/health")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    health = json.loads(reply.body)
    assert health["status"] == "ok"
    assert health["version"] == __version__
    assert health["connections"] == 1
    assert health["uptime_s"] >= 0
    assert health["limits"]["max_connections"] == 10000
    assert health["limits"]["max_message_size"] == 1 << 20
    assert health == {**health, "url": server.url, "tls": False, "compression": False}


async def test_metrics_have_the_counters(make_server: Any) -> None:
    async with make_server(allow_origins=("https://lokin.app",)) as srv, connect(srv.url) as ws:
        await ws.recv()  # welcome: 1 out
        await ws.send("hello")  # 1 in
        await ws.recv()  # echo: 2 out
        with pytest.raises(InvalidStatus):
            async with connect(srv.url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        reply = await http_get(srv.port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    found = samples(reply.text)
    assert found[("lokin_connections_open", ())] == 1
    assert found[("lokin_connections_total", ())] == 1
    assert found[("lokin_messages_received_total", ())] == 1
    assert found[("lokin_messages_sent_total", ())] == 2
    assert found[("lokin_rejections_total", (("reason", "origin"),))] == 1
    assert found[("lokin_rejections_total", (("reason", "max_per_ip"),))] == 0
    assert found[("lokin_server_info", (("version", __version__),))] == 1


async def test_each_server_has_its_own_registry(make_server: Any) -> None:
    async with make_server() as one, make_server() as two, connect(one.url) as ws:
        await ws.recv()
        assert samples((await http_get(one.port, "/metrics")).text)[("lokin_connections_total", ())] == 1
        assert samples((await http_get(two.port, "/metrics")).text)[("lokin_connections_total", ())] == 0


@pytest.mark.parametrize("path", ["/", "/test", "/test-websocket.html", "/?retryDelay=200&maxRetries=5"])
async def test_page_is_served(server: RunningServer, path: str) -> None:
    reply = await http_get(server.port, path)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    for marker in ('id="status"', 'id="client-id"', 'id="log"', 'id="url"', "lokinAttempts", "retryDelay"):
        assert marker in reply.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", reply.text)  # self-contained: no CDN
    csp = reply.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "default-src 'none'" in csp


async def test_plain_get_elsewhere_is_426(server: RunningServer) -> None:
    reply = await http_get(server.port, "/chat")
    assert reply.status == 426
    assert reply.headers["upgrade"] == "websocket"
    assert "WebSocket endpoint" in reply.text


async def test_stripped_upgrade_headers_get_websockets_426_not_the_page(server: RunningServer) -> None:
    # What a proxy without "proxy_set_header Upgrade/Connection" forwards: the key, no Upgrade.
    reply = await http_get(
        server.port, "/", {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    )
    assert reply.status == 426
    assert "Connection" in reply.text and "<html" not in reply.text


async def test_other_methods_get_405(server: RunningServer) -> None:
    reply = await http_get(server.port, "/health", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET"
