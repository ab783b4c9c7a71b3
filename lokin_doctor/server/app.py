"""The LOK IN WebSocket server on websockets 17: protocol, limits, HTTP routes, graceful stop.

One :class:`LokinServer` per running server. Per-connection state is deliberately tiny (a
later benchmark compares memory per connection with Node ``ws``): three attributes on the
websockets connection object (client id, peer IP, open time), membership in two sets, and no
task besides the ones websockets itself runs.

Order of events for one TCP connection:

1. ``connection_made`` -> tracked in ``_conns`` (so shutdown can cut half-open ones).
2. ``_process_request``: a request without ``Upgrade``/``Sec-WebSocket-Key`` is plain HTTP
   (page, /health, /metrics, 426 elsewhere); a handshake continues on any path.
3. websockets validates the handshake; ``_process_response`` applies our policy to a valid
   one (Origin 403, max-connections 503, per-IP 429) and reserves a slot before the 101.
4. ``_handler`` speaks the LOK IN protocol (welcome, ping/pong, broadcast, echo).
5. ``connection_lost`` releases the slot and logs the close (code, who, duration).
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
from datetime import UTC, datetime
from importlib import resources
from typing import Any, ClassVar, cast

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN, Protocol
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

#: Paths that serve the test page (the last one is the write-up's file name).
PAGE_PATHS = frozenset({"/", "/test", "/test.html", "/test-websocket.html"})

# Listen backlog: browsers reconnect in bursts after a restart; asyncio's default (100) would
# drop SYNs and add seconds of retransmission delay. The kernel caps it at somaxconn.
BACKLOG = 2048

# Throttle for the "connections without a handshake" summary line (port probes, half-open).
INCOMPLETE_LOG_INTERVAL = 10.0


class LokinConnection(ServerConnection):
    """A websockets server connection with the few fields this server needs.

    They live in ``__slots__``: added to the instance ``__dict__`` (already ~30 entries from
    websockets) they would make it resize, which measured ~1.5 KiB more per connection.
    ``app`` is bound on a subclass made per :class:`LokinServer` so callbacks reach their server.
    """

    __slots__ = ("client_id", "opened_at", "peer_ip", "tls_probe")
    app: ClassVar[LokinServer]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_id = ""
        self.peer_ip = ""  # set when a slot is reserved (accepted upgrade); "" otherwise
        self.opened_at = 0.0  # monotonic time of the reservation
        self.tls_probe = False  # a TLS ClientHello arrived on the plain port (already logged)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.app._conns.add(self)

    def data_received(self, data: bytes) -> None:
        # 0x16 is a TLS handshake record: a wss:// client (an https page) talking to this plain
        # ws:// port. Without this check it would wait for the open timeout and leave no trace.
        if self.request is None and data[:1] == b"\x16" and not self.app.config.tls:
            self.tls_probe = True
            self.app._tls_on_plain_port(self)
            self.transport.abort()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.app._connection_lost(self)


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
        self._conns: set[LokinConnection] = set()  # every TCP connection, handshaking or not
        self._clients: set[LokinConnection] = set()  # open WebSocket connections (broadcast targets)
        self._reserved = 0  # accepted upgrades not yet closed (what the limits count)
        self._per_ip: dict[str, int] = {}
        self._server: Server | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._started = datetime.now().astimezone()
        self._incomplete_unlogged = 0
        self._incomplete_logged_at = -INCOMPLETE_LOG_INTERVAL
        self.port = 0
        self.connect_host = "127.0.0.1"
        self.bound: list[str] = []
        # A subclass per server binds the connection callbacks to this instance.
        self._connection_class: type[LokinConnection] = type(
            "LokinConnection", (LokinConnection,), {"app": self}
        )
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
        try:
            self._server = await serve(
                self._handler,
                cfg.host,
                cfg.port,
                process_request=self._process_request,
                process_response=self._process_response,
                server_header=f"lokin-doctor/{__version__} websockets/{websockets_version}",
                compression="deflate" if cfg.compression else None,
                open_timeout=cfg.open_timeout,
                ping_interval=cfg.ping_interval,
                ping_timeout=cfg.ping_timeout,
                # Leave the shutdown deadline room to abort clients that never answer the close.
                close_timeout=max(0.1, min(10.0, cfg.shutdown_timeout * 0.8)),
                max_size=cfg.max_message_size,
                logger=websockets_logger(self.log),
                create_connection=self._connection_class,
                ssl=context,
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
        self._banner()

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

    async def _close(self, server: Server) -> None:
        cfg = self.config
        count = len(self._clients)
        self.log.emit(
            "shutdown",
            f"stopping: closing {count} client(s) with 1001 (going away)",
            clients=count,
            timeout_s=cfg.shutdown_timeout,
        )
        server.close(close_connections=True, code=1001, reason="server shutting down")
        # Connections that never sent a handshake would hold the stop until open_timeout.
        for conn in list(self._conns):
            if conn.request is None:
                conn.transport.abort()
        try:
            async with asyncio.timeout(cfg.shutdown_timeout):
                await server.wait_closed()
        except TimeoutError:
            left = len(self._conns)
            self.log.emit(
                "shutdown",
                f"{left} connection(s) still open after {cfg.shutdown_timeout:g} s: aborting them",
                level="warning",
                connections=left,
            )
            for conn in list(self._conns):
                conn.transport.abort()
            try:
                async with asyncio.timeout(1.0):
                    await server.wait_closed()
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

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if _is_handshake(request.headers):
            return None  # a WebSocket handshake, on any path
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
                remote=_peer(connection.remote_address),
            )
        return response

    def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        headers = request.headers
        if not _is_handshake(headers):
            return None  # answered and logged by _process_request
        conn = cast(LokinConnection, connection)
        cfg = self.config
        origin = _header(headers, "Origin")
        address = connection.remote_address
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
                connection,
                request,
                http.HTTPStatus.FORBIDDEN,
                "origin",
                f"Origin {origin} is not allowed by this LOK IN server "
                f"(allowed: {', '.join(self.origins.allowed)}). "
                f"Its operator can add it with: lokin-doctor serve --allow-origin {origin}\n",
            )
        if self._reserved >= cfg.max_connections:
            return self._refuse(
                connection,
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
                connection,
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
        conn.peer_ip = ip
        conn.client_id = "user_" + secrets.token_hex(5)
        conn.opened_at = time.monotonic()
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
        self, connection: ServerConnection, request: Request, status: http.HTTPStatus, reason: str, text: str
    ) -> Response:
        self.stats.reject(reason)
        self.log.emit(
            "reject",
            f"HTTP {status.value} {status.phrase}",
            level="warning",
            remote=_peer(connection.remote_address),
            origin=_header(request.headers, "Origin") or "-",
            path=request.path,
            reason=reason,
            why=text.strip(),
        )
        response = connection.respond(status, text)
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

    async def _handler(self, connection: ServerConnection) -> None:
        conn = cast(LokinConnection, connection)
        stats = self.stats
        stats.accepted += 1
        self._clients.add(conn)
        # websockets keeps the handshake's request and response for the connection's whole life
        # (the request also in the suspended frame of ServerProtocol.parse()): ~4 KB per
        # connection. Everything needed later is already in __slots__ (client id, peer IP).
        if conn.request is not None:
            conn.request.headers = _NO_HEADERS
        conn.response = None
        try:
            await conn.send(
                json.dumps(
                    {
                        "type": "welcome",
                        "clientId": conn.client_id,
                        "server": "lokin-doctor",
                        "version": __version__,
                        "time": _ms(),
                    }
                )
            )
            stats.msgs_out += 1
            async for message in conn:
                stats.msgs_in += 1
                reply: str | bytes | None = message
                if isinstance(message, str) and message.startswith("{") and '"type"' in message:
                    reply = self._on_json(conn, message)
                if reply is not None:
                    await conn.send(reply)
                    stats.msgs_out += 1
        except ConnectionClosed:
            pass  # connection_lost logs the close
        finally:
            self._clients.discard(conn)

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
            targets = [c for c in self._clients if c.protocol.state is OPEN]
            broadcast(targets, json.dumps(data, ensure_ascii=False))
            self.stats.msgs_out += len(targets)
            return None
        return message

    # -- connection bookkeeping ---------------------------------------------------------------

    def _connection_lost(self, conn: LokinConnection) -> None:
        self._conns.discard(conn)
        if conn.peer_ip:
            self._reserved -= 1
            left = self._per_ip.get(conn.peer_ip, 1) - 1
            if left > 0:
                self._per_ip[conn.peer_ip] = left
            else:
                self._per_ip.pop(conn.peer_ip, None)
            self._clients.discard(conn)
            code, reason, by = close_info(conn.protocol)
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
        elif conn.request is None and _eof_before_request(conn.protocol.handshake_exc):
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
        elif conn.request is None and conn.protocol.handshake_exc is not None:
            exc = conn.protocol.handshake_exc
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
            remote=_peer(conn.remote_address),
            reason="tls_on_plain_port",
            why="the client uses wss:// (an https page?) but this server has no certificate: "
            "use ws://, or start it with --certfile/--keyfile, or put a TLS reverse proxy in front",
        )
