"""One TCP connection of ``serve``: an ``asyncio.Protocol`` driving a websockets sans-I/O
``ServerProtocol`` (HTTP parsing, handshake validation, frames, close handshake).

The connection parses and sends; what to answer is decided by its :class:`Owner` (the server)
(``app``): ``app.on_request`` for an HTTP request, ``app.on_json`` and ``app.broadcast`` for the
LOK IN protocol, ``app.connection_closed`` for the bookkeeping at the end.

Byte order does not matter. Whatever arrives in one read is handled in the order it was sent:

- :class:`LokinProtocol` stops parsing after the HTTP request until the server answered it (a
  pipelined second request, or frames sent right behind the handshake, wait for the 101 instead
  of being parsed as frames of a connection that is not open yet);
- data frames are handled as each is parsed (``recv_frame``), not after the whole read, so the
  echo of a valid frame is written before the close caused by an invalid frame behind it;
- a close frame between two fragments ends the connection normally (RFC 6455 5.4, 7.1.5) instead
  of websockets' 1002; the unfinished message is dropped;
- the UTF-8 of a fragmented text message is checked fragment by fragment (an incremental
  decoder kept only while such a message is in progress): the fragment that breaks it fails
  the connection at once with 1007; so is the received part of a text frame still arriving
  (:mod:`lokin_doctor.server.failfast`);
- a message has at most ``max_fragments`` fragments (1009 beyond), and every fragment's wire
  header counts toward ``max_message_size``: an endless stream of empty fragments is closed;
- nothing is written after the TCP half-close (EOF).
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Generator
from typing import TYPE_CHECKING
from typing import Protocol as Interface

from websockets.exceptions import ProtocolError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol

import lokin_doctor.server.failfast as failfast
from lokin_doctor.server.logs import one_line

if TYPE_CHECKING:
    import logging

    from websockets.extensions.base import ServerExtensionFactory

    from lokin_doctor.server.config import ServerConfig
    from lokin_doctor.server.logs import EventLog
    from lokin_doctor.server.metrics import Stats


class Owner(Interface):
    """What a connection needs of the server that accepted it (``LokinServer`` is one): settings and
    counters to read, and the decisions it asks for. The connection knows this, not the server's class."""

    config: ServerConfig
    log: EventLog
    stats: Stats
    ws_logger: logging.LoggerAdapter[logging.Logger]
    extensions: list[ServerExtensionFactory] | None
    echo_only: bool
    close_timeout: float
    loop: asyncio.AbstractEventLoop
    conns: set[LokinConnection]

    def on_request(self, conn: LokinConnection, request: Request) -> None: ...
    def on_json(self, conn: LokinConnection, message: str) -> str | None: ...
    def broadcast(self, payload: bytes) -> None: ...
    def connection_closed(self, conn: LokinConnection) -> None: ...
    def tls_on_plain_port(self, conn: LokinConnection) -> None: ...


_OPEN, _CONNECTING = State.OPEN, State.CONNECTING
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_Bytes = bytes | bytearray | memoryview  # what a Frame carries
_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: Transport write-buffer marks: over WRITE_HIGH the server stops reading from that client until
#: its buffer drains below WRITE_LOW (asyncio's pause_writing / resume_writing callbacks).
WRITE_HIGH = 64 * 1024
WRITE_LOW = 16 * 1024


def _header_size(payload: int) -> int:
    """Wire size of a client frame's header (2 bytes, extended length, 4-byte mask)."""
    return 6 if payload < 126 else 8 if payload < 65536 else 14


class _AfterResponse(Protocol):
    """Placed between ``ServerProtocol`` and ``Protocol`` in the MRO of :class:`LokinProtocol`.

    ``ServerProtocol.parse`` reads the HTTP request, queues it as an event, then calls
    ``super().parse()`` to read frames at once, before the request was answered: a second
    pipelined request was parsed as a frame (failing a connection still CONNECTING, then an
    AssertionError when the answer was sent), and a close frame right behind the handshake queued
    an EOF before the 101. Here ``super().parse()`` resolves to this method, which waits until
    the response is sent: parsing resumes (``LokinConnection.data_received`` feeds ``b""``)
    only if it was a 101; any other answer replaces the parser with ``discard()``.
    """

    def parse(self) -> Generator[None]:
        while self.state is _CONNECTING:
            yield
        yield from super().parse()


class LokinProtocol(ServerProtocol, _AfterResponse):
    """websockets' ServerProtocol, with data frames handed to the connection as they are parsed."""

    conn: LokinConnection | None = None  # set while the TCP connection is up (cleared: no cycle)

    def recv_frame(self, frame: Frame) -> None:
        # The data-frame part of Protocol.recv_frame (its checks and its message-size count),
        # plus the hand-off; control frames go to websockets unchanged, except a close between
        # fragments, which is legal (control frames may be injected in a fragmented message).
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if self.current_size is not None:
                raise ProtocolError("expected a continuation frame")
            if not frame.fin:
                n = len(frame.data)
                self.current_size = n + _header_size(n)
        elif opcode is _CONT:
            if self.current_size is None:
                raise ProtocolError("unexpected continuation frame")
            if frame.fin:
                self.current_size = None
            else:
                n = len(frame.data)
                self.current_size += n + _header_size(n)
        else:
            if opcode is _CLOSE and self.current_size is not None:
                self.current_size = None
                if self.conn is not None:
                    self.conn.partial = None
            super().recv_frame(frame)
            return
        if self.conn is not None:
            self.conn.on_data(frame)


class _Partial:
    """A fragmented message being received: its bytes, its UTF-8 decoder (text), its fragments."""

    __slots__ = ("count", "data", "decoder", "text")

    def __init__(self, frame: Frame) -> None:
        self.text = frame.opcode is _TEXT
        self.data = bytearray(frame.data)  # one buffer: empty fragments cost no memory
        self.count = 1
        self.decoder = _utf8_decoder() if self.text else None
        if self.decoder is not None:
            self.decoder.decode(frame.data, False)  # UnicodeDecodeError: 1007 (websockets' parse)


class LokinConnection(asyncio.Protocol):
    """One TCP connection: the asyncio side of a websockets sans-I/O ``ServerProtocol``.

    Every field is in ``__slots__`` (no instance ``__dict__``). Nothing from the handshake is kept
    once the connection is open but the client id and the peer IP (for the close log line).
    """

    __slots__ = (
        "app",
        "client_id",
        "closing",
        "cut",
        "got_bytes",
        "got_request",
        "opened_at",
        "partial",
        "peer_ip",
        "pinged",
        "progress",
        "protocol",
        "reading_paused",
        "rx",
        "timer",
        "transport",
    )

    def __init__(self, app: Owner) -> None:
        # asyncio creates this object when it accepts the TCP connection, before the TLS handshake
        # (connection_made comes after it, or never if the handshake fails): the accept time is
        # noted here and the open timeout armed in connection_made with what is left of it, so
        # ONE timeout covers TCP accept, TLS and the upgrade (asyncio's ssl_handshake_timeout,
        # the same value, cuts a stalled TLS handshake). A failed TLS handshake leaves nothing
        # behind: no timer, no websockets protocol.
        self.app = app
        self.protocol: LokinProtocol = None  # type: ignore[assignment]  # set by connection_made
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.client_id = ""
        self.peer_ip = ""  # set when a slot is reserved (accepted upgrade); "" otherwise
        self.opened_at = time.monotonic()  # the TCP accept, then the reservation (accepted upgrade)
        self.cut = ""  # why the server cut it before a request: "tls_probe" (logged then), "open_timeout"
        self.got_bytes = False  # something arrived before the request (garbage if no request follows)
        self.got_request = False  # an HTTP request was parsed (handshake or plain HTTP)
        self.timer: asyncio.TimerHandle | None = None  # open timeout, then close timeout
        self.partial: _Partial | None = None  # a fragmented message being received
        self.progress: failfast.Progress | None = None  # UTF-8 checked so far of a stalled text frame
        self.rx = True  # data received since the last keepalive round
        self.pinged = 0.0  # monotonic time of the unanswered keepalive ping, 0.0 if none
        self.reading_paused = False
        self.closing = False  # the close timer is armed (the protocol expects the TCP close)

    # -- asyncio.Protocol callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        app = self.app
        cfg = app.config
        self.protocol = LokinProtocol(
            extensions=app.extensions, max_size=cfg.max_message_size, logger=app.ws_logger
        )
        self.protocol.conn = self
        app.conns.add(self)
        self.transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        left = cfg.open_timeout - (time.monotonic() - self.opened_at)
        if left <= 0:  # the whole open timeout went into the TLS handshake
            self.transport.abort()
        else:
            self.timer = app.loop.call_later(left, self._open_timeout)

    def data_received(self, data: bytes) -> None:
        if not self.got_request:
            # 0x16 is a TLS handshake record: a wss:// client (an https page) talking to this plain
            # ws:// port. Without this check it would wait for the open timeout and leave no trace.
            if data[:1] == b"\x16" and not self.app.config.tls:
                self.cut = "tls_probe"
                self.app.tls_on_plain_port(self)
                self.transport.abort()
                return
            self.got_bytes = True
        self.rx = True
        protocol = self.protocol
        try:
            # Data frames are handled while they are parsed (LokinProtocol.recv_frame); the only
            # event left to handle here is the HTTP request.
            protocol.receive_data(data)
            for event in protocol.events_received():
                if type(event) is Request:
                    self.app.on_request(self, event)
                    if protocol.state is _OPEN:
                        # Frames sent right behind the handshake: parse them now that it is open.
                        protocol.receive_data(b"")
            if protocol.reader.buffer and protocol.state is _OPEN:
                self._check_stalled_text()  # a frame is incomplete: is its text already invalid?
        except Exception as exc:  # a bug must cost one connection (1011), never the server
            self._crashed(exc)
            if protocol.state is _CONNECTING:
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
        self.protocol.conn = None
        self.partial = self.progress = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.app.connection_closed(self)

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

    # -- receiving -------------------------------------------------------------------------------

    def on_data(self, frame: Frame) -> None:
        """A data frame, as soon as it is parsed (websockets already checked its opcode and order)."""
        try:
            partial = self.partial
            if frame.opcode is _CONT:
                if partial is None:  # dropped: the message already failed
                    return
                partial.count += 1
                if partial.count > self.app.config.max_fragments:
                    self.partial = None
                    self.protocol.fail(
                        1009, f"message in more than {self.app.config.max_fragments} fragments"
                    )
                    return
                if partial.decoder is not None:
                    partial.decoder.decode(frame.data, frame.fin)
                partial.data += frame.data
                if frame.fin:
                    self.partial = None
                    self._message(partial.text, partial.data, checked=True)
            elif frame.fin:
                self._message(frame.opcode is _TEXT, frame.data)
            else:
                self.partial = _Partial(frame)
        except UnicodeDecodeError:
            self.partial = None
            raise  # websockets' parse() fails the connection with 1007 and the reason
        except Exception as exc:  # a bug must cost one connection (1011), never the server
            self.partial = None
            self._crashed(exc)

    def _check_stalled_text(self) -> None:
        partial = self.partial
        try:
            self.progress = failfast.check(self.protocol, self.progress, partial.decoder if partial else None)
        except UnicodeDecodeError as exc:
            self.progress = self.partial = None
            self.protocol.fail(1007, f"invalid UTF-8: {exc.reason}")

    def _crashed(self, exc: Exception) -> None:
        self.app.log.emit(
            "error", f"connection handler failed: {one_line(exc)}", level="error", client=self.client_id
        )
        if self.protocol.state is _OPEN:
            self.protocol.fail(1011, "internal error")

    def _message(self, is_text: bool, data: _Bytes, checked: bool = False) -> None:
        """One complete message from the client: echo, or the LOK IN protocol (pong, broadcast)."""
        app = self.app
        protocol = self.protocol
        app.stats.msgs_in += 1
        if protocol.state is not _OPEN:
            return  # closing: nothing more is sent
        if is_text:
            if app.echo_only:
                if not checked:
                    try:
                        codecs.utf_8_decode(data, None, True)
                    except UnicodeDecodeError as exc:
                        protocol.fail(1007, f"{exc.reason} at position {exc.start}")
                        return
                protocol.send_text(data)
                app.stats.msgs_out += 1
                return
            try:
                text = str(data, "utf-8")
            except UnicodeDecodeError as exc:
                protocol.fail(1007, f"{exc.reason} at position {exc.start}")
                return
            if text.startswith("{") and '"type"' in text:
                reply = app.on_json(self, text)
                if reply is None:
                    return
                protocol.send_text(reply.encode())
            else:
                protocol.send_text(data)
        else:
            protocol.send_binary(data)
        app.stats.msgs_out += 1

    # -- sending ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what the protocol produced; half-close (or close) when it asks for an EOF."""
        transport = self.transport
        protocol = self.protocol
        writes = protocol.data_to_send()
        if transport.is_closing():
            # Aborted or closed, connection_lost not delivered yet (a keepalive round or a
            # broadcast can come in between): writing would raise on uvloop. Drop the output.
            return
        if protocol.eof_sent and b"" not in writes:
            return  # the EOF went out in an earlier flush: nothing is written after it
        if len(writes) > 1 and writes[-1]:
            # Several frames and no EOF (the 101 and the welcome, replies to a burst): one write
            # is one syscall and one TCP segment instead of one per frame (bench/RESULTS.md section 8).
            writes = [b"".join(writes)]
        for chunk in writes:
            if chunk:
                transport.write(chunk)
                continue
            if transport.can_write_eof():
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):  # already closing; uvloop raises RuntimeError
                    transport.close()
            else:  # TLS: no half-close
                transport.close()
            break  # nothing is written after the EOF
        if not self.closing and protocol.close_expected():
            # The peer has close_timeout to finish the closing handshake, then the TCP connection
            # is cut. This replaces the open timeout of a connection refused or answered over HTTP.
            self.closing = True
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.app.loop.call_later(self.app.close_timeout, transport.abort)

    def _open_timeout(self) -> None:
        self.timer = None
        if self.protocol.state is _CONNECTING:
            self.cut = "open_timeout"
            self.transport.abort()


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
