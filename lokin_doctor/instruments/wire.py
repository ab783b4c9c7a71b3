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
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHeaderValue, InvalidMessage, InvalidStatus, InvalidUpgrade
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from lokin_doctor.i18n import _
from lokin_doctor.target import Target

#: How much of the reply we keep as evidence.
MAX_EVIDENCE = 64 * 1024
#: Once a full non-101 header block arrived, how long to wait for a body with no length.
BODY_GRACE_S = 0.3
#: A reply whose header block is not over after this many bytes is refused (Chromium's limit: 256 KiB).
MAX_HEADER_BYTES = 256 * 1024
#: Largest message the session accepts (websockets' ``max_size``): a bigger frame fails at its header.
MAX_MESSAGE_BYTES = 2**20


@dataclass
class Outcome:
    """What happened when we tried one opening handshake against one address.

    ``kind`` is one of: ``upgraded`` (valid 101), ``status`` (an HTTP reply other than 101),
    ``invalid-upgrade`` (101 with bad Upgrade/Connection headers), ``bad-accept`` (101 with a wrong
    Sec-WebSocket-Accept), ``not-http`` (bytes that are not HTTP), ``closed`` (closed with no reply),
    ``reset`` (connection reset), ``timeout`` (no complete reply in time), ``connect-refused``,
    ``connect-timeout``, ``connect-error``, ``tls-error``, ``headers-too-large`` (a header block past
    :data:`MAX_HEADER_BYTES`, a line past 8 KiB or more than 128 headers), ``bad-subprotocol`` (101
    naming a subprotocol not offered, or several), ``bad-extension`` (101 with an extension not offered
    or parameters the client cannot accept).
    """

    kind: str
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

    After every chunk fed to the protocol, what websockets concluded is kept: a frame it rejected
    (:attr:`proto.parser_exc`, with the close frame it queued in :attr:`proto.close_sent`) ends the
    reading, as a browser would fail the connection. A peer that never stops sending cannot keep
    the reader past its deadline: the deadline is checked on every read, not only while waiting.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol):
        self.reader = reader
        self.writer = writer
        self.proto = proto
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
        exc = self.proto.parser_exc
        return None if exc is None or isinstance(exc, EOFError) else exc

    def fail(self, code: int, reason: str) -> None:
        """Fail the connection as a browser does (close frame ``code``), e.g. on invalid UTF-8 in text."""
        if self.proto.state is State.OPEN:
            self.proto.fail(code, reason)
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
                self.proto.receive_data(data)
            else:
                self.eof = True
                self.proto.receive_eof()
            self._flush()
            self.pending.extend(e for e in self.proto.events_received() if isinstance(e, Frame))
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


def _parse_head(raw: bytes, partial: bool = False) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
    """Status, reason, headers and body start of an HTTP reply websockets could not take whole:
    a body that never finished, an HTTP/1.0 reply, or (``partial``) a header block cut short."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep and not partial:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    headers = []
    for line in lines[1:]:
        k, __, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, rest


def _cert_requested(ctx: ssl.SSLContext | None, sslobj: Any) -> bool:
    if ctx is None:
        return False
    from lokin_doctor.instruments import tlsinfo

    return tlsinfo.cert_requested(None if sslobj is not None else ctx, sslobj)


def _too_large(cause: BaseException | None) -> bool:
    """websockets' own limits on a reply head: a line past 8 KiB or more than 128 headers."""
    from websockets.exceptions import HeaderLineTooLong, SecurityError, StatusLineTooLong, TooManyHeaders

    if isinstance(cause, StatusLineTooLong | HeaderLineTooLong | TooManyHeaders):
        return True
    return isinstance(cause, SecurityError) and "line too long" in str(cause)


def _negotiation_kind(failure: BaseException | None) -> str | None:
    """``bad-subprotocol`` / ``bad-extension`` for a 101 whose negotiation websockets refused."""
    from websockets.exceptions import InvalidHeader, NegotiationError

    text = str(failure).lower()
    if isinstance(failure, InvalidHeader):
        name = failure.name.lower()
        if name == "sec-websocket-protocol":
            return "bad-subprotocol"
        return "bad-extension" if name == "sec-websocket-extensions" else None
    if isinstance(failure, NegotiationError):
        return "bad-subprotocol" if "subprotocol" in text else "bad-extension"
    return None


def _from_response(out: Outcome, response: Response) -> None:
    out.status = response.status_code
    out.reason = response.reason_phrase
    out.headers = list(response.headers.raw_items())
    out.body = bytes(response.body[:MAX_EVIDENCE])


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
) -> Outcome:
    """One opening handshake to ``address`` (with ``target.host`` as Host/SNI), bounded by ``deadline``.

    Never raises for network trouble: every failure becomes an :class:`Outcome` kind.
    ``compression`` offers permessage-deflate as browsers do.
    """
    loop = asyncio.get_running_loop()
    out = Outcome("timeout", address, target.port)
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
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                address,
                target.port,
                ssl=use_ssl,
                server_hostname=(server_hostname or target.host) if use_ssl else None,
                ssl_handshake_timeout=max(0.01, deadline - loop.time()) if use_ssl else None,
            )
    except TimeoutError:
        out.kind, out.error = (
            "connect-timeout",
            _("no answer to the TCP connect (or the TLS handshake) in time"),
        )
        return out
    except ConnectionRefusedError as exc:
        out.kind, out.error, out.exc = "connect-refused", str(exc), exc
        return out
    except ssl.SSLError as exc:
        out.kind, out.error, out.exc = (
            "tls-error",
            getattr(exc, "verify_message", None) or exc.reason or str(exc),
            exc,
        )
        out.cert_requested = _cert_requested(use_ssl, None)
        return out
    except (ConnectionResetError, ConnectionAbortedError) as exc:
        # A reset during the TLS handshake usually means the port does not speak TLS.
        out.kind, out.error, out.exc = (
            ("tls-error" if use_ssl else "reset"),
            str(exc) or _("connection reset"),
            exc,
        )
        return out
    except OSError as exc:
        out.kind, out.error, out.exc = "connect-error", exc.strerror or str(exc), exc
        return out
    out.connect_ms = (loop.time() - t0) * 1000
    out.tls = describe_tls(writer)
    out.cert_requested = _cert_requested(use_ssl, writer.get_extra_info("ssl_object"))

    conn = WsConn(reader, writer, proto)
    conn._flush()
    raw = bytearray()
    t1 = loop.time()
    response: Response | None = None
    body_deadline: float | None = None
    received = 0
    head_ended = False
    tail = b""
    try:
        while response is None and proto.handshake_exc is None:
            limit = deadline if body_deadline is None else min(deadline, body_deadline)
            try:
                if loop.time() >= limit:  # a peer that never pauses must not outlive the deadline
                    raise TimeoutError
                async with asyncio.timeout_at(limit):
                    data = await reader.read(65536)
            except TimeoutError:
                parsed = _parse_head(bytes(raw)) if body_deadline is not None else None
                if parsed is not None:
                    out.kind = "status"
                    out.status, out.reason, out.headers, body = parsed
                    out.body = body[:MAX_EVIDENCE]
                else:
                    out.kind, out.error = "timeout", _("no complete reply to the opening handshake in time")
                out.raw = bytes(raw[:MAX_EVIDENCE])
                conn.abort()
                return out
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                out.kind, out.error, out.exc = "reset", str(exc) or _("connection reset by peer"), exc
                out.raw = bytes(raw[:MAX_EVIDENCE])
                conn.abort()
                if raw:
                    parsed = _parse_head(bytes(raw))
                    if parsed is not None:
                        out.kind = "status"
                        out.status, out.reason, out.headers, body = parsed
                        out.body = body[:MAX_EVIDENCE]
                return out
            except ssl.SSLError as exc:
                out.kind, out.error, out.exc = "tls-error", exc.reason or str(exc), exc
                conn.abort()
                return out
            if not data:
                proto.receive_eof()
                if not raw:
                    out.kind, out.error = "closed", _("the server closed the connection without replying")
                    conn.abort()
                    return out
            else:
                if len(raw) < MAX_EVIDENCE:
                    raw += data[: MAX_EVIDENCE - len(raw)]
                received += len(data)
                head_ended = head_ended or b"\r\n\r\n" in tail + data
                tail = data[-3:]
                if not head_ended and received > MAX_HEADER_BYTES:
                    out.kind = "headers-too-large"
                    out.error = _(
                        "the reply's header block went past {MAX_HEADER_BYTES} KiB without ending"
                    ).format(MAX_HEADER_BYTES=MAX_HEADER_BYTES // 1024)
                    conn.abort()
                    return out
                proto.receive_data(data)
                if body_deadline is None and head_ended and not raw.startswith(b"HTTP/1.1 101"):
                    body_deadline = loop.time() + BODY_GRACE_S
            for event in proto.events_received():
                if isinstance(event, Response):
                    response = event
                elif isinstance(event, Frame):
                    conn.pending.append(event)
            if not data:
                break
    finally:
        out.raw = bytes(raw[:MAX_EVIDENCE])
    out.handshake_ms = (loop.time() - t1) * 1000
    failure = proto.handshake_exc
    if response is not None:
        _from_response(out, response)
    if failure is None and response is not None:
        out.kind = "upgraded"
        conn.opened_at = loop.time()
        conn._flush()
        if keep_open:
            out.conn = conn
        else:
            await conn.close(min(deadline, loop.time() + 1.0))
        return out
    conn.abort()
    out.exc = failure
    if isinstance(failure, InvalidStatus):
        out.kind = "status"
        _from_response(out, failure.response)
    elif isinstance(failure, InvalidHeaderValue) and "Accept" in str(failure):
        out.kind, out.error = "bad-accept", str(failure)
    elif isinstance(failure, InvalidUpgrade):
        out.kind, out.error = "invalid-upgrade", str(failure)
    elif _too_large(failure) or (isinstance(failure, InvalidMessage) and _too_large(failure.__cause__)):
        detail = failure.__cause__ if isinstance(failure, InvalidMessage) else failure
        out.kind, out.error = (
            "headers-too-large",
            _("the reply's head is too large ({value})").format(value=detail or _("line too long")),
        )
    elif response is not None and response.status_code == 101 and (negotiation := _negotiation_kind(failure)):
        out.kind, out.error = negotiation, str(failure)
    elif isinstance(failure, InvalidMessage):
        cause = failure.__cause__
        parsed = _parse_head(bytes(raw), partial=True) if raw.startswith(b"HTTP/") else None
        if isinstance(cause, EOFError) and not raw:
            out.kind, out.error = "closed", _("the server closed the connection without replying")
        elif parsed is not None and not isinstance(cause, EOFError):
            # websockets only takes HTTP/1.1; an HTTP/1.0 server (python -m http.server) still said something.
            out.kind = "status"
            out.status, out.reason, out.headers, body = parsed
            out.body = body[:MAX_EVIDENCE]
        elif isinstance(cause, EOFError) and raw.startswith(b"HTTP/"):
            parsed = _parse_head(bytes(raw))
            if parsed is not None:
                out.kind = "status"
                out.status, out.reason, out.headers, body = parsed
                out.body = body[:MAX_EVIDENCE]
            else:
                out.kind, out.error = (
                    "closed",
                    _("the server closed the connection in the middle of its reply"),
                )
        else:
            out.kind, out.error = "not-http", str(cause) if cause else str(failure)
    elif failure is not None:
        out.kind, out.error = "invalid-upgrade", str(failure)
    else:
        out.kind, out.error = "closed", _("the server closed the connection without a complete reply")
    return out
