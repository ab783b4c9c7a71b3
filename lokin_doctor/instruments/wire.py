"""The WebSocket client the checks share: one opening handshake, observed byte by byte.

websockets' sans-I/O :class:`ClientProtocol` builds the request and validates the reply
(status, Upgrade, Connection, Sec-WebSocket-Accept); this module only moves bytes, bounded by a
deadline, and keeps what came back as evidence. A 101 leaves an open :class:`WsConn` for the
session check; anything else is an :class:`Outcome` that :mod:`lokin_doctor.checks.chain.handshake`
turns into a diagnosis.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.protocol import State
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from lokin_doctor.instruments.observer import (
    BODY_GRACE_S,
    MAX_EVIDENCE,
    MAX_HEADER_BYTES,
    HandshakeObserver,
    Observation,
    OutcomeKind,
    SessionEnd,
    SessionObserver,
)
from lokin_doctor.instruments.observer import parse_head as _parse_head
from lokin_doctor.instruments.tunnel import open_stream
from lokin_doctor.target import Target

if TYPE_CHECKING:
    from lokin_doctor.instruments.proxyenv import Route

__all__ = [
    "BODY_GRACE_S",
    "MAX_EVIDENCE",
    "MAX_HEADER_BYTES",
    "Outcome",
    "OutcomeKind",
    "SessionEnd",
    "WsConn",
    "_parse_head",
    "from_observation",
    "open_handshake",
]
#: Largest message the session accepts (websockets' ``max_size``): a bigger frame fails at its header.
MAX_MESSAGE_BYTES = 2**20


@dataclass
class Outcome:
    """What happened when we tried one opening handshake against one address.

    ``kind`` (an :class:`OutcomeKind`, decided by :class:`HandshakeObserver`) is one of: ``upgraded`` (valid 101), ``status`` (an HTTP reply other than 101),
    ``invalid-upgrade`` (101 with bad Upgrade/Connection headers), ``bad-accept`` (101 with a wrong
    Sec-WebSocket-Accept), ``not-http`` (bytes that are not HTTP), ``closed`` (closed with no reply),
    ``reset`` (connection reset), ``timeout`` (no complete reply in time), ``connect-refused``,
    ``connect-timeout``, ``connect-error``, ``tls-error``, ``headers-too-large`` (a header block past
    :data:`MAX_HEADER_BYTES`, a line past 8 KiB or more than 128 headers), ``bad-subprotocol`` (101
    naming a subprotocol not offered, or several), ``bad-extension`` (101 with an extension not offered
    or parameters the client cannot accept).
    """

    kind: OutcomeKind
    address: str
    port: int
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""
    error: str | None = None
    exc: BaseException | None = None
    connect_ms: float | None = None
    handshake_ms: float | None = None
    conn: WsConn | None = None
    tls: dict[str, Any] | None = None
    #: The TLS server sent a CertificateRequest (mutual TLS); whether we had a certificate to offer.
    cert_requested: bool = False
    client_cert_offered: bool = False
    #: The negotiation headers the request offered (Sec-WebSocket-Protocol / -Extensions).
    offered: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None

    @property
    def status_line(self) -> str | None:
        if self.status is None:
            return None
        return f"HTTP/1.1 {self.status} {self.reason}".rstrip()

    def body_text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace")

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "address": f"{self.address}:{self.port}"
            if ":" not in self.address
            else f"[{self.address}]:{self.port}"
        }
        if self.status_line:
            ev["status_line"] = self.status_line
        keep = (
            "server",
            "via",
            "content-type",
            "location",
            "upgrade",
            "connection",
            "sec-websocket-accept",
            "sec-websocket-extensions",
            "sec-websocket-protocol",
            "x-powered-by",
            "cf-ray",
            "www-authenticate",
        )
        if self.headers:
            ev["headers"] = {k: v for k, v in self.headers if k.lower() in keep}
        if self.body:
            ev["body"] = self.body_text(200)
        elif self.raw and self.status is None:
            ev["first_bytes"] = self.raw[:120].decode("latin-1")
        if self.error:
            ev["error"] = self.error
        if self.connect_ms is not None:
            ev["connect_ms"] = round(self.connect_ms, 2)
        if self.handshake_ms is not None:
            ev["handshake_ms"] = round(self.handshake_ms, 2)
        return ev


class WsConn:
    """An open WebSocket connection driven through the sans-I/O protocol, every wait bounded.

    Every chunk goes to a :class:`SessionObserver`, which decides what ends the connection: a frame
    websockets rejected (:attr:`proto.parser_exc`, with the close frame it queued in
    :attr:`proto.close_sent`) or invalid UTF-8 in a text message ends the reading, as a browser would
    fail the connection. A peer that never stops sending cannot keep
    the reader past its deadline: the deadline is checked on every read, not only while waiting.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol):
        self.reader = reader
        self.writer = writer
        self.proto = proto
        self.session = SessionObserver(proto)
        self.pending: list[Frame] = []
        self.eof = False
        #: Event-loop time at which the 101 arrived (set by :func:`open_handshake`).
        self.opened_at = 0.0
        #: Bytes received after the 101 (counted, not kept).
        self.bytes_received = 0

    def _flush(self) -> None:
        for chunk in self.proto.data_to_send():
            if chunk:
                self.writer.write(chunk)
            elif self.writer.can_write_eof():
                try:
                    self.writer.write_eof()
                except OSError:
                    pass

    def send_text(self, text: str) -> None:
        self.proto.send_text(text.encode())
        self._flush()

    def send_ping(self, data: bytes) -> None:
        self.proto.send_ping(data)
        self._flush()

    @property
    def protocol_error(self) -> Exception | None:
        """The frame-level error websockets found (not a plain end of stream), if any."""
        return self.session.protocol_error

    @property
    def ended(self) -> SessionEnd | None:
        """Why the session observer considers the connection over, once it is."""
        return self.session.end

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection as a browser does (close frame ``code``), e.g. on invalid UTF-8 in text."""
        if self.proto.state is State.OPEN:
            self.session.fail(code, reason)
            self._flush()

    async def next_frame(self, deadline: float) -> Frame | None:
        """The next frame from the server; None on end of stream or once the protocol failed the
        connection (see :attr:`protocol_error`); TimeoutError past the deadline."""
        loop = asyncio.get_running_loop()
        while not self.pending:
            if self.eof or self.proto.parser_exc is not None:
                return None
            if loop.time() >= deadline:
                raise TimeoutError
            async with asyncio.timeout_at(deadline):
                try:
                    data = await self.reader.read(65536)
                except (ConnectionError, ssl.SSLError, OSError):
                    data = b""
            if data:
                self.bytes_received += len(data)
                frames = self.session.data(data)
            else:
                self.eof = True
                frames = self.session.eof()
            self._flush()
            self.pending.extend(frames)
        return self.pending.pop(0)

    async def close(self, deadline: float, code: int = 1000) -> tuple[int | None, str | None]:
        """Closing handshake: send a close frame, wait for the server's, then the TCP close."""
        try:
            if self.proto.state is State.OPEN:
                self.proto.send_close(code, "lokin-doctor done")
                self._flush()
            while self.proto.close_rcvd is None and not self.eof:
                frame = await self.next_frame(deadline)
                if frame is None:
                    break
        except (TimeoutError, OSError):
            pass
        finally:
            self.abort()
        rcvd = self.proto.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)

    def abort(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


def make_ssl_context(
    ca_file: str | None = None,
    insecure: bool = False,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """A client context like a browser's: system CAs (plus --ca-file), HTTP/1.1 in ALPN; with
    ``client_cert`` it offers that certificate. Notes when a server asks for a client certificate."""
    from lokin_doctor.instruments import tlsinfo

    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if ca_file:
        # Private CAs are added to, not substituted for, the system store.
        try:
            ctx.load_default_certs()
        except ssl.SSLError:
            pass
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    tlsinfo.load_client_cert(ctx, client_cert, client_key)
    tlsinfo.watch_cert_requests(ctx)
    ctx._lokin_client_cert = bool(client_cert)  # type: ignore[attr-defined]
    return ctx


def _cert_requested(ctx: ssl.SSLContext | None, sslobj: Any) -> bool:
    if ctx is None:
        return False
    from lokin_doctor.instruments import tlsinfo

    return tlsinfo.cert_requested(None if sslobj is not None else ctx, sslobj)


def describe_tls(writer: asyncio.StreamWriter) -> dict[str, Any] | None:
    sslobj = writer.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    return {
        "version": sslobj.version(),
        "cipher": cipher[0] if cipher else None,
        "alpn": sslobj.selected_alpn_protocol(),
    }


async def open_handshake(
    target: Target,
    address: str,
    *,
    deadline: float,
    origin: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    subprotocols: tuple[str, ...] = (),
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    compression: bool = True,
    keep_open: bool = True,
    route: Route | None = None,
) -> Outcome:
    """One opening handshake to ``address`` (with ``target.host`` as Host/SNI), bounded by ``deadline``.

    Never raises for network trouble: every failure becomes an :class:`Outcome` kind.
    ``compression`` offers permessage-deflate as browsers do; ``route`` goes through its forward proxy
    (:func:`lokin_doctor.instruments.tunnel.open_stream`).
    """
    loop = asyncio.get_running_loop()
    out = Outcome(OutcomeKind.TIMEOUT, address, target.port)
    extensions = None
    if compression:
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

        extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=True)]
    proto = ClientProtocol(
        parse_uri(target.url),
        origin=Origin(origin) if origin else None,
        subprotocols=[Subprotocol(s) for s in subprotocols] or None,
        extensions=extensions,
        max_size=MAX_MESSAGE_BYTES,
    )
    request = proto.connect()
    request.headers["User-Agent"] = f"lokin-doctor (websockets; pid {os.getpid()})"
    for name, value in headers:
        if name in request.headers:
            del request.headers[name]
        request.headers[name] = value
    proto.send_request(request)
    out.offered = {
        k: request.headers[k]
        for k in ("Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions")
        if k in request.headers
    }

    t0 = loop.time()
    use_ssl = ssl_context if target.secure else None
    out.client_cert_offered = bool(getattr(use_ssl, "_lokin_client_cert", False))
    obs = HandshakeObserver(proto)
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await open_stream(
                target.host,
                target.port,
                address=address,
                route=route,
                deadline=deadline,
                ssl_context=use_ssl,
                server_hostname=server_hostname or target.host,
            )
    except TimeoutError:
        return _apply(out, obs.connect_timeout())
    except ConnectionRefusedError as exc:
        return _apply(out, obs.connect_refused(exc))
    except ssl.SSLError as exc:
        _apply(out, obs.tls_failed(exc, getattr(exc, "verify_message", None) or exc.reason or str(exc)))
        out.cert_requested = _cert_requested(use_ssl, None)
        return out
    except (ConnectionResetError, ConnectionAbortedError) as exc:
        return _apply(out, obs.connect_reset(exc, tls=use_ssl is not None))
    except OSError as exc:
        return _apply(out, obs.connect_error(exc))
    out.connect_ms = (loop.time() - t0) * 1000
    out.tls = describe_tls(writer)
    out.cert_requested = _cert_requested(use_ssl, writer.get_extra_info("ssl_object"))

    conn = WsConn(reader, writer, proto)
    conn._flush()
    t1 = loop.time()
    body_deadline: float | None = None
    result: Observation | None = None
    while result is None:
        limit = deadline if body_deadline is None else min(deadline, body_deadline)
        try:
            if loop.time() >= limit:  # a peer that never pauses must not outlive the deadline
                raise TimeoutError
            async with asyncio.timeout_at(limit):
                data = await reader.read(65536)
        except TimeoutError:
            result = obs.timeout()
            break
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            result = obs.reset(exc)
            break
        except ssl.SSLError as exc:
            result = obs.tls_failed(exc)
            break
        result = obs.data(data) if data else obs.eof()
        if body_deadline is None and obs.grace:
            body_deadline = loop.time() + BODY_GRACE_S
    _apply(out, result)
    if obs.concluded:
        out.handshake_ms = (loop.time() - t1) * 1000
    if result.kind is OutcomeKind.UPGRADED:
        conn.pending.extend(obs.frames)
        conn.opened_at = loop.time()
        conn._flush()
        if keep_open:
            out.conn = conn
        else:
            await conn.close(min(deadline, loop.time() + 1.0))
        return out
    conn.abort()
    return out


def from_observation(obs: Observation, address: str, port: int) -> Outcome:
    """An :class:`Outcome` for ``classify`` from an observer's verdict (the load client's path)."""
    return _apply(Outcome(obs.kind, address, port), obs)


def _apply(out: Outcome, obs: Observation) -> Outcome:
    """Copy the observer's verdict into the outcome the checks read."""
    out.kind = obs.kind
    out.raw = obs.raw
    out.error = obs.error
    out.exc = obs.exc
    if obs.status is not None:
        out.status, out.reason, out.headers, out.body = obs.status, obs.reason, list(obs.headers), obs.body
    return out
