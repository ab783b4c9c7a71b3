"""The LOK IN WebSocket server: websockets' sans-I/O protocol driven by one asyncio.Protocol per connection.

One :class:`LokinServer` per running server; one :class:`LokinConnection` (an ``asyncio.Protocol``
with ``__slots__``) per TCP connection, driving a websockets :class:`~websockets.server.ServerProtocol`
(the sans-I/O state machine: HTTP parsing, handshake validation, frames, close handshake).
There is no task, queue or future per connection: messages are answered from ``data_received``;
the open timeout is one timer handle per connection while it handshakes; keepalive pings are sent
by ONE periodic timer for all connections. bench/RESULTS.md measured this design (R5) against
``websockets.asyncio.server.serve`` and Node ``ws``.

Order of events for one TCP connection:

1. ``connection_made`` -> tracked in ``_conns``, open-timeout timer armed.
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
import base64
import email.utils
import errno
import functools
import hashlib
import http
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from websockets.datastructures import Headers, MultipleValuesError
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from lokin_doctor import __version__
from lokin_doctor.server import ServerConfig, ServerStartError
from lokin_doctor.server.logs import EventLog, one_line, websockets_logger
from lokin_doctor.server.metrics import (
    CONTENT_TYPE_LATEST,
    Stats,
    StatsCollector,
    build_registry,
    render,
)
from lokin_doctor.server.origins import OriginPolicy

_NO_HEADERS = Headers()  # shared, never mutated: replaces each open connection's request headers
_OPEN, _CONNECTING = State.OPEN, State.CONNECTING
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_Bytes = bytes | bytearray | memoryview  # what a Frame carries

#: Paths that serve the test page (the last one is the write-up's file name).
PAGE_PATHS = frozenset({"/", "/test", "/test.html", "/test-websocket.html"})

# Listen backlog: browsers reconnect in bursts after a restart; asyncio's default (100) would
# drop SYNs and add seconds of retransmission delay. The kernel caps it at somaxconn.
BACKLOG = 2048

# Throttle for the "connections without a handshake" summary line (port probes, half-open).
INCOMPLETE_LOG_INTERVAL = 10.0

#: Transport write-buffer marks: over WRITE_HIGH the server stops reading from that client until
#: its buffer drains below WRITE_LOW (asyncio's pause_writing / resume_writing callbacks).
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024

#: A broadcast target whose write buffer holds more than this is closed (1008) rather than sent
#: more: broadcasts are not paced by the slowest receiver.
BROADCAST_DROP_LIMIT = 1 << 20


class LokinConnection(asyncio.Protocol):
    """One TCP connection: the asyncio side of a websockets sans-I/O ``ServerProtocol``.

    Every field is in ``__slots__`` (no instance ``__dict__``). Nothing from the handshake is kept
    once the connection is open but the client id and the peer IP (for the close log line).
    """

    __slots__ = (
        "app",
        "client_id",
        "closing",
        "frags",
        "frag_text",
        "got_request",
        "opened_at",
        "peer_ip",
        "pinged",
        "protocol",
        "reading_paused",
        "rx",
        "timer",
        "tls_probe",
        "transport",
    )

    def __init__(self, app: LokinServer) -> None:
        self.app = app
        self.protocol = ServerProtocol(
            extensions=app.extensions, max_size=app.config.max_message_size, logger=app.ws_logger
        )
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.client_id = ""
        self.peer_ip = ""  # set when a slot is reserved (accepted upgrade); "" otherwise
        self.opened_at = 0.0  # monotonic time of the reservation
        self.tls_probe = False  # a TLS ClientHello arrived on the plain port (already logged)
        self.got_request = False  # an HTTP request was parsed (handshake or plain HTTP)
        self.timer: asyncio.TimerHandle | None = None  # open timeout, then close timeout
        self.frags: list[_Bytes] | None = None  # fragments of a message being received
        self.frag_text = False
        self.rx = True  # data received since the last keepalive round
        self.pinged = 0.0  # monotonic time of the unanswered keepalive ping, 0.0 if none
        self.reading_paused = False
        self.closing = False  # the close timer is armed (the protocol expects the TCP close)

    # -- asyncio.Protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        app = self.app
        app._conns.add(self)
        self.transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self.timer = app.loop.call_later(app.config.open_timeout, self._open_timeout)

    def data_received(self, data: bytes) -> None:
        # 0x16 is a TLS handshake record: a wss:// client (an https page) talking to this plain
        # ws:// port. Without this check it would wait for the open timeout and leave no trace.
        if not self.got_request and data[:1] == b"\x16" and not self.app.config.tls:
            self.tls_probe = True
            self.app._tls_on_plain_port(self)
            self.transport.abort()
            return
        self.rx = True
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        try:
            for event in events:
                if type(event) is Frame:
                    opcode = event.opcode
                    if opcode is _TEXT or opcode is _BINARY:
                        if event.fin:
                            self._message(opcode is _TEXT, event.data)
                        else:
                            self.frags = [event.data]
                            self.frag_text = opcode is _TEXT
                    elif opcode is _CONT and self.frags is not None:
                        self.frags.append(event.data)
                        if event.fin:
                            whole, self.frags = b"".join(self.frags), None
                            self._message(self.frag_text, whole)
                    # PING (answered by the protocol), PONG and CLOSE (answered) need nothing here.
                elif isinstance(event, Request):
                    self.app._on_request(self, event)
        except Exception as exc:  # a bug must cost one connection (1011), never the server
            self.app.log.emit(
                "error", f"connection handler failed: {one_line(exc)}", level="error", client=self.client_id
            )
            if protocol.state is _OPEN:
                protocol.fail(1011, "internal error")
            elif protocol.state is _CONNECTING:
                self.transport.abort()
                return
        self.flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self.protocol.events_received()
        self.flush()
        return None  # close the transport: nothing is ever written after the peer's EOF

    def connection_lost(self, exc: Exception | None) -> None:
        # Idempotent; makes the state CLOSED (and records an EOF before the request, if so).
        self.protocol.receive_eof()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.app._connection_lost(self)

    def pause_writing(self) -> None:
        # The client does not read what we write: stop reading what it sends until it does.
        self.reading_paused = True
        try:
            self.transport.pause_reading()
        except RuntimeError:  # closing
            pass

    def resume_writing(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            try:
                self.transport.resume_reading()
            except RuntimeError:  # closing
                pass

    # -- sending ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the protocol produced; half-close (or close) when it asks for an EOF."""
        transport = self.transport
        if transport.is_closing():
            # Aborted or closed, connection_lost not delivered yet (a keepalive round or a
            # broadcast can come in between): writing would raise on uvloop. Drop the output.
            self.protocol.data_to_send()
            return
        for chunk in self.protocol.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):  # already closing; uvloop raises RuntimeError
                    transport.close()
            else:  # TLS: no half-close
                transport.close()
        if not self.closing and self.protocol.close_expected():
            # The peer has close_timeout to finish the closing handshake, then the TCP connection
            # is cut. This replaces the open timeout of a connection refused or answered over HTTP.
            self.closing = True
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.app.loop.call_later(self.app.close_timeout, transport.abort)

    def _open_timeout(self) -> None:
        self.timer = None
        if self.protocol.state is _CONNECTING:
            self.transport.abort()

    def _message(self, is_text: bool, data: _Bytes) -> None:
        """One complete message from the client: pong, broadcast or echo."""
        app = self.app
        protocol = self.protocol
        app.stats.msgs_in += 1
        if protocol.state is not _OPEN:
            return  # closing: nothing more is sent
        if is_text:
            try:
                text = str(data, "utf-8")
            except UnicodeDecodeError:
                protocol.fail(1007, "invalid UTF-8")
                return
            if text.startswith("{") and '"type"' in text:
                reply = app._on_json(self, text)
                if reply is None:
                    return
                protocol.send_text(reply.encode())
            else:
                protocol.send_text(data)
        else:
            protocol.send_binary(data)
        app.stats.msgs_out += 1


def _header(headers: Headers, name: str) -> str | None:
    try:
        return headers.get(name)
    except MultipleValuesError:
        return ", ".join(headers.get_all(name))


def _is_handshake(headers: Headers) -> bool:
    # Sec-WebSocket-Key too: a proxy that drops the hop-by-hop Upgrade/Connection headers
    # still forwards it, and the client must get websockets' precise 426, not the test page.
    return "Upgrade" in headers or "Sec-WebSocket-Key" in headers


def _eof_before_request(exc: BaseException | None) -> bool:
    """True when a connection ended before any HTTP request (probe, half-open, open timeout)."""
    # websockets records the end of stream while parsing the request line as an InvalidMessage
    # caused by EOFError; an abort by the open timeout can leave no exception at all.
    return exc is None or isinstance(exc.__cause__, EOFError)


def _ip_of(address: Any) -> str:
    if not address:
        return "?"
    ip = str(address[0])
    # Dual-stack sockets show IPv4 clients as ::ffff:a.b.c.d; count them under a.b.c.d.
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip


def _peer(address: Any) -> str:
    if not address:
        return "?"
    ip = _ip_of(address)
    return f"[{ip}]:{address[1]}" if ":" in ip else f"{ip}:{address[1]}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _ms() -> int:
    return int(time.time() * 1000)


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _seconds(value: float | None, off: str = "off") -> str:
    return off if value is None else f"{value:g} s"


def close_info(protocol: Protocol) -> tuple[int, str, str]:
    """(code, reason, who closed first) of a finished connection; 1006 when nobody sent a close frame."""
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    if rcvd is not None and (sent is None or protocol.close_rcvd_then_sent):
        return rcvd.code, rcvd.reason, "client"
    if sent is not None:
        return sent.code, sent.reason, "server" if rcvd is not None else "server (no reply)"
    return 1006, "", "network (no close frame)"


@functools.cache
def load_page() -> tuple[bytes, str]:
    """The test page's bytes and a Content-Security-Policy allowing exactly its inline code."""
    html = resources.files("lokin_doctor.server").joinpath("static/test.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'" for b in blocks
        )

    # connect-src lets the URL field point at any ws:// or wss:// server, as the original page did.
    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html.encode(), csp


def build_ssl_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """A server TLS context, or ServerStartError with a message that names the bad file."""

    def read(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read(1 << 20)
        except FileNotFoundError:
            raise ServerStartError(f"TLS {what} file not found: {path}") from None
        except IsADirectoryError:
            raise ServerStartError(f"TLS {what} file is a directory: {path}") from None
        except OSError as exc:
            raise ServerStartError(f"cannot read TLS {what} file {path}: {exc.strerror or exc}") from None

    cert = read(certfile, "certificate")
    key = read(keyfile, "key") if keyfile else cert
    key_path = keyfile or certfile
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ServerStartError(
            f"{certfile} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----'); "
            f"convert a DER file with: openssl x509 -inform der -in {certfile} -out cert.pem"
        )
    if b"PRIVATE KEY-----" not in key:
        hint = "" if keyfile else ": give it with --keyfile"
        raise ServerStartError(f"no PEM private key in {key_path}{hint}")
    if b"ENCRYPTED" in key:
        raise ServerStartError(
            f"the private key in {key_path} is protected by a passphrase; decrypt it for the server "
            f"(openssl pkey -in {key_path} -out key.pem)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # The password callback stops OpenSSL from prompting on the terminal of a service.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}"
        if "KEY_VALUES_MISMATCH" in text:
            raise ServerStartError(
                f"the private key in {key_path} does not match the certificate in {certfile}"
            ) from None
        raise ServerStartError(
            f"cannot load TLS certificate {certfile}"
            + (f" / key {keyfile}" if keyfile else "")
            + f": {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ServerStartError(f"cannot load TLS certificate {certfile}: {exc.strerror or exc}") from None
    return context


def certificate_summary(certfile: str) -> tuple[str, str | None]:
    """(one-line description, warning or None) of the served certificate, for the banner."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        with open(certfile, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            names += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        issuer = cert.issuer.rfc4514_string() or "?"
        expires = cert.not_valid_after_utc
        text = f"{', '.join(names) or '?'} (issuer {issuer}, expires {expires:%Y-%m-%d})"
        left = (expires - datetime.now(UTC)).total_seconds()
        if left < 0:
            return text, f"the certificate EXPIRED on {expires:%Y-%m-%d}: browsers will refuse wss://"
        if left < 14 * 86400:
            return text, f"the certificate expires in {left / 86400:.0f} day(s)"
        if cert.issuer == cert.subject:
            return text, "self-signed certificate: browsers will refuse wss:// unless they trust it"
        return text, None
    except Exception as exc:  # informative only: the TLS context already loaded it
        return f"(not parsed: {one_line(exc)})", None


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
        self.ws_logger = websockets_logger(self.log)  # websockets' own warnings, as one-line events
        self.extensions: list[ServerExtensionFactory] | None = (
            list(enable_server_permessage_deflate(None)) if config.compression else None
        )
        self.server_header = f"lokin-doctor/{__version__} websockets/{websockets_version}"
        # Leave the shutdown deadline room to abort clients that never answer the close.
        self.close_timeout = max(0.1, min(10.0, config.shutdown_timeout * 0.8))
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._conns: set[LokinConnection] = set()  # every TCP connection, handshaking or not
        self._clients: set[LokinConnection] = set()  # open WebSocket connections (broadcast targets)
        self._reserved = 0  # accepted upgrades not yet closed (what the limits count)
        self._per_ip: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._next_ping_round = 0.0
        self._all_closed: asyncio.Event | None = None  # set when _conns empties during the stop
        self._close_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._started = datetime.now().astimezone()
        self._incomplete_unlogged = 0
        self._incomplete_logged_at = -INCOMPLETE_LOG_INTERVAL
        self._welcome = (
            '{"type": "welcome", "clientId": "%s", "server": "lokin-doctor", "version": '
            + json.dumps(__version__)
            + ', "time": %d}'
        )
        self.port = 0
        self.connect_host = "127.0.0.1"
        self.bound: list[str] = []
        gauges = {
            "lokin_connections_open": ("WebSocket connections open now", lambda: float(len(self._clients))),
            "lokin_connections_handshaking": (
                "TCP connections that have not completed a WebSocket handshake",
                lambda: float(self.handshaking),
            ),
            "lokin_uptime_seconds": ("Seconds since the server started", lambda: round(self.uptime, 3)),
        }
        self.registry = build_registry(StatsCollector(self.stats, gauges, __version__))

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
    def open_connections(self) -> int:
        return len(self._clients)

    @property
    def handshaking(self) -> int:
        return max(0, len(self._conns) - self._reserved)

    # -- start / stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving; ServerStartError (one line) when that is impossible."""
        cfg = self.config
        context = build_ssl_context(cfg.certfile, cfg.keyfile) if cfg.certfile else None
        load_page()  # fail now, not on the first page request, if the package data is missing
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
            )
        except OSError as exc:  # includes socket.gaierror for a bad --host
            raise ServerStartError(await self._bind_error(exc)) from None
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
        self._banner()

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

    async def _bind_error(self, exc: OSError) -> str:
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        if isinstance(exc, socket.gaierror):
            return (
                f"cannot listen on --host {cfg.host!r}: {exc.strerror or exc} "
                "(use an IP address of this machine, 127.0.0.1, or 0.0.0.0 for every interface)"
            )
        if exc.errno == errno.EADDRINUSE:
            holder = None
            try:
                from lokin_doctor.sysinfo import describe_holder

                holder = await asyncio.to_thread(describe_holder, cfg.port)
            except Exception:  # naming the holder is a bonus; the error itself must still be clear
                holder = None
            who = f"by {holder}" if holder else "by another process (run as root to see which)"
            return f"port {cfg.port} is already in use {who}; stop it or choose another port with --port"
        if exc.errno in (errno.EACCES, errno.EPERM):
            hint = (
                ": ports below 1024 need root or CAP_NET_BIND_SERVICE; use --port 8080 behind a reverse proxy"
                if 0 < cfg.port < 1024
                else ""
            )
            return f"permission denied listening on {where}{hint}"
        if exc.errno == errno.EADDRNOTAVAIL:
            return (
                f"cannot listen on {where}: {cfg.host} is not an address of this machine "
                "(use 127.0.0.1, 0.0.0.0 or one of its interface addresses)"
            )
        return f"cannot listen on {where}: {exc.strerror or one_line(exc)}"

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
        for conn in list(self._conns):
            protocol = conn.protocol
            if protocol.state is _OPEN:
                protocol.send_close(1001, "server shutting down")
                conn.flush()  # arms the close timer: cut after close_timeout if no answer
            elif not conn.got_request:
                # Connections that never sent a handshake would hold the stop until open_timeout.
                conn.transport.abort()
        if not self._conns:
            self._all_closed.set()
        try:
            async with asyncio.timeout(cfg.shutdown_timeout):
                await self._all_closed.wait()
        except TimeoutError:
            left = len(self._conns)
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
        self.log.emit(
            "stopped",
            f"stopped after {self.uptime:.1f} s",
            uptime_s=round(self.uptime, 1),
            connections_total=self.stats.accepted,
        )

    def abort(self) -> None:
        """Cut every connection now (a second Ctrl-C during the graceful stop)."""
        for conn in list(self._conns):
            conn.transport.abort()

    # -- banner ------------------------------------------------------------------------------

    def _banner(self) -> None:
        cfg = self.config
        local = all(_is_loopback(b.rsplit(":", 1)[0].strip("[]")) for b in self.bound)
        warnings: list[str] = []
        if not local and self.origins.any:
            warnings.append(
                f"exposed on {cfg.host} without --allow-origin: any web site can open connections to this "
                "server from its visitors' browsers; add --allow-origin https://your-site"
            )
        if not local and not cfg.tls:
            warnings.append(
                "plain ws:// on a public interface: an https page needs wss://; put a TLS reverse proxy in "
                "front or start with --certfile/--keyfile"
            )
        cert_text = None
        if cfg.certfile:
            cert_text, cert_warning = certificate_summary(cfg.certfile)
            if cert_warning:
                warnings.append(cert_warning)
        limits = (
            f"{cfg.max_connections} connections, "
            + (f"{cfg.max_per_ip} per IP" if cfg.max_per_ip else "no per-IP cap")
            + f", messages up to {_size(cfg.max_message_size)}, handshake timeout {cfg.open_timeout:g} s"
        )
        keepalive = (
            f"ping every {_seconds(cfg.ping_interval)}, timeout {_seconds(cfg.ping_timeout)}"
            if cfg.ping_interval is not None
            else "off"
        )
        started = self._started.strftime("%Y-%m-%d %H:%M:%S %z")
        if self.log.fmt == "json":
            self.log.emit(
                "start",
                "LOK IN WebSocket server",
                server="lokin-doctor",
                version=__version__,
                url=self.url,
                bound=self.bound,
                started=self._started.isoformat(timespec="seconds"),
                pid=os.getpid(),
                tls=cfg.tls,
                certificate=cert_text,
                limits={
                    "max_connections": cfg.max_connections,
                    "max_per_ip": cfg.max_per_ip,
                    "max_message_size": cfg.max_message_size,
                    "open_timeout_s": cfg.open_timeout,
                    "ping_interval_s": cfg.ping_interval,
                    "ping_timeout_s": cfg.ping_timeout,
                    "shutdown_timeout_s": cfg.shutdown_timeout,
                },
                compression=cfg.compression,
                origins=list(self.origins.allowed) or "any",
                python=sys.version.split()[0],
                event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            )
            for warning in warnings:
                self.log.emit("warning", warning, level="warning")
        else:
            title = f"LOK IN WebSocket server - lokin-doctor {__version__}"
            rule = "+" + "-" * (len(title) + 6) + "+"
            lines = [
                rule,
                f"|   {title}   |",
                rule,
                f"  URL:         {self.url}",
                f"  Listening:   {', '.join(self.bound)}"
                + (" (loopback only)" if local else " (reachable from the network)"),
                f"  Test page:   {self.http_url}   health: /health   metrics: /metrics",
                f"  Started:     {started} (pid {os.getpid()})",
                f"  Limits:      {limits}",
                f"  Keepalive:   {keepalive}; compression {'on' if cfg.compression else 'off'}; "
                f"shutdown timeout {cfg.shutdown_timeout:g} s",
                f"  Origins:     {self.origins.describe()}",
            ]
            if cert_text:
                lines.append(f"  Certificate: {cert_text}")
            lines.extend(f"  WARNING: {w}" for w in warnings)
            for line in lines:
                self.log.write_line(line)
        self.log.emit(
            "ready",
            "accepting WebSocket connections",
            url=self.url,
            port=self.port,
            pid=os.getpid(),
        )

    # -- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def _response(
        status: http.HTTPStatus, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> Response:
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Length", str(len(body))),
                ("Content-Type", content_type),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        for name, value in (extra or {}).items():
            headers[name] = value
        return Response(status.value, status.phrase, headers, body)

    def _on_request(self, conn: LokinConnection, request: Request) -> None:
        """Answer the parsed HTTP request: plain HTTP, a refused handshake, or the 101 and welcome."""
        conn.got_request = True
        protocol = conn.protocol
        if _is_handshake(request.headers):  # a WebSocket handshake, on any path
            response = protocol.accept(request)  # websockets validates it (400/405/426/505 if not)
            refusal = self._policy(conn, request, response)
            if refusal is not None:
                response = refusal
        else:
            response = self._http(conn, request)
        response.headers["Server"] = self.server_header
        protocol.send_response(response)
        if protocol.state is _OPEN:
            self._opened(conn, request)

    def _http(self, conn: LokinConnection, request: Request) -> Response:
        """A request without upgrade: the test page, /health, /metrics, 405, or 426 elsewhere."""
        path = request.path.partition("?")[0]
        if request.method != "GET":
            route, response = (
                "bad_method",
                self._response(
                    http.HTTPStatus.METHOD_NOT_ALLOWED,
                    b"Only GET is supported here.\n",
                    "text/plain; charset=utf-8",
                    {"Allow": "GET"},
                ),
            )
        elif path == "/health":
            body = json.dumps(self.health(), indent=2).encode() + b"\n"
            route, response = "health", self._response(http.HTTPStatus.OK, body, "application/json")
        elif path == "/metrics":
            route, response = (
                "metrics",
                self._response(http.HTTPStatus.OK, render(self.registry), CONTENT_TYPE_LATEST),
            )
        elif path in PAGE_PATHS:
            page, csp = load_page()
            route, response = (
                "page",
                self._response(
                    http.HTTPStatus.OK,
                    page,
                    "text/html; charset=utf-8",
                    {
                        "Content-Security-Policy": csp,
                        "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY",
                    },
                ),
            )
        elif path == "/favicon.ico":
            route, response = "favicon", self._response(http.HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            # What Node ws answers to a plain GET, with a body that says what to do instead.
            body = (
                "426 Upgrade Required: this is the LOK IN WebSocket endpoint (lokin-doctor serve).\n"
                f"Connect with a WebSocket client to {self.scheme}://<this host>{path}, "
                "not with a plain HTTP request.\n"
                "The test page is at /, the health check at /health, metrics at /metrics.\n"
            ).encode()
            route, response = (
                "upgrade_required",
                self._response(
                    http.HTTPStatus.UPGRADE_REQUIRED,
                    body,
                    "text/plain; charset=utf-8",
                    {"Upgrade": "websocket"},
                ),
            )
        self.stats.http(route)
        if route not in ("health", "metrics", "favicon"):  # scrapes every few seconds would drown the log
            self.log.emit(
                "http",
                f"{request.method} {path} -> {response.status_code}",
                remote=_peer(conn.transport.get_extra_info("peername")),
            )
        return response

    def _policy(self, conn: LokinConnection, request: Request, response: Response) -> Response | None:
        """Our rules for a handshake websockets validated: a refusal, or None to accept (slot reserved)."""
        headers = request.headers
        cfg = self.config
        origin = _header(headers, "Origin")
        address = conn.transport.get_extra_info("peername")
        if response.status_code != 101:
            detail = bytes(response.body).decode("utf-8", "replace").strip().splitlines()
            self.stats.reject("bad_handshake")
            self.log.emit(
                "reject",
                f"HTTP {response.status_code}: invalid WebSocket handshake",
                remote=_peer(address),
                origin=origin or "-",
                path=request.path,
                why=detail[0] if detail else response.reason_phrase,
            )
            return None
        if not self.origins.allows(origin):
            return self._refuse(
                conn,
                request,
                http.HTTPStatus.FORBIDDEN,
                "origin",
                f"Origin {origin} is not allowed by this LOK IN server "
                f"(allowed: {', '.join(self.origins.allowed)}). "
                f"Its operator can add it with: lokin-doctor serve --allow-origin {origin}\n",
            )
        if self._reserved >= cfg.max_connections:
            return self._refuse(
                conn,
                request,
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "max_connections",
                f"Server full: {self._reserved} WebSocket connections open "
                f"(limit --max-connections {cfg.max_connections}). Retry later.\n",
            )
        ip = _ip_of(address)
        held = self._per_ip.get(ip, 0)
        if cfg.max_per_ip and held >= cfg.max_per_ip:
            return self._refuse(
                conn,
                request,
                http.HTTPStatus.TOO_MANY_REQUESTS,
                "max_per_ip",
                f"Too many connections from {ip}: {held} open (limit --max-per-ip {cfg.max_per_ip}). "
                "Close some or retry later.\n",
            )
        # Reserve before the 101 so a burst of handshakes cannot overshoot the limits;
        # connection_lost releases it whatever happens next.
        self._reserved += 1
        self._per_ip[ip] = held + 1
        conn.peer_ip = sys.intern(ip)  # one string per client IP, not one per connection
        conn.client_id = "user_" + secrets.token_hex(5)
        conn.opened_at = time.monotonic()
        if not self.log.quiet:  # the fields cost more than the check on the handshake path
            self.log.emit(
                "connect",
                "accepted",
                remote=_peer(address),
                origin=origin or "-",
                path=request.path,
                client=conn.client_id,
            )
        return None

    def _refuse(
        self, conn: LokinConnection, request: Request, status: http.HTTPStatus, reason: str, text: str
    ) -> Response:
        self.stats.reject(reason)
        self.log.emit(
            "reject",
            f"HTTP {status.value} {status.phrase}",
            level="warning",
            remote=_peer(conn.transport.get_extra_info("peername")),
            origin=_header(request.headers, "Origin") or "-",
            path=request.path,
            reason=reason,
            why=text.strip(),
        )
        response = conn.protocol.reject(status, text)
        if status != http.HTTPStatus.FORBIDDEN:
            response.headers["Retry-After"] = "5"
        return response

    def health(self) -> dict[str, Any]:
        """The /health document: status, version, uptime, connections, limits and counters."""
        cfg = self.config
        serving = self._server is not None and self._server.is_serving()
        return {
            "status": "ok" if serving else "stopping",
            "server": "lokin-doctor",
            "version": __version__,
            "uptime_s": round(self.uptime, 3),
            "pid": os.getpid(),
            "url": self.url,
            "connections": len(self._clients),
            "handshaking": self.handshaking,
            "connections_total": self.stats.accepted,
            "handshakes_incomplete": self.stats.handshakes_incomplete,
            "messages_in": self.stats.msgs_in,
            "messages_out": self.stats.msgs_out,
            "rejections": dict(self.stats.rejections),
            "limits": {
                "max_connections": cfg.max_connections,
                "max_per_ip": cfg.max_per_ip,
                "max_message_size": cfg.max_message_size,
                "open_timeout_s": cfg.open_timeout,
                "ping_interval_s": cfg.ping_interval,
                "ping_timeout_s": cfg.ping_timeout,
            },
            "origins": list(self.origins.allowed) or "any",
            "tls": cfg.tls,
            "compression": cfg.compression,
        }

    # -- WebSocket protocol -------------------------------------------------------------------
    def _opened(self, conn: LokinConnection, request: Request) -> None:
        """The 101 is queued: forget the handshake, stop the open timer, send the welcome."""
        # The request stays referenced by the suspended frame of ServerProtocol.parse(): drop its
        # headers (~2-4 KB per connection). Everything needed later is in __slots__ already.
        request.headers = _NO_HEADERS
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        stats = self.stats
        stats.accepted += 1
        self._clients.add(conn)
        conn.protocol.send_text((self._welcome % (conn.client_id, _ms())).encode())
        stats.msgs_out += 1

    def _on_json(self, conn: LokinConnection, message: str) -> str | None:
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

    def broadcast(self, payload: bytes) -> int:
        """Send a text message to every open connection; returns how many got it.

        No backpressure from the receivers (as websockets' ``broadcast``): a target whose write
        buffer is already over BROADCAST_DROP_LIMIT is closed with 1008 instead.
        """
        sent = 0
        for target in self._clients:
            protocol = target.protocol
            if protocol.state is not _OPEN:
                continue
            if target.transport.get_write_buffer_size() > BROADCAST_DROP_LIMIT:
                protocol.fail(1008, "too slow: not reading its messages")
            else:
                protocol.send_text(payload)
                sent += 1
            target.flush()
        self.stats.msgs_out += sent
        return sent

    # -- connection bookkeeping ---------------------------------------------------------------

    def _connection_lost(self, conn: LokinConnection) -> None:
        self._conns.discard(conn)
        if self._all_closed is not None and not self._conns:
            self._all_closed.set()
        protocol = conn.protocol
        if conn.peer_ip:
            self._reserved -= 1
            left = self._per_ip.get(conn.peer_ip, 1) - 1
            if left > 0:
                self._per_ip[conn.peer_ip] = left
            else:
                self._per_ip.pop(conn.peer_ip, None)
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
        elif conn.tls_probe:
            pass  # counted and logged when the ClientHello arrived
        elif not conn.got_request and _eof_before_request(protocol.handshake_exc):
            self.stats.handshakes_incomplete += 1
            self._incomplete_unlogged += 1
            now = time.monotonic()
            if now - self._incomplete_logged_at >= INCOMPLETE_LOG_INTERVAL:
                self.log.emit(
                    "idle",
                    f"{self._incomplete_unlogged} TCP connection(s) closed without sending a WebSocket handshake "
                    f"(port probes, or half-open clients cut after --open-timeout {self.config.open_timeout:g} s)",
                    count=self._incomplete_unlogged,
                    total=self.stats.handshakes_incomplete,
                )
                self._incomplete_unlogged = 0
                self._incomplete_logged_at = now
        elif not conn.got_request and protocol.handshake_exc is not None:
            exc = protocol.handshake_exc
            cause = exc.__cause__ or exc  # websockets wraps the parser's error in InvalidMessage
            self.stats.reject("bad_handshake")
            self.log.emit(
                "reject",
                "not an HTTP request",
                level="warning",
                remote=_peer(conn.transport.get_extra_info("peername")),
                reason="bad_handshake",
                why=one_line(cause)[:200],
            )

    def _tls_on_plain_port(self, conn: LokinConnection) -> None:
        self.stats.reject("tls_on_plain_port")
        self.log.emit(
            "reject",
            "TLS handshake on this plain ws:// port",
            level="warning",
            remote=_peer(conn.transport.get_extra_info("peername")),
            reason="tls_on_plain_port",
            why="the client uses wss:// (an https page?) but this server has no certificate: "
            "use ws://, or start it with --certfile/--keyfile, or put a TLS reverse proxy in front",
        )
