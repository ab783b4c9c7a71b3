#!/usr/bin/env python3
"""Prototype for the serve tuning recommendation R5 (bench/RESULTS.md): the LOK IN protocol on websockets'
sans-I/O ``ServerProtocol``, one ``asyncio.Protocol`` per connection, no task per connection.

    python bench/proto_server.py --port 8080 [--host 127.0.0.1] [--ping-interval 20] [--no-gc-tuning]

Same wire behaviour as ``lokin-doctor serve`` for what the benchmark exercises: on connect
``{"type":"welcome","clientId":"user_<random>",...}``; ``{"type":"ping"}`` -> ``{"type":"pong",...}``;
any other text or binary message is echoed (text is checked to be UTF-8, else close 1007);
``GET /health`` -> JSON with the connection count; any other plain HTTP request -> 426; more than
``--max-connections`` -> 503; keepalive pings every ``--ping-interval`` to connections that were silent
for that long, dropped after ``--ping-timeout`` without an answer; handshakes not completed within
``--open-timeout`` are cut; SIGTERM/SIGINT close every client with 1001.

What it does NOT do (serve does): TLS, origin allow-list, per-IP cap, broadcast, logs, metrics, the test
page, fragmented-message size accounting beyond ``--max-size``. It is a measurement of what the
architecture costs, not a replacement; bench/RESULTS.md says how serve can adopt the architecture.

Why it is cheaper than ``websockets.asyncio.server.serve`` (measured in RESULTS.md):

* no handler task and no keepalive task per connection (each is a Task, a coroutine frame and futures),
  one sweep over all connections every ping interval instead;
* messages are echoed from ``data_received``: no queue, no future to wake a task, no send lock;
* the handshake's Request headers are dropped after the upgrade (``ServerProtocol.parse`` keeps the
  Request alive in its suspended generator frame), the Response is not kept;
* ``gc.set_threshold(50000, 20, 100)`` + ``gc.freeze()`` after start-up (as ``lokin-doctor serve`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_OPEN, _CONNECTING = State.OPEN, State.CONNECTING
_ID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_NO_HEADERS = Headers()


@dataclass(frozen=True)
class ProtoConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_size: int = 1 << 20
    max_connections: int = 100_000
    ping_interval: float | None = 20.0
    ping_timeout: float = 20.0
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    backlog: int = 2048
    gc_tuning: bool = True


class Conn(asyncio.Protocol):
    __slots__ = ("srv", "tr", "proto", "cid", "rx", "pinged", "frags", "t0", "opened")

    def __init__(self, srv: ProtoServer) -> None:
        self.srv = srv
        self.tr: Any = None
        self.proto = ServerProtocol(max_size=srv.cfg.max_size)
        self.cid = ""
        self.rx = True
        self.pinged = 0.0
        self.frags: list[Any] | None = None
        self.t0 = time.monotonic()
        self.opened = False

    def connection_made(self, transport: Any) -> None:
        self.tr = transport
        self.srv.conns.add(self)
        self.srv.handshaking.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.srv
        srv.conns.discard(self)
        srv.handshaking.discard(self)
        if self.opened:
            self.opened = False
            srv.open -= 1
        self.proto.receive_eof()

    def data_received(self, data: bytes) -> None:
        self.rx = True
        proto = self.proto
        proto.receive_data(data)
        for ev in proto.events_received():
            if type(ev) is Frame:
                op = ev.opcode
                if op is _TEXT or op is _BINARY:
                    if ev.fin:
                        self._message(op is _TEXT, ev.data)
                    else:
                        self.frags = [op is _TEXT, ev.data]
                elif op is _CONT and self.frags is not None:
                    self.frags.append(ev.data)
                    if ev.fin:
                        is_text, *parts = self.frags
                        self.frags = None
                        self._message(is_text, b"".join(parts))
                # PING (pong sent by the protocol), PONG and CLOSE (reply sent) need nothing here.
            elif isinstance(ev, Request):
                self._request(ev)
        self._flush()

    def _flush(self) -> None:
        tr = self.tr
        for chunk in self.proto.data_to_send():
            if chunk:
                tr.write(chunk)
            else:  # the protocol wants the TCP connection closed
                tr.close()
                return
        if self.proto.close_expected():
            self.srv.loop.call_later(self.srv.cfg.close_timeout, tr.abort)

    def _message(self, is_text: bool, data: Any) -> None:
        proto = self.proto
        if is_text:
            if data[:1] == b"{" and b'"type"' in data:
                try:
                    doc = json.loads(data)
                except ValueError:
                    doc = None
                if isinstance(doc, dict) and doc.get("type") == "ping":
                    pong: dict[str, Any] = {"type": "pong", "time": int(time.time() * 1000)}
                    if "id" in doc:
                        pong["id"] = doc["id"]
                    proto.send_text(json.dumps(pong).encode())
                    return
            else:
                try:
                    bytes(data).decode()
                except UnicodeDecodeError:
                    proto.fail(1007, "invalid UTF-8")
                    return
            proto.send_text(data)
        else:
            proto.send_binary(data)

    def _request(self, request: Request) -> None:
        srv, proto = self.srv, self.proto
        srv.handshaking.discard(self)
        upgrade = request.headers.get("Upgrade", "")
        if upgrade.lower() != "websocket":
            path = request.path.partition("?")[0]
            if path == "/health":
                body = json.dumps(srv.health()).encode()
                headers = Headers(
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("Connection", "close"),
                    ]
                )
                proto.send_response(Response(200, "OK", headers, body))
            else:
                response = proto.reject(426, "426 Upgrade Required: connect with a WebSocket client.\n")
                response.headers["Upgrade"] = "websocket"
                proto.send_response(response)
            return
        if srv.open >= srv.cfg.max_connections:
            proto.send_response(proto.reject(503, "server at its connection limit\n"))
            return
        response = proto.accept(request)
        proto.send_response(response)
        # ServerProtocol.parse() keeps `request` in its suspended frame for the connection's whole life:
        # drop its headers (~2.3 KB per connection) now that the handshake is answered.
        request.headers = _NO_HEADERS
        if response.status_code == 101:
            srv.open += 1
            srv.total += 1
            self.opened = True
            self.cid = cid = "user_" + "".join(random.choices(_ID_CHARS, k=9))
            proto.send_text(srv.welcome % (cid.encode(), int(time.time() * 1000)))


class ProtoServer:
    def __init__(self, cfg: ProtoConfig) -> None:
        self.cfg = cfg
        self.conns: set[Conn] = set()
        self.handshaking: set[Conn] = set()
        self.open = 0
        self.total = 0
        self.t0 = time.monotonic()
        self.loop = asyncio.get_running_loop()
        self.server: asyncio.AbstractServer | None = None
        self.port = cfg.port
        self.welcome = b'{"type":"welcome","clientId":"%s","server":"lokin-doctor-proto","time":%d}'
        self._tasks: list[asyncio.Task[Any]] = []

    @property
    def connections(self) -> int:
        return self.open

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "server": "lokin-doctor-proto",
            "connections": self.open,
            "connections_total": self.total,
            "uptime_s": round(time.monotonic() - self.t0, 1),
            "pid": os.getpid(),
        }

    async def start(self) -> None:
        cfg = self.cfg
        self.server = await self.loop.create_server(
            lambda: Conn(self), cfg.host, cfg.port, backlog=cfg.backlog
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self._tasks.append(self.loop.create_task(self._handshake_sweep()))
        if cfg.ping_interval:
            self._tasks.append(self.loop.create_task(self._keepalive()))
        if cfg.gc_tuning:
            gc.set_threshold(50_000, 20, 100)
            gc.collect()
            gc.freeze()

    async def _handshake_sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            limit = time.monotonic() - self.cfg.open_timeout
            for conn in [c for c in self.handshaking if c.t0 < limit]:
                self.handshaking.discard(conn)
                conn.tr.abort()

    async def _keepalive(self) -> None:
        cfg = self.cfg
        assert cfg.ping_interval
        period = min(cfg.ping_interval, cfg.ping_timeout)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.rx:
                    conn.rx, conn.pinged = False, 0.0
                elif conn.pinged:
                    if now - conn.pinged >= cfg.ping_timeout:
                        conn.tr.abort()
                elif conn.proto.state is _OPEN:
                    conn.proto.send_ping(b"ka")
                    conn.pinged = now
                    conn._flush()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            if conn.proto.state is _OPEN:
                conn.proto.send_close(1001, "going away")
                conn._flush()
            elif conn.proto.state is _CONNECTING:
                conn.tr.abort()
        end = time.monotonic() + self.cfg.close_timeout
        while self.conns and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for conn in list(self.conns):
            conn.tr.abort()


@asynccontextmanager
async def running_proto_server(cfg: ProtoConfig) -> AsyncIterator[ProtoServer]:
    srv = ProtoServer(cfg)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def serve_forever(cfg: ProtoConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_proto_server(cfg) as srv:
        print(f"ready on {cfg.host}:{srv.port} (pid {os.getpid()})", flush=True)
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--ping-interval", type=float, default=20.0, help="0 disables keepalive pings")
    ap.add_argument("--ping-timeout", type=float, default=20.0)
    ap.add_argument("--open-timeout", type=float, default=10.0)
    ap.add_argument("--max-connections", type=int, default=100_000)
    ap.add_argument("--max-size", type=int, default=1 << 20)
    ap.add_argument("--no-gc-tuning", action="store_true")
    ap.add_argument("--no-uvloop", action="store_true")
    ns, _ignored = ap.parse_known_args()  # capacity.py passes serve's flags (-q, --max-per-ip): ignored
    cfg = ProtoConfig(
        host=ns.host,
        port=ns.port,
        ping_interval=ns.ping_interval or None,
        ping_timeout=ns.ping_timeout,
        open_timeout=ns.open_timeout,
        max_connections=ns.max_connections,
        max_size=ns.max_size,
        gc_tuning=not ns.no_gc_tuning,
    )
    factory = None
    if not ns.no_uvloop:
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_forever(cfg))


if __name__ == "__main__":
    sys.exit(main())
