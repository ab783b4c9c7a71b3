"""One TCP connection of ``serve``: an ``asyncio.Protocol`` driving a websockets sans-I/O
``ServerProtocol`` (HTTP parsing, handshake validation, frames, close handshake).

The connection parses and sends; what to answer is decided by its :class:`LokinServer`
(``app``): ``app._on_request`` for an HTTP request, ``app._on_json`` and ``app.broadcast`` for the
LOK IN protocol, ``app._connection_lost`` for the bookkeeping at the end.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

from lokin_doctor.server.logs import one_line

if TYPE_CHECKING:
    from lokin_doctor.server.app import LokinServer

_OPEN, _CONNECTING = State.OPEN, State.CONNECTING
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_Bytes = bytes | bytearray | memoryview  # what a Frame carries

#: Transport write-buffer marks: over WRITE_HIGH the server stops reading from that client until
#: its buffer drains below WRITE_LOW (asyncio's pause_writing / resume_writing callbacks).
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024


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


def eof_before_request(exc: BaseException | None) -> bool:
    """True when a connection ended before any HTTP request (probe, half-open, open timeout)."""
    # websockets records the end of stream while parsing the request line as an InvalidMessage
    # caused by EOFError; an abort by the open timeout can leave no exception at all.
    return exc is None or isinstance(exc.__cause__, EOFError)


def close_info(protocol: Protocol) -> tuple[int, str, str]:
    """(code, reason, who closed first) of a finished connection; 1006 when nobody sent a close frame."""
    rcvd, sent = protocol.close_rcvd, protocol.close_sent
    if rcvd is not None and (sent is None or protocol.close_rcvd_then_sent):
        return rcvd.code, rcvd.reason, "client"
    if sent is not None:
        return sent.code, sent.reason, "server" if rcvd is not None else "server (no reply)"
    return 1006, "", "network (no close frame)"
