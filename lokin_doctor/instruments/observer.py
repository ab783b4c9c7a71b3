"""Sans-I/O observers: what a WebSocket server's bytes mean, with no socket in sight.

:class:`HandshakeObserver` drives websockets' sans-I/O :class:`~websockets.client.ClientProtocol`
through one opening handshake. What goes in are events, as an I/O adapter sees them: the bytes
received (:meth:`~HandshakeObserver.data`), the end of stream (:meth:`~HandshakeObserver.eof`), a
reset, the deadline passing, a TLS error while reading, and the connect-stage failures (refused,
connect timeout, connect error, TLS handshake error). What comes out is, once :attr:`done`, a frozen
:class:`Observation` whose :class:`OutcomeKind` names what the bytes showed, with the evidence
(status, reason, headers, a bounded body and the first :data:`MAX_EVIDENCE` bytes). The adapter
sends :meth:`~HandshakeObserver.data_to_send`, and after a non-101 head it waits at most
:data:`BODY_GRACE_S` more for a body (:attr:`~HandshakeObserver.grace`).

:class:`SessionObserver` does the same after the 101: bytes in, frames out, and an :class:`SessionEnd`
once the connection is over (close frame, dropped, invalid UTF-8, a frame too big, a protocol error).

:mod:`lokin_doctor.instruments.wire` (the doctor's asyncio client) and the load client's
``asyncio.Protocol`` both feed these, so ``classify`` sees the same outcome whichever moved the bytes.
"""

from __future__ import annotations

import codecs
import enum
from dataclasses import dataclass
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHeaderValue, InvalidMessage, InvalidStatus, InvalidUpgrade
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State

from lokin_doctor.i18n import _

#: How much of the reply we keep as evidence.
MAX_EVIDENCE = 64 * 1024
#: Once a full non-101 header block arrived, how long to wait for a body with no length.
BODY_GRACE_S = 0.3
#: A reply whose header block is not over after this many bytes is refused (Chromium's limit: 256 KiB).
MAX_HEADER_BYTES = 256 * 1024


class OutcomeKind(enum.StrEnum):
    """What one opening handshake ended with (a ``str``: ``kind == "upgraded"`` still holds)."""

    UPGRADED = "upgraded"  # a valid 101
    STATUS = "status"  # an HTTP reply other than 101
    INVALID_UPGRADE = "invalid-upgrade"  # 101 with bad Upgrade/Connection headers
    BAD_ACCEPT = "bad-accept"  # 101 with a wrong Sec-WebSocket-Accept
    NOT_HTTP = "not-http"  # bytes that are not HTTP
    CLOSED = "closed"  # closed with no (complete) reply
    RESET = "reset"  # connection reset
    TIMEOUT = "timeout"  # no complete reply in time
    CONNECT_REFUSED = "connect-refused"
    CONNECT_TIMEOUT = "connect-timeout"
    CONNECT_ERROR = "connect-error"
    TLS_ERROR = "tls-error"
    HEADERS_TOO_LARGE = "headers-too-large"  # past MAX_HEADER_BYTES, a line past 8 KiB, > 128 headers
    BAD_SUBPROTOCOL = "bad-subprotocol"  # 101 naming a subprotocol not offered, or several
    BAD_EXTENSION = "bad-extension"  # 101 with an extension not offered or unacceptable parameters


@dataclass(frozen=True)
class Observation:
    """The observer's verdict on one handshake, with the evidence the bytes gave."""

    kind: OutcomeKind
    status: int | None = None
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    raw: bytes = b""
    error: str | None = None
    exc: BaseException | None = None


def parse_head(raw: bytes, partial: bool = False) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
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


def _too_large(cause: BaseException | None) -> bool:
    """websockets' own limits on a reply head: a line past 8 KiB or more than 128 headers."""
    from websockets.exceptions import HeaderLineTooLong, SecurityError, StatusLineTooLong, TooManyHeaders

    if isinstance(cause, StatusLineTooLong | HeaderLineTooLong | TooManyHeaders):
        return True
    return isinstance(cause, SecurityError) and "line too long" in str(cause)


def _negotiation_kind(failure: BaseException | None) -> OutcomeKind | None:
    """``bad-subprotocol`` / ``bad-extension`` for a 101 whose negotiation websockets refused."""
    from websockets.exceptions import InvalidHeader, NegotiationError

    text = str(failure).lower()
    if isinstance(failure, InvalidHeader):
        name = failure.name.lower()
        if name == "sec-websocket-protocol":
            return OutcomeKind.BAD_SUBPROTOCOL
        return OutcomeKind.BAD_EXTENSION if name == "sec-websocket-extensions" else None
    if isinstance(failure, NegotiationError):
        return OutcomeKind.BAD_SUBPROTOCOL if "subprotocol" in text else OutcomeKind.BAD_EXTENSION
    return None


def _status_from(raw: bytes, partial: bool = False, **extra: Any) -> Observation | None:
    parsed = parse_head(raw, partial=partial)
    if parsed is None:
        return None
    status, reason, headers, body = parsed
    return Observation(OutcomeKind.STATUS, status, reason, tuple(headers), body[:MAX_EVIDENCE], raw, **extra)


_LEAN_UPGRADED = Observation(OutcomeKind.UPGRADED, 101, "Switching Protocols")


class HandshakeObserver:
    """One opening handshake, sans I/O: feed it what the connection did, read :attr:`outcome`.

    ``proto`` is a :class:`ClientProtocol` whose request was already sent with ``send_request``;
    ``keep`` bounds the raw bytes kept as evidence (the load client keeps less per connection);
    with ``lean`` a valid 101 carries no evidence (the load client opens thousands and reads none).
    """

    __slots__ = (
        "proto",
        "keep",
        "raw",
        "received",
        "head_ended",
        "grace",
        "response",
        "frames",
        "outcome",
        "concluded",
        "lean",
        "_tail",
    )

    def __init__(self, proto: ClientProtocol, *, keep: int = MAX_EVIDENCE, lean: bool = False) -> None:
        self.proto = proto
        self.lean = lean
        self.keep = keep
        self.raw = bytearray()
        self.received = 0
        self.head_ended = False
        #: A complete non-101 head arrived: the adapter waits at most BODY_GRACE_S more, then calls timeout().
        self.grace = False
        self.response: Response | None = None
        #: Frames that came in the same bytes as the 101 (the session reads them first).
        self.frames: list[Frame] = []
        #: Set once the handshake is over (``done``).
        self.outcome: Observation | None = None
        #: The outcome is websockets' verdict on a reply (not a deadline, a reset or a byte count).
        self.concluded = False
        self._tail = b""

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def upgraded(self) -> bool:
        return self.outcome is not None and self.outcome.kind is OutcomeKind.UPGRADED

    def data_to_send(self) -> list[bytes]:
        return self.proto.data_to_send()

    # -- events --------------------------------------------------------------------------------------
    def data(self, data: bytes) -> Observation | None:
        """Bytes received; the outcome once they end the handshake."""
        if self.outcome is not None:
            return self.outcome
        if not data:
            return self.eof()
        raw = self.raw
        if len(raw) < self.keep:
            raw += data[: self.keep - len(raw)]
        self.received += len(data)
        if not self.head_ended:
            self.head_ended = b"\r\n\r\n" in self._tail + data
            self._tail = data[-3:]
            if not self.head_ended and self.received > MAX_HEADER_BYTES:
                return self._end(
                    OutcomeKind.HEADERS_TOO_LARGE,
                    error=_(
                        "the reply's header block went past {MAX_HEADER_BYTES} KiB without ending"
                    ).format(MAX_HEADER_BYTES=MAX_HEADER_BYTES // 1024),
                )
        proto = self.proto
        proto.receive_data(data)
        if not self.grace and self.head_ended and not raw.startswith(b"HTTP/1.1 101"):
            self.grace = True
        self._take_events()
        if self.response is not None or proto.handshake_exc is not None:
            return self._conclude()
        return None

    def eof(self) -> Observation:
        """The server closed its side."""
        if self.outcome is not None:
            return self.outcome
        self.proto.receive_eof()
        if not self.raw:
            return self._end(OutcomeKind.CLOSED, error=_("the server closed the connection without replying"))
        self._take_events()
        return self._conclude()

    def reset(self, exc: BaseException | None = None) -> Observation:
        """The connection was reset (or aborted) while waiting for the reply."""
        if self.outcome is not None:
            return self.outcome
        raw = bytes(self.raw)
        error = (str(exc) if exc else "") or _("connection reset by peer")
        if raw and (out := _status_from(raw, error=error, exc=exc)) is not None:
            self.outcome = out
            return out
        return self._end(OutcomeKind.RESET, error=error, exc=exc)

    def timeout(self) -> Observation:
        """The deadline (or the body grace after a non-101 head) passed."""
        if self.outcome is not None:
            return self.outcome
        if self.grace and (out := _status_from(bytes(self.raw))) is not None:
            self.outcome = out
            return out
        return self._end(OutcomeKind.TIMEOUT, error=_("no complete reply to the opening handshake in time"))

    def tls_failed(self, exc: BaseException, message: str | None = None) -> Observation:
        """A TLS error, during the TLS handshake or while reading the reply."""
        if self.outcome is not None:
            return self.outcome
        return self._end(
            OutcomeKind.TLS_ERROR, error=message or getattr(exc, "reason", None) or str(exc), exc=exc
        )

    def connect_refused(self, exc: BaseException) -> Observation:
        return self._end(OutcomeKind.CONNECT_REFUSED, error=str(exc), exc=exc)

    def connect_reset(self, exc: BaseException, tls: bool) -> Observation:
        """A reset during the connect; during a TLS handshake it usually means the port does not speak TLS."""
        kind = OutcomeKind.TLS_ERROR if tls else OutcomeKind.RESET
        return self._end(kind, error=str(exc) or _("connection reset"), exc=exc)

    def connect_timeout(self) -> Observation:
        return self._end(
            OutcomeKind.CONNECT_TIMEOUT,
            error=_("no answer to the TCP connect (or the TLS handshake) in time"),
        )

    def connect_error(self, exc: BaseException) -> Observation:
        return self._end(OutcomeKind.CONNECT_ERROR, error=getattr(exc, "strerror", None) or str(exc), exc=exc)

    # -- verdict --------------------------------------------------------------------------------------
    def _end(self, kind: OutcomeKind, **fields: Any) -> Observation:
        self.outcome = Observation(kind, raw=bytes(self.raw), **fields)
        return self.outcome

    def _take_events(self) -> None:
        for event in self.proto.events_received():
            if isinstance(event, Response):
                if self.response is None:
                    self.response = event
            elif isinstance(event, Frame):
                self.frames.append(event)

    def _conclude(self) -> Observation:
        """What websockets concluded (a Response and/or ``handshake_exc``), as an outcome kind."""
        self.concluded = True
        failure = self.proto.handshake_exc
        response = self.response
        if self.lean and failure is None and response is not None:
            self.outcome = _LEAN_UPGRADED
            return _LEAN_UPGRADED
        raw = bytes(self.raw)
        ev: dict[str, Any] = {"raw": raw}
        if response is not None:
            ev.update(
                status=response.status_code,
                reason=response.reason_phrase,
                headers=tuple(response.headers.raw_items()),
                body=bytes(response.body[:MAX_EVIDENCE]),
            )
        if failure is None and response is not None:
            self.outcome = Observation(OutcomeKind.UPGRADED, **ev)
            return self.outcome
        ev["exc"] = failure
        kind: OutcomeKind
        if isinstance(failure, InvalidStatus):
            r = failure.response
            ev.update(
                status=r.status_code,
                reason=r.reason_phrase,
                headers=tuple(r.headers.raw_items()),
                body=bytes(r.body[:MAX_EVIDENCE]),
            )
            kind = OutcomeKind.STATUS
        elif isinstance(failure, InvalidHeaderValue) and "Accept" in str(failure):
            kind, ev["error"] = OutcomeKind.BAD_ACCEPT, str(failure)
        elif isinstance(failure, InvalidUpgrade):
            kind, ev["error"] = OutcomeKind.INVALID_UPGRADE, str(failure)
        elif _too_large(failure) or (isinstance(failure, InvalidMessage) and _too_large(failure.__cause__)):
            detail = failure.__cause__ if isinstance(failure, InvalidMessage) else failure
            kind = OutcomeKind.HEADERS_TOO_LARGE
            ev["error"] = _("the reply's head is too large ({value})").format(
                value=detail or _("line too long")
            )
        elif (
            response is not None
            and response.status_code == 101
            and (negotiation := _negotiation_kind(failure))
        ):
            kind, ev["error"] = negotiation, str(failure)
        elif isinstance(failure, InvalidMessage):
            cause = failure.__cause__
            if isinstance(cause, EOFError) and not raw:
                kind, ev["error"] = OutcomeKind.CLOSED, _("the server closed the connection without replying")
            elif raw.startswith(b"HTTP/") and not isinstance(cause, EOFError):
                # websockets only takes HTTP/1.1; an HTTP/1.0 server (python -m http.server) still said something.
                out = _status_from(raw, partial=True, exc=failure)
                if out is None:
                    kind, ev["error"] = OutcomeKind.NOT_HTTP, str(cause) if cause else str(failure)
                else:
                    self.outcome = out
                    return out
            elif isinstance(cause, EOFError) and raw.startswith(b"HTTP/"):
                out = _status_from(raw, exc=failure)
                if out is not None:
                    self.outcome = out
                    return out
                kind = OutcomeKind.CLOSED
                ev["error"] = _("the server closed the connection in the middle of its reply")
            else:
                kind, ev["error"] = OutcomeKind.NOT_HTTP, str(cause) if cause else str(failure)
        elif failure is not None:
            kind, ev["error"] = OutcomeKind.INVALID_UPGRADE, str(failure)
        else:
            kind, ev["error"] = (
                OutcomeKind.CLOSED,
                _("the server closed the connection without a complete reply"),
            )
        self.outcome = Observation(kind, **ev)
        return self.outcome


class SessionEnd(enum.StrEnum):
    """Why a connection that got its 101 is over."""

    CLOSED = "closed"  # the server's close frame arrived
    DROPPED = "dropped"  # end of stream with no close frame (1006)
    INVALID_UTF8 = (
        "invalid-utf8"  # a text message (or close reason) that is not UTF-8: we failed it with 1007
    )
    TOO_BIG = "too-big"  # a frame header announcing more than max_size: we failed it with 1009
    PROTOCOL_ERROR = "protocol-error"  # a frame the protocol rejects (masked, reserved opcode...): 1002


class SessionObserver:
    """The frames after the 101, sans I/O: :meth:`data` / :meth:`eof` in, frames and :attr:`end` out.

    websockets' parser judges framing (masking, opcodes, sizes, close codes); text messages are also
    checked for UTF-8 as they arrive, fragment by fragment, and failed with 1007 as a browser does
    (websockets' sans-I/O layer leaves that to its callers). Once :attr:`end` is set no frame after
    the offending one is delivered but the server's close frame.
    """

    def __init__(self, proto: ClientProtocol) -> None:
        self.proto = proto
        self.end: SessionEnd | None = None
        self.utf8_error: str | None = None
        self._decoder: Any = None

    @property
    def protocol_error(self) -> Exception | None:
        """The frame-level error websockets found (not a plain end of stream), if any."""
        exc = self.proto.parser_exc
        return None if exc is None or isinstance(exc, EOFError) else exc

    def data(self, data: bytes) -> list[Frame]:
        self.proto.receive_data(data)
        return self._frames()

    def eof(self) -> list[Frame]:
        self.proto.receive_eof()
        frames = self._frames()
        if self.end is None:
            self.end = SessionEnd.DROPPED
        return frames

    def data_to_send(self) -> list[bytes]:
        return self.proto.data_to_send()

    def fail(self, code: int, reason: str) -> None:
        if self.proto.state is State.OPEN:
            self.proto.fail(code, reason)

    def _frames(self) -> list[Frame]:
        frames: list[Frame] = []
        for event in self.proto.events_received():
            if not isinstance(event, Frame):
                continue
            if self.end is SessionEnd.INVALID_UTF8 and event.opcode is not Opcode.CLOSE:
                continue  # the connection is failed: only the server's close frame still matters
            frames.append(event)
            opcode = event.opcode
            if opcode is Opcode.TEXT or (opcode is Opcode.CONT and self._decoder is not None):
                if opcode is Opcode.TEXT:
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                try:
                    self._decoder.decode(bytes(event.data), final=event.fin)
                except UnicodeDecodeError as exc:
                    self.utf8_error = _("invalid UTF-8 in a text message: {reason} at byte {start}").format(
                        reason=exc.reason, start=exc.start
                    )
                    self.end = SessionEnd.INVALID_UTF8
                    self.fail(1007, _("invalid UTF-8"))
                if event.fin:
                    self._decoder = None
            elif opcode is Opcode.BINARY:
                self._decoder = None
            elif opcode is Opcode.CLOSE and self.end is None:
                self.end = SessionEnd.CLOSED
        failure = self.protocol_error
        if failure is not None and self.end in (None, SessionEnd.CLOSED):
            from websockets.exceptions import PayloadTooBig

            if isinstance(failure, UnicodeDecodeError):
                self.end = SessionEnd.INVALID_UTF8
                self.utf8_error = _("invalid UTF-8 in a close reason: {proto_exc}").format(proto_exc=failure)
            else:
                big = isinstance(failure, PayloadTooBig)
                self.end = SessionEnd.TOO_BIG if big else SessionEnd.PROTOCOL_ERROR
        return frames
