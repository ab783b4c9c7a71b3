"""``session``: what happens after the 101 — greeting and client id, ping round trip,
``--send``/``--expect``, a short passive window (``--linger``), and a clean close.

Uses the connection the handshake left open (fact ``conn``), so it costs no second handshake.
Facts written: ``greeting`` (text of the first message), ``client_id``.

What the protocol concludes is the verdict: after every chunk, the websockets protocol's own
error (a reserved opcode, bad RSV bits, a frame past 1 MiB...) ends the check at once with the close
code our side sent, and text messages are decoded as UTF-8 the way a browser does (invalid UTF-8
fails the connection with 1007). Memory stays bounded whatever the server sends: the first
:data:`KEEP_MESSAGES` messages are kept (each cut at :data:`KEEP_CHARS`), the rest only counted.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import re
from typing import Any

from lokin_doctor.causes.session import (
    SESSION_CLOSED_AT_ONCE,
    SESSION_CLOSED_SOON,
    SESSION_DROPPED,
    SESSION_DROPPED_SOON,
    SESSION_EXPECT_MISMATCH,
    SESSION_FRAME_TOO_BIG,
    SESSION_INVALID_UTF8,
    SESSION_NO_PONG,
    SESSION_PROTOCOL_ERROR,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments.wire import WsConn
from lokin_doctor.model import CheckResult, fail, ok

#: After the pong, how long a greeting may still take to arrive.
GREETING_WAIT_S = 0.1
#: Messages kept for the report (the greeting, replies); later ones are only counted.
KEEP_MESSAGES = 5
#: Characters kept of each kept message (a JSON welcome fits).
KEEP_CHARS = 64 * 1024
#: Time kept for the closing handshake at the end of the linger window.
CLOSE_MARGIN_S = 0.1

#: What a close code the server sent means for the person reading the report.
_CLOSE_MEANING = {
    1000: N_("the server ended the session normally, by itself"),
    1001: N_("the server is going away (restarting or shutting down)"),
    1002: N_("the server saw a protocol error on our side"),
    1003: N_("the server refuses a data type we sent"),
    1005: N_("the server sent an empty close frame (no code)"),
    1007: N_("the server got data it could not decode"),
    1008: N_(
        "the server's policy refused this client (authentication, authorization, origin, a login timer)"
    ),
    1009: N_("a message was too big for the server"),
    1010: N_("the server wanted an extension we did not negotiate"),
    1011: N_("the server's handler failed (an exception in its connection or message handler)"),
    1012: N_("the server is restarting"),
    1013: N_("the server is overloaded (try again later)"),
}


def close_meaning(code: int | None) -> str:
    if code is None:
        return _(
            "the TCP connection was cut without a close frame (1006: a crash, a killed process or a proxy)"
        )
    if 4000 <= code <= 4999:
        return _("close code {code} is the application's own: look it up in the server's code").format(
            code=code
        )
    meaning = _CLOSE_MEANING.get(code)
    return _(meaning) if meaning else _("close code {code}").format(code=code)


def close_hint(code: int | None) -> str:
    if code == 1011:
        return _(
            "the server's handler crashes on new connections: read its log at that time for the exception"
        )
    if code == 1008:
        return _(
            "the server accepts the upgrade, then refuses the client: send what it expects (a token with --header 'Authorization: ...', an allowed --origin, a first message with --send) and read its log"
        )
    if code in (1001, 1012):
        return _(
            "the server was restarting or shutting down: run the check again once it is up, and read its log"
        )
    if code == 1013:
        return _("the server is overloaded: check its load and connection limits")
    if code == 1000:
        return _(
            "the server's handler closes every connection soon after it opens (a page sees connect, then disconnect): read its connection handler"
        )
    if code is None:
        return _(
            "the server crashes or kills connections after the upgrade, or a proxy cuts them: read the server's log; with nginx check proxy_read_timeout"
        )
    return _(
        "read the server's log at the time of the close (code {code}) to see why it ends connections"
    ).format(code=code)


#: Server ping times kept by the session (enough for an interval).
KEEP_PINGS = 20


class _Stream:
    """What the server sent after the 101, bounded: pong, the first messages, counts of the rest."""

    def __init__(self, conn: WsConn, payload: bytes, t_ping: float) -> None:
        self.conn = conn
        self.payload = payload
        self.t_ping = t_ping
        self.rtt_ms: float | None = None
        self.messages: list[str] = []
        self.count = 0
        self.data_bytes = 0
        self.invalid_utf8: str | None = None
        self.pattern: re.Pattern[str] | None = None
        self.watch_from = -1
        self.matched: str | None = None
        self._parts: list[str] = []
        self._kept = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._text = False
        #: When the server's pings arrived (loop time; bounded): their interval is a fact nginx reads.
        self.server_pings: list[float] = []

    def _fragment(self, data: bytes, fin: bool) -> None:
        self.data_bytes += len(data)
        if self._text:
            assert self._decoder is not None
            try:
                piece = self._decoder.decode(data, final=fin)
            except UnicodeDecodeError as exc:
                self.invalid_utf8 = _("invalid UTF-8 in a text message: {reason} at byte {start}").format(
                    reason=exc.reason, start=exc.start
                )
                self.conn.fail(1007, _("invalid UTF-8"))
                return
        else:
            piece = data.decode("utf-8", "replace")
        if self._kept < KEEP_CHARS:
            piece = piece[: KEEP_CHARS - self._kept]
            self._parts.append(piece)
            self._kept += len(piece)
        if fin:
            text = "".join(self._parts)
            self._parts.clear()
            self._kept = 0
            self.count += 1
            if len(self.messages) < KEEP_MESSAGES:
                self.messages.append(text)
            if self.pattern is not None and self.count > self.watch_from and self.matched is None:
                if self.pattern.search(text):
                    self.matched = text
            elif self.pattern is None and self.watch_from >= 0 and self.count > self.watch_from:
                self.matched = self.matched or text

    def feed(self, frame: Any) -> bool:
        """Take one frame; False when it ends the reading (a close frame, invalid UTF-8)."""
        from websockets.frames import Opcode

        if frame.opcode is Opcode.CLOSE:
            return False
        if frame.opcode is Opcode.PING and len(self.server_pings) < KEEP_PINGS:
            self.server_pings.append(asyncio.get_running_loop().time())
        if frame.opcode is Opcode.PONG:
            if bytes(frame.data) == self.payload and self.rtt_ms is None:
                loop = asyncio.get_running_loop()
                self.rtt_ms = (loop.time() - self.t_ping) * 1000
        elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._text = frame.opcode is Opcode.TEXT
            self._decoder = codecs.getincrementaldecoder("utf-8")() if self._text else None
            self._fragment(bytes(frame.data), frame.fin)
        elif frame.opcode is Opcode.CONT:
            self._fragment(bytes(frame.data), frame.fin)
        return self.invalid_utf8 is None

    async def read_until(self, pred: Any, deadline: float) -> bool:
        """Read frames until ``pred()`` holds; False when the connection ended or failed first."""
        while not pred():
            frame = await self.conn.next_frame(deadline)
            if frame is None or not self.feed(frame):
                return False
        return True


def _ended(conn: WsConn, stream: _Stream, stage: str, evidence: dict[str, Any], *, soon: bool) -> CheckResult:
    """The result once the connection ended early: our protocol's verdict first, then the server's close."""
    loop = asyncio.get_running_loop()
    after_ms = round((loop.time() - conn.opened_at) * 1000, 1) if conn.opened_at else None
    evidence["messages"] = [m[:300] for m in stream.messages]
    evidence["messages_received"] = stream.count
    if after_ms is not None:
        evidence["after_open_ms"] = after_ms
    when = _(" {after_ms:.0f} ms after the upgrade").format(after_ms=after_ms) if after_ms is not None else ""
    paren = f" ({when.strip()})" if when else ""
    proto_exc = conn.protocol_error
    if stream.invalid_utf8 is not None or proto_exc is not None:
        from websockets.exceptions import PayloadTooBig

        sent = conn.proto.close_sent
        sent_code = int(sent.code) if sent is not None else None
        evidence["close_code_sent"] = sent_code
        if stream.invalid_utf8 is not None or isinstance(proto_exc, UnicodeDecodeError):
            reason = stream.invalid_utf8 or _("invalid UTF-8 in a close reason: {proto_exc}").format(
                proto_exc=proto_exc
            )
            evidence["error"] = reason
            return fail(
                "session",
                SESSION_INVALID_UTF8,
                _(
                    "the server sent {reason}{paren}; a browser fails the connection, as we did (close code 1007)"
                ).format(reason=reason, paren=paren),
                _(
                    "the server sends text frames that are not UTF-8: send binary frames for bytes, or encode the text as UTF-8 (Buffer.from(s, 'utf8'), str.encode())"
                ),
                **evidence,
            )
        evidence["error"] = str(proto_exc)
        if isinstance(proto_exc, PayloadTooBig):
            return fail(
                "session",
                SESSION_FRAME_TOO_BIG,
                _(
                    "the server announced a message too big to take{when}: {proto_exc}; our side closed with {sent_code}"
                ).format(when=when, proto_exc=proto_exc, sent_code=sent_code),
                _(
                    "the server sends (or claims to send) a huge message: check what it sends on connect; if the header is garbage, something else than a WebSocket server writes to the connection"
                ),
                **evidence,
            )
        return fail(
            "session",
            SESSION_PROTOCOL_ERROR,
            _(
                "the server sent a frame the WebSocket protocol rejects{when}: {proto_exc}; our side closed with {sent_code}, as a browser would"
            ).format(when=when, proto_exc=proto_exc, sent_code=sent_code),
            _(
                "the server (or a proxy) writes invalid WebSocket frames (reserved opcode, RSV bits without an extension, bad masking, a bad close code): upgrade or fix the server's WebSocket library, and make sure nothing else writes to the socket after the upgrade"
            ),
            **evidence,
        )
    rcvd = conn.proto.close_rcvd
    if rcvd is not None:
        code, reason = int(rcvd.code), rcvd.reason
        what = _("close code {code}{value}").format(code=code, value=f" ({reason})" if reason else "")
        evidence["close_code"] = code
        evidence["close_reason"] = reason
        return fail(
            "session",
            SESSION_CLOSED_SOON if soon else SESSION_CLOSED_AT_ONCE,
            _("the server closed the connection {stage} with {what}{when}: {code}").format(
                stage=stage, what=what, when=when, code=close_meaning(code)
            ),
            close_hint(code),
            **evidence,
        )
    return fail(
        "session",
        SESSION_DROPPED_SOON if soon else SESSION_DROPPED,
        _("the server dropped the TCP connection {stage} without a close frame (1006){when}").format(
            stage=stage, when=when
        ),
        close_hint(None),
        **evidence,
    )


async def check(ctx: Context) -> CheckResult:
    conn: WsConn = ctx.facts["conn"]
    settings = ctx.settings
    loop = asyncio.get_running_loop()
    evidence: dict[str, Any] = {}
    payload = os.urandom(8)
    stream = _Stream(conn, payload, loop.time())
    # Frames that came with the 101 may already have failed the protocol: no ping then.
    if conn.protocol_error is None and conn.proto.close_rcvd is None and not conn.eof:
        conn.send_ping(payload)

    try:
        if not await stream.read_until(lambda: stream.rtt_ms is not None, ctx.deadline):
            return _ended(conn, stream, _("right after the upgrade"), evidence, soon=False)
        if not stream.messages:
            try:
                alive = await stream.read_until(
                    lambda: bool(stream.messages), min(ctx.deadline, loop.time() + GREETING_WAIT_S)
                )
            except TimeoutError:
                alive = True
            if not alive:
                return _ended(conn, stream, _("while we waited for a greeting"), evidence, soon=True)
    except TimeoutError:
        evidence["messages"] = [m[:300] for m in stream.messages]
        evidence["messages_received"] = stream.count
        evidence["bytes_received"] = conn.bytes_received
        meanwhile = (
            _(
                " (it sent {count} messages, {bytes_received:.0f} MiB, meanwhile: only the first {KEEP_MESSAGES} were kept)"
            ).format(
                count=stream.count, bytes_received=conn.bytes_received / 1048576, KEEP_MESSAGES=KEEP_MESSAGES
            )
            if stream.count > KEEP_MESSAGES
            else ""
        )
        return fail(
            "session",
            SESSION_NO_PONG,
            _("the server never answered a ping within the {timeout:g} s deadline{meanwhile}").format(
                timeout=settings.timeout, meanwhile=meanwhile
            ),
            (
                _(
                    "the server floods new connections and never answers the ping: check what it sends on connect (a broadcast or replay loop?) and whether its event loop keeps up"
                )
                if meanwhile
                else _(
                    "the server's event loop is blocked, or a proxy swallows control frames: check the server's CPU and log"
                )
            ),
            **evidence,
        )
    greeting = stream.messages[0] if stream.messages else None
    client_id = None
    instance = None  # lokin-doctor serve names the serving process (serve --redis, --workers)
    if greeting is not None:
        evidence["greeting"] = greeting[:300]
        ctx.facts["greeting"] = greeting
        try:
            data = json.loads(greeting)
            if isinstance(data, dict):
                client_id = data.get("clientId") or data.get("client_id") or data.get("id")
                instance = data.get("instance")
        except ValueError:
            pass
        if client_id is not None:
            evidence["client_id"] = str(client_id)
            ctx.facts["client_id"] = str(client_id)
        if instance is not None:
            evidence["instance"] = str(instance)
            ctx.facts["instance"] = str(instance)
    assert stream.rtt_ms is not None
    rtt_ms = stream.rtt_ms
    evidence["ping_rtt_ms"] = round(rtt_ms, 2)

    if settings.send is not None:
        stream.watch_from = stream.count
        conn.send_text(settings.send)
        stream.pattern = re.compile(settings.expect) if settings.expect is not None else None
        try:
            alive = await stream.read_until(lambda: stream.matched is not None, ctx.deadline)
        except TimeoutError:
            evidence["replies"] = [m[:300] for m in stream.messages[stream.watch_from :]]
            if stream.pattern is None:
                summary = _("no reply to {send!r} within the deadline").format(send=settings.send)
            else:
                summary = _("no reply matching {expect!r} to {send!r} within the deadline").format(
                    expect=settings.expect, send=settings.send
                )
            return fail(
                "session",
                SESSION_EXPECT_MISMATCH,
                summary,
                _("check the server's protocol for this message (does it echo? what does it answer?)"),
                **evidence,
            )
        if not alive:
            return _ended(
                conn, stream, _("after {send!r} was sent").format(send=settings.send), evidence, soon=False
            )
        assert stream.matched is not None
        evidence["reply"] = stream.matched[:300]

    linger = settings.linger
    if linger > 0:
        # Passive: nothing the application would see is sent; server pings are answered, as a browser does.
        end = min(loop.time() + linger, ctx.deadline - CLOSE_MARGIN_S)
        t_window = loop.time()
        try:
            alive = await stream.read_until(lambda: False, end) if end > t_window else True
        except TimeoutError:
            alive = True
        evidence["linger_s"] = round(max(0.0, min(loop.time(), end) - t_window), 2)
        pings = stream.server_pings
        evidence["server_pings"] = len(pings)  # the platform check weighs a quiet window against a limit
        if len(pings) > 1:
            interval = round((pings[-1] - pings[0]) / (len(pings) - 1), 1)
            evidence["server_ping_interval_s"] = interval
            ctx.facts["server_ping_interval_s"] = interval
        if not alive:
            return _ended(conn, stream, _("during the observation window"), evidence, soon=True)

    code, __ = await conn.close(min(ctx.deadline, loop.time() + 1.0))
    ctx.facts.pop("conn", None)
    evidence["close_code"] = code
    evidence["messages_received"] = stream.count
    parts = []
    if greeting is not None:
        parts.append(
            _("greeting received{value}").format(value=f" (clientId {client_id})" if client_id else "")
        )
        if instance is not None:
            parts.append(_("answered by instance {instance}").format(instance=instance))
    else:
        parts.append(_("no greeting"))
    parts.append(_("ping {rtt_ms:.1f} ms").format(rtt_ms=rtt_ms))
    if settings.send is not None:
        parts.append(
            _("reply to {send!r} matched").format(send=settings.send)
            if settings.expect
            else _("reply to {send!r}").format(send=settings.send)
        )
    if "linger_s" in evidence:
        parts.append(_("still open after {linger_s:g} s").format(linger_s=evidence["linger_s"]))
    parts.append(
        _("closed cleanly ({code})").format(code=code)
        if code is not None
        else _("closed without a close frame")
    )
    return ok("session", "; ".join(parts), **evidence)
