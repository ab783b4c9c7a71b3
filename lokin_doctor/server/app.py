"""The LOK IN WebSocket server: websockets' sans-I/O protocol driven by one asyncio.Protocol per connection.

One :class:`LokinServer` per running server (this module: listen, the open/close bookkeeping,
keepalive, broadcast, banner, stop); one :class:`~lokin_doctor.server.connection.LokinConnection`
(an ``asyncio.Protocol`` with ``__slots__``, in ``connection.py``) per TCP connection, driving a
websockets :class:`~websockets.server.ServerProtocol` (the sans-I/O state machine: HTTP parsing,
handshake validation, frames, close handshake). The HTTP answers and /health are in
``routes.py``, the admission rules (Origin, caps, per-IP) in ``policy.py``, TLS in ``tls.py``.
There is no task, queue or future per connection: messages are answered from ``data_received``;
the open timeout is one timer handle per connection while it handshakes; keepalive pings are sent
by ONE periodic timer for all connections. bench/RESULTS.md measured this design (R5) against
``websockets.asyncio.server.serve`` and Node ``ws``.

Order of events for one TCP connection:

1. ``connection_made`` -> tracked in ``conns``, open-timeout timer armed.
2. The request is parsed by the ServerProtocol. A request without ``Upgrade`` /
   ``Sec-WebSocket-Key`` is plain HTTP (page, /health, /metrics, 426 elsewhere): answered, then
   closed. A handshake on any path is validated by websockets (``accept``); a valid one then goes
   through our policy (Origin 403, max-connections 503, per-IP 429), which reserves a slot
   before the 101.
3. Open: welcome, then the LOK IN protocol (ping/pong, broadcast, echo) from ``data_received``.
4. ``connection_lost`` releases the slot and logs the close (code, who, duration).

Backpressure: when a connection's transport buffer goes over ``WRITE_HIGH`` (asyncio calls
``pause_writing``), the server stops reading from that client until the buffer drains below
``WRITE_LOW``, so a client that sends without reading cannot grow the server's memory. Broadcasts
are not paced by the receivers: a target whose buffer already holds more than
``BROADCAST_DROP_LIMIT`` bytes is closed with 1008 instead of being sent more.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from websockets.datastructures import Headers
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.http11 import Request
from websockets.protocol import State
from websockets.version import version as websockets_version

import lokin_doctor.server.banner as banner
import lokin_doctor.server.fanout as fanout
import lokin_doctor.server.routes as routes
from lokin_doctor import __version__
from lokin_doctor.server.bind import bind_error
from lokin_doctor.server.cluster import Cluster
from lokin_doctor.server.config import ServerConfig, ServerStartError
from lokin_doctor.server.connection import LokinConnection, close_info, eof_before_request
from lokin_doctor.server.logs import EventLog, one_line, websockets_logger
from lokin_doctor.server.metrics import Stats, StatsCollector, build_registry
from lokin_doctor.server.origins import OriginPolicy
from lokin_doctor.server.policy import Admission, peer
from lokin_doctor.server.tls import build_ssl_context

_NO_HEADERS = Headers()  # shared, never mutated: replaces each open connection's request headers
_OPEN, _CONNECTING = State.OPEN, State.CONNECTING

# Listen backlog: browsers reconnect in bursts after a restart; asyncio's default (100) would
# drop SYNs and add seconds of retransmission delay. The kernel caps it at somaxconn.
BACKLOG = 2048

# Throttle for the "connections without a handshake" summary line (port probes, half-open).
INCOMPLETE_LOG_INTERVAL = 10.0

#: A broadcast target whose write buffer holds more than this is closed (1008) rather than sent
#: more: broadcasts are not paced by the slowest receiver.
BROADCAST_DROP_LIMIT = 1 << 20


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _ms() -> int:
    return int(time.time() * 1000)


class LokinServer:
    """One running LOK IN server. Use it through :func:`lokin_doctor.server.running_server`.

    Args:
        config: Address, limits, TLS, logging.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.log = EventLog(config.log_format, quiet=config.quiet)
        self.stats = Stats()
        self.origins = OriginPolicy(config.allow_origins)
        self.admission = Admission(config, self.origins, self.stats, self.log)  # origin, caps, per-IP
        self.ws_logger = websockets_logger(self.log)  # websockets' own warnings, as one-line events
        self.extensions: list[ServerExtensionFactory] | None = (
            list(enable_server_permessage_deflate(None)) if config.compression else None
        )
        self.echo_only = config.protocol == "echo"  # no welcome, no JSON: every message sent back
        self.server_header = f"lokin-doctor/{__version__} websockets/{websockets_version}"
        # Leave the shutdown deadline room to abort clients that never answer the close.
        self.close_timeout = max(0.1, min(10.0, config.shutdown_timeout * 0.8))
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self.conns: set[LokinConnection] = set()  # every TCP connection, handshaking or not
        self._clients: set[LokinConnection] = set()  # open WebSocket connections (broadcast targets)
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._next_ping_round = 0.0
        self._all_closed: asyncio.Event | None = None  # set when conns empties during the stop
        self._close_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._started = datetime.now().astimezone()
        self._incomplete_unlogged = 0
        self._incomplete_logged_at = -INCOMPLETE_LOG_INTERVAL
        self._incomplete_timer: asyncio.TimerHandle | None = None  # flushes the summary line
        self._welcome = (
            '{"type": "welcome", "clientId": "%s", "server": "lokin-doctor", "version": '
            + json.dumps(__version__)
            + ', "time": %d}'
        )
        self.port = 0
        self.connect_host = "127.0.0.1"
        self.bound: list[str] = []
        # Instance id, broker (--redis), --workers status; the welcome names the instance.
        self.cluster = Cluster(self)
        self.broker = self.cluster.broker
        self._welcome = self._welcome[:-1] + ', "instance": ' + json.dumps(self.instance) + "}"
        gauges = {
            "lokin_connections_open": ("WebSocket connections open now", lambda: float(len(self._clients))),
            "lokin_connections_handshaking": (
                "TCP connections that have not completed a WebSocket handshake",
                lambda: float(self.handshaking),
            ),
            "lokin_uptime_seconds": ("Seconds since the server started", lambda: round(self.uptime, 3)),
        }
        self.registry = build_registry(StatsCollector(self.stats, gauges, __version__))
        self.registry = self.cluster.registry(self.registry)

    # -- properties --------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "wss" if self.config.tls else "ws"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{_url_host(self.connect_host)}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{_url_host(self.connect_host)}:{self.port}/"

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._t0

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    @property
    def instance(self) -> str:
        return self.cluster.instance

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    @property
    def handshaking(self) -> int:
        return max(0, len(self.conns) - self.admission.reserved)

    # -- start / stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; ServerStartError (one line) when that is impossible."""
        cfg = self.config
        context = build_ssl_context(cfg.certfile, cfg.keyfile) if cfg.certfile else None
        routes.load_page()  # fail now, not on the first page request, if the package data is missing
        self.loop = loop = asyncio.get_running_loop()
        factory: Callable[[], LokinConnection] = functools.partial(LokinConnection, self)
        try:
            self._server = await loop.create_server(
                factory,
                cfg.host,
                cfg.port,
                ssl=context,
                # The TLS handshake runs before connection_made: bound it by the open timeout too.
                ssl_handshake_timeout=cfg.open_timeout if context else None,
                backlog=BACKLOG,
                reuse_port=cfg.reuse_port or None,
            )
        except OSError as exc:  # includes socket.gaierror for a bad --host
            raise ServerStartError(await bind_error(self.config, exc)) from None
        except (OverflowError, ValueError, TypeError) as exc:
            raise ServerStartError(f"cannot listen on {cfg.host}:{cfg.port}: {one_line(exc)}") from None
        sockets = self._server.sockets
        names = [s.getsockname() for s in sockets]
        self.port = int(names[0][1]) if names else cfg.port
        first = str(names[0][0]) if names else cfg.host
        self.connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(first, first)
        self.bound = [f"{_url_host(str(n[0]))}:{n[1]}" for n in names]
        self._t0 = time.monotonic()
        self._started = datetime.now().astimezone()
        if cfg.ping_interval is not None:
            self._next_ping_round = time.monotonic() + cfg.ping_interval * 0.999
            self._keepalive = loop.call_later(self._keepalive_period, self._keepalive_round)
        await self.cluster.start()  # never waits for Redis: the broker connects in the background
        banner.announce(self)

    @property
    def _keepalive_period(self) -> float:
        cfg = self.config
        assert cfg.ping_interval is not None
        if cfg.ping_timeout is None:
            return cfg.ping_interval
        return min(cfg.ping_interval, cfg.ping_timeout)

    def _keepalive_round(self) -> None:
        """ONE timer for every connection: ping the silent ones, fail (1011) the unanswered ones.

        Every ``ping_interval`` a connection that received nothing since the previous ping round
        gets a ping; any data received after it is the answer. One still silent ``ping_timeout``
        after its ping is closed with 1011 (checked every ``min(ping_interval, ping_timeout)``).
        """
        cfg = self.config
        assert cfg.ping_interval is not None
        self._keepalive = self.loop.call_later(self._keepalive_period, self._keepalive_round)
        timeout = cfg.ping_timeout
        now = time.monotonic()
        ping_round = now >= self._next_ping_round
        if ping_round:
            self._next_ping_round = now + cfg.ping_interval * 0.999
        for conn in self._clients:
            protocol = conn.protocol
            if protocol.state is not _OPEN:
                continue
            if conn.pinged:
                if conn.rx:  # answered
                    conn.rx = False
                    conn.pinged = 0.0
                elif timeout is not None and now - conn.pinged >= timeout * 0.999:
                    protocol.fail(1011, "keepalive ping timeout")
                    conn.flush()
            elif ping_round:
                if conn.rx:  # active since the previous round: no ping needed
                    conn.rx = False
                else:
                    protocol.send_ping(b"")
                    conn.pinged = now
                    conn.flush()

    async def close(self) -> None:
        """Graceful stop: no new connections, 1001 to every client, done within shutdown_timeout."""
        if self._server is None:
            return
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(self._server))
        await asyncio.shield(self._close_task)

    async def _close(self, server: asyncio.Server) -> None:
        cfg = self.config
        count = len(self._clients)
        self.log.emit(
            "shutdown",
            f"stopping: closing {count} client(s) with 1001 (going away)",
            clients=count,
            timeout_s=cfg.shutdown_timeout,
        )
        server.close()  # stop accepting
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._all_closed = asyncio.Event()
        for conn in list(self.conns):
            protocol = conn.protocol
            if protocol.state is _OPEN:
                protocol.send_close(1001, "server shutting down")
                conn.flush()  # arms the close timer: cut after close_timeout if no answer
            elif not conn.got_request:
                # Connections that never sent a handshake would hold the stop until open_timeout.
                conn.transport.abort()
        if not self.conns:
            self._all_closed.set()
        try:
            async with asyncio.timeout(cfg.shutdown_timeout):
                await self._all_closed.wait()
        except TimeoutError:
            left = len(self.conns)
            self.log.emit(
                "shutdown",
                f"{left} connection(s) still open after {cfg.shutdown_timeout:g} s: aborting them",
                level="warning",
                connections=left,
            )
            self.abort()
            try:
                async with asyncio.timeout(1.0):
                    await self._all_closed.wait()
            except TimeoutError:
                pass
        self._flush_incomplete()
        await self.cluster.close()
        self.log.emit(
            "stopped",
            f"stopped after {self.uptime:.1f} s",
            uptime_s=round(self.uptime, 1),
            connections_total=self.stats.accepted,
        )

    def abort(self) -> None:
        """Cut every connection now (a second Ctrl-C during the graceful stop)."""
        for conn in list(self.conns):
            conn.transport.abort()

    # -- HTTP ---------------------------------------------------------------------------------

    def on_request(self, conn: LokinConnection, request: Request) -> None:
        """Answer the parsed HTTP request: plain HTTP, a refused handshake, or the 101 and welcome."""
        conn.got_request = True
        protocol = conn.protocol
        if routes.is_handshake(request.headers):  # a WebSocket handshake, on any path
            response = protocol.accept(request)  # websockets validates it (400/405/426/505 if not)
            refusal = self.admission.check(conn, request, response)
            if refusal is not None:
                response = refusal
        else:
            response = routes.http_response(self, conn, request)
        response.headers["Server"] = self.server_header
        protocol.send_response(response)
        if protocol.state is _OPEN:
            self._opened(conn, request)

    def health(self) -> dict[str, Any]:
        """The /health document: status, version, uptime, connections, limits and counters."""
        return self.cluster.health(routes.health(self))

    # -- WebSocket protocol -------------------------------------------------------------------
    def _opened(self, conn: LokinConnection, request: Request) -> None:
        """The 101 is queued: forget the handshake, stop the open timer, send the welcome (lokin)."""
        # The request stays referenced by the suspended frame of ServerProtocol.parse(): drop its
        # headers (~2-4 KB per connection). Everything needed later is in __slots__ already.
        request.headers = _NO_HEADERS
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        stats = self.stats
        stats.accepted += 1
        self._clients.add(conn)
        if not self.echo_only:
            conn.protocol.send_text((self._welcome % (conn.client_id, _ms())).encode())
            stats.msgs_out += 1

    def on_json(self, conn: LokinConnection, message: str) -> str | None:
        """The reply to a JSON text message: a pong, None after a broadcast, else the message itself."""
        try:
            data = json.loads(message)
        except ValueError:
            return message
        if not isinstance(data, dict):
            return message
        kind = data.get("type")
        if kind == "ping":
            pong: dict[str, object] = {"type": "pong", "time": _ms()}
            if "id" in data:
                pong["id"] = data["id"]
            return json.dumps(pong)
        if kind == "broadcast":
            # "from" is set by the server so a client cannot speak for another one.
            data["from"] = conn.client_id
            data["time"] = _ms()
            self.broadcast(json.dumps(data, ensure_ascii=False).encode())
            return None
        return message

    # -- broadcast seam -------------------------------------------------------------------------
    # A connection calls broadcast(); deliver_local() sends to the clients of THIS process. A
    # broker (several serve processes) replaces broadcast() with "publish", and calls
    # deliver_local() with what it receives; nothing else in the server needs to know.

    def broadcast(self, payload: bytes) -> None:
        """Broadcast a text message (JSON, UTF-8) from a client: to this process's clients now, and
        through the broker (``--redis``) to every other instance's."""
        self.broker.publish(payload)

    def deliver_local(self, payload: bytes) -> int:
        """Send a text message to every open connection of this process; returns how many got it.

        A target whose write buffer is already over BROADCAST_DROP_LIMIT is closed with 1008
        instead (:mod:`lokin_doctor.server.fanout`).
        """
        sent = fanout.deliver(
            self._clients, payload, per_connection=self.extensions is not None, limit=BROADCAST_DROP_LIMIT
        )
        self.stats.msgs_out += sent
        return sent

    # -- connection bookkeeping ---------------------------------------------------------------

    def connection_closed(self, conn: LokinConnection) -> None:
        self.conns.discard(conn)
        if self._all_closed is not None and not self.conns:
            self._all_closed.set()
        protocol = conn.protocol
        if conn.peer_ip:
            self.admission.release(conn)
            self._clients.discard(conn)
            if self.log.quiet:
                return
            code, reason, by = close_info(protocol)
            self.log.emit(
                "close",
                f"code {code}",
                client=conn.client_id,
                ip=conn.peer_ip,
                code=code,
                reason=reason or None,
                by=by,
                duration_s=round(time.monotonic() - conn.opened_at, 3),
            )
        elif conn.cut == "tls_probe":
            pass  # counted and logged when the ClientHello arrived
        elif conn.got_request:
            pass  # answered over HTTP or refused: logged then
        elif conn.got_bytes and protocol.handshake_exc is not None and conn.cut != "open_timeout":
            # Bytes that are not an HTTP request: a parse error, or the client's end of stream
            # before a complete request line and headers (websockets: InvalidMessage from EOFError).
            # An incomplete request cut by the open timeout is a slow client: counted below.
            exc = protocol.handshake_exc
            cause = exc.__cause__ or exc  # websockets wraps the parser's error in InvalidMessage
            why = one_line(cause)[:200]
            if isinstance(cause, EOFError):
                why = f"the client closed the connection before a complete HTTP request ({str(cause)[:150]})"
            self.stats.reject("bad_handshake")
            self.log.emit(
                "reject",
                "not an HTTP request",
                level="warning",
                remote=peer(conn.transport.get_extra_info("peername")),
                reason="bad_handshake",
                why=why,
            )
        elif eof_before_request(protocol.handshake_exc):
            # Nothing at all (a port probe, a half-open client), or an incomplete request cut by
            # the open timeout: counted now, logged as one throttled summary line.
            self.stats.handshakes_incomplete += 1
            self._incomplete_unlogged += 1
            wait = self._incomplete_logged_at + INCOMPLETE_LOG_INTERVAL - time.monotonic()
            if wait <= 0:
                self._flush_incomplete()
            elif self._incomplete_timer is None:
                self._incomplete_timer = self.loop.call_later(wait, self._flush_incomplete)

    def _flush_incomplete(self) -> None:
        """Write the summary line of the connections closed without a handshake (if any)."""
        if self._incomplete_timer is not None:
            self._incomplete_timer.cancel()
            self._incomplete_timer = None
        if not self._incomplete_unlogged:
            return
        self.log.emit(
            "idle",
            f"{self._incomplete_unlogged} TCP connection(s) closed without sending a WebSocket handshake "
            f"(port probes, or half-open or slow clients cut after --open-timeout {self.config.open_timeout:g} s)",
            count=self._incomplete_unlogged,
            total=self.stats.handshakes_incomplete,
        )
        self._incomplete_unlogged = 0
        self._incomplete_logged_at = time.monotonic()

    def tls_on_plain_port(self, conn: LokinConnection) -> None:
        self.stats.reject("tls_on_plain_port")
        self.log.emit(
            "reject",
            "TLS handshake on this plain ws:// port",
            level="warning",
            remote=peer(conn.transport.get_extra_info("peername")),
            reason="tls_on_plain_port",
            why="the client uses wss:// (an https page?) but this server has no certificate: "
            "use ws://, or start it with --certfile/--keyfile, or put a TLS reverse proxy in front",
        )
