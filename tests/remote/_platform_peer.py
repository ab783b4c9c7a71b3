"""A raw WebSocket peer that answers as if a CDN or load balancer were in front: its 101 carries the
platform's real response headers (as the vendors send them on a proxied upgrade), then it pings every
``ping_every`` seconds (or never) and cuts the TCP connection without a close frame ``drop_after``
seconds after the 101, or after ``drop_idle`` seconds without a frame from it: what the platform's
lifetime or idle timeout does. With ``engineio`` it is a minimal Engine.IO 4 server (the polling open
packet, the WebSocket open packet, the Socket.IO CONNECT answer) announcing that ping interval.

Every connection is bounded by :data:`LIFETIME`; the peer runs on a loop thread and is stopped by the
fixture that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.peers._common import LOOPBACK, LoopThread, scaled
from tests.peers.bad import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    accept_key,
    encode_frame,
    http_response,
    read_frame,
    read_request,
)
from tests.peers.peer import Peer

#: The longest any connection is kept open.
LIFETIME = 60.0
DATE = ("Date", "Thu, 03 Dec 2026 06:40:12 GMT")

#: The headers each platform adds to a proxied 101 (captured shapes: Cloudflare's cf-ray and
#: Server: cloudflare; CloudFront's Via/X-Cache/X-Amz-Cf-*; an ALB with stickiness sets AWSALB and
#: AWSALBCORS; Google's front end adds Via: 1.1 google; Front Door X-Azure-Ref; Application Gateway's
#: affinity cookie; Fly's Server/Via/Fly-Request-Id; Heroku's Via: 1.1 vegur and its NEL reporting).
HEADERS: dict[str, list[tuple[str, str]]] = {
    "cloudflare": [
        DATE,
        ("CF-Cache-Status", "DYNAMIC"),
        ("Server", "cloudflare"),
        ("CF-RAY", "8ec2b9d1f8a5e1c4-CDG"),
        ("alt-svc", 'h3=":443"; ma=86400'),
    ],
    "cloudfront": [
        DATE,
        ("X-Cache", "Miss from cloudfront"),
        ("Via", "1.1 8f22423015641505b8c857a37450d6c0.cloudfront.net (CloudFront)"),
        ("X-Amz-Cf-Pop", "CDG52-P4"),
        ("X-Amz-Cf-Id", "lK3tq2bsu9y2dPmWrzD1BdFOH0ZRe3fMl8nYQm0z1fy5bQ9k0Pa1Tw=="),
    ],
    "aws-elb": [
        DATE,
        ("Set-Cookie", "AWSALB=Yz1m3G0vRk1yQm9xTnRj; Expires=Thu, 10 Dec 2026 06:40:12 GMT; Path=/"),
        (
            "Set-Cookie",
            "AWSALBCORS=Yz1m3G0vRk1yQm9xTnRj; Expires=Thu, 10 Dec 2026 06:40:12 GMT; Path=/; SameSite=None; Secure",
        ),
    ],
    "google-lb": [DATE, ("Via", "1.1 google"), ("Alt-Svc", 'h3=":443"; ma=2592000,h3-29=":443"; ma=2592000')],
    "azure-front-door": [
        DATE,
        ("x-azure-ref", "20261203T064012Z-r1c6b46f8bd6nrjkhC1CDG2m2n00000003ag00000000f2xm"),
        ("X-Cache", "CONFIG_NOCACHE"),
    ],
    "azure-app-gateway": [
        DATE,
        ("Set-Cookie", "ApplicationGatewayAffinityCORS=5d4e9c1b0f2a; Path=/; SameSite=None; Secure"),
        ("Set-Cookie", "ApplicationGatewayAffinity=5d4e9c1b0f2a; Path=/"),
    ],
    "fly": [
        DATE,
        ("Server", "Fly/51ee4ef9 (2024-11-20)"),
        ("Via", "1.1 fly.io"),
        ("Fly-Request-Id", "01JE3W8Q4Z9V6K2T1M5N7P8R0S-cdg"),
    ],
    "heroku": [
        DATE,
        (
            "Report-To",
            '{"group":"heroku-nel","max_age":3600,"endpoints":[{"url":"https://nel.heroku.com/reports?ts=1764744012"}]}',
        ),
        ("Nel", '{"report_to":"heroku-nel","max_age":3600,"success_fraction":0.005,"failure_fraction":0.05}'),
        ("Via", "1.1 vegur"),
    ],
}


@dataclass
class PlatformPeer:
    headers: list[tuple[str, str]]
    ping_every: float | None = None
    drop_after: float | None = None
    drop_idle: float | None = None
    engineio: int | None = None  # the pingInterval (ms) an Engine.IO open packet announces
    pings_sent: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def open_packet(self) -> str:
        return "0" + json.dumps(
            {
                "sid": "Pq3sH7dK2mXbA0zUAAAB",
                "upgrades": ["websocket"],
                "pingInterval": self.engineio,
                "pingTimeout": 20000,
                "maxPayload": 1000000,
            }
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path, headers = await read_request(reader)
        if "upgrade" not in headers.get("connection", "").lower():
            if self.engineio is not None and "transport=polling" in path:
                body = self.open_packet().encode()
                writer.write(
                    http_response(
                        "200 OK",
                        [
                            *self.headers,
                            ("Content-Type", "text/plain; charset=UTF-8"),
                            ("Content-Length", str(len(body))),
                        ],
                        body,
                    )
                )
            else:
                writer.write(http_response("404 Not Found", [("Content-Length", "0")]))
            await writer.drain()
            return
        writer.write(
            http_response(
                "101 Switching Protocols",
                [
                    ("Connection", "upgrade"),
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Accept", accept_key(headers.get("sec-websocket-key", ""))),
                    *self.headers,
                ],
            )
        )
        if self.engineio is not None:
            writer.write(encode_frame(OP_TEXT, self.open_packet().encode()))
        await writer.drain()
        loop = asyncio.get_running_loop()
        opened = last_sent = loop.time()
        next_ping = opened + self.ping_every if self.ping_every else None
        while True:
            now = loop.time()
            deadlines = [d for d in (next_ping,) if d is not None]
            if self.drop_after is not None:
                deadlines.append(opened + self.drop_after)
            if self.drop_idle is not None:
                deadlines.append(last_sent + self.drop_idle)
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            try:
                async with asyncio.timeout(wait):
                    opcode, payload = await read_frame(reader)
            except TimeoutError:
                now = loop.time()
                if (self.drop_after is not None and now >= opened + self.drop_after) or (
                    self.drop_idle is not None and now >= last_sent + self.drop_idle
                ):
                    return  # the platform's cut: FIN, no close frame
                if next_ping is not None and now >= next_ping:
                    writer.write(encode_frame(OP_PING, b"edge"))
                    await writer.drain()
                    self.pings_sent += 1
                    last_sent = now
                    next_ping = now + (self.ping_every or 0)
                continue
            if opcode == OP_PING:
                writer.write(encode_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                writer.write(encode_frame(OP_CLOSE, payload[:2]))
                await writer.drain()
                return
            elif opcode == OP_TEXT and payload.startswith(b"40") and self.engineio is not None:
                writer.write(encode_frame(OP_TEXT, b'40{"sid":"Zk2L0sJx9cQyQ3aHAAAC"}'))
            elif opcode == OP_PONG:
                pass
            await writer.drain()


def start_platform_peer(peer: PlatformPeer) -> Peer:
    thread = LoopThread("peer-platform")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.writers.add(writer)
        try:
            async with asyncio.timeout(scaled(LIFETIME)):
                await peer.handle(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            peer.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(on_connect, LOOPBACK, 0)

    server = thread.run(start())
    port = server.sockets[0].getsockname()[1]

    def stop() -> None:
        async def close() -> None:
            server.close()
            for w in list(peer.writers):
                w.transport.abort()

        try:
            thread.run(close(), timeout=5)
        finally:
            thread.stop()

    return Peer(host=LOOPBACK, port=port, url=f"ws://{LOOPBACK}:{port}/", kind="platform", _stop=stop)


@pytest.fixture
def platform_peer() -> Iterator[Callable[..., Peer]]:
    """``platform_peer("cloudflare", ping_every=..., drop_after=..., drop_idle=..., engineio=...)``: a raw
    peer replaying that platform's 101 headers (``None``: no platform headers at all)."""
    started: list[Peer] = []

    def start(platform: str | None, **options: Any) -> Peer:
        peer = start_platform_peer(PlatformPeer(list(HEADERS[platform]) if platform else [], **options))
        started.append(peer)
        return peer

    yield start
    for peer in reversed(started):
        peer.stop()
