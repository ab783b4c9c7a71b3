"""``socketio``: is the target a Socket.IO / Engine.IO server, and does its Engine.IO endpoint work?

Costs nothing unless the handshake's answer could come from a Socket.IO server: an Engine.IO error
(:func:`lokin_doctor.instruments.engineio.recognise`), a 400/404, a web page, a connection closed without
a reply (what engine.io does to an upgrade outside its path, after 1 s), or a 101 on an Engine.IO URL.
Then, under the run's deadline:

1. recognition: ``GET <path>?EIO=4&transport=polling`` on the URL's own Engine.IO path, ``socket.io/``
   under its path prefix and ``/socket.io/`` (at the same time); the open packet and its framing say
   the protocol (3: Socket.IO 2, 4: Socket.IO 3/4);
2. verification for real: a WebSocket to ``<path>?EIO=N&transport=websocket``, its open packet (sid,
   pingInterval, pingTimeout, maxPayload), then a Socket.IO CONNECT (``40``) and its answer
   (``40{"sid":...}``, ``44{...}`` refused; Socket.IO 2 sends ``40`` on its own);
3. the session, as socket.io-client uses it: the next requests on the sid the polling GET opened (POSTs
   of a noop, then the close packet); ``Session ID unknown`` to one of them means another server
   process answered it (a load balancer without sticky sessions).

:func:`lokin_doctor.checks.chain.sioanswer.classify_answer` is the handshake's reading of an Engine.IO
error answer (the handshake check calls it, so its row names the Socket.IO cause too). Facts written: ``socketio`` (path, protocol, open
packet evidence) when a server is recognised.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from lokin_doctor.causes.socketio import (
    SOCKETIO_CONNECT_REFUSED,
    SOCKETIO_FORBIDDEN,
    SOCKETIO_NO_CONNECT_REPLY,
    SOCKETIO_NO_OPEN_PACKET,
    SOCKETIO_PLAIN_CLIENT,
    SOCKETIO_SESSION_UNKNOWN,
    SOCKETIO_VERSION_MISMATCH,
)
from lokin_doctor.checks.chain.sioanswer import CHECK_ID, client_hint, engine_path, ws_url
from lokin_doctor.i18n import _
from lokin_doctor.instruments import engineio
from lokin_doctor.instruments.observer import OutcomeKind
from lokin_doctor.model import CheckResult, Status, ok, skip

if TYPE_CHECKING:
    from lokin_doctor.context import Context
    from lokin_doctor.instruments.wire import Outcome

#: Handshake statuses a Socket.IO server (or the web app around it) gives a plain WebSocket client.
_MAYBE_STATUSES = (200, 400, 403, 404, 426)
#: The bound of one request on an open session (a server answers a POST at once).
_SESSION_STEP_S = 2.0


@dataclass
class Poll:
    """One polling GET: the path, what came back."""

    path: str
    status: int | None = None
    error: engineio.EngineError | None = None
    payload: engineio.Payload | None = None
    open_packet: engineio.OpenPacket | None = None
    problem: str | None = None

    @property
    def recognised(self) -> bool:
        return self.open_packet is not None or self.error is not None

    def said(self) -> str:
        if self.open_packet is not None and self.payload is not None:
            return _("open packet, Engine.IO {protocol}").format(protocol=self.payload.protocol)
        if self.error is not None:
            return f"HTTP {self.status} {self.error.message}"
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.problem or "?"


async def _poll(
    ctx: Context,
    address: str,
    path: str,
    eio: int,
    *,
    sid: str | None = None,
    body: bytes | None = None,
    deadline: float | None = None,
) -> Poll:
    """A polling GET at ``path`` (a POST of ``body`` on session ``sid`` when given)."""
    from lokin_doctor.instruments.tunnel import http_get

    target = ctx.target
    poll = Poll(path)
    headers = tuple(h for h in ctx.settings.headers if h[0].lower() != "host")
    if ctx.settings.origin:
        headers = (*headers, ("Origin", ctx.settings.origin))
    try:
        answer = await http_get(
            target.host,
            target.port,
            engineio.endpoint(path, eio=eio, transport="polling", sid=sid),
            deadline=deadline if deadline is not None else ctx.deadline,
            address=address,
            route=ctx.settings.route(),
            ssl_context=ctx.ssl_context() if target.secure else None,
            headers=headers,
            method="GET" if body is None else "POST",
            body=body,
        )
    except (OSError, TimeoutError) as exc:
        poll.problem = str(exc) or type(exc).__name__
        return poll
    except Exception as exc:  # an ssl error or a proxy's refusal: not an Engine.IO answer
        poll.problem = f"{type(exc).__name__}: {exc}"
        return poll
    poll.status = answer.status
    poll.error = engineio.recognise(answer.status, answer.headers, answer.body)
    if answer.status == 200 and body is None:
        poll.payload = engineio.parse_polling(answer.body)
        if poll.payload is not None and poll.payload.packets:
            poll.open_packet = engineio.parse_open(poll.payload.packets[0])
    return poll


async def _same_session(ctx: Context, address: str, first: Poll) -> tuple[Poll | None, list[str]]:
    """What socket.io-client does next on the session a polling GET opened: requests carrying its sid
    (here POSTs of a noop, then of the close packet). The first answered 'Session ID unknown' (another
    server process got it) or None, and what each request got."""
    assert first.open_packet is not None and first.payload is not None
    eio, sid = first.payload.protocol, first.open_packet.sid
    said: list[str] = []
    loop = asyncio.get_running_loop()
    for packet in (engineio.NOOP, engineio.NOOP, engineio.CLOSE):
        body = f"{len(packet)}:{packet}" if eio == 3 else packet
        step = min(ctx.deadline, loop.time() + _SESSION_STEP_S)
        poll = await _poll(ctx, address, first.path, eio, sid=sid, body=body.encode(), deadline=step)
        said.append(poll.said())
        if poll.error is not None and poll.error.code == engineio.UNKNOWN_SID:
            return poll, said
    return None, said


@dataclass
class WsVerdict:
    """The Engine.IO WebSocket verification: ``kind`` ok / refused / no-open / no-connect-reply /
    handshake (not upgraded: ``result`` has the reading) / broken (the connection failed after 101)."""

    kind: str
    resource: str
    open_packet: engineio.OpenPacket | None = None
    reply: engineio.ConnectReply | None = None
    result: CheckResult | None = None
    first: str | None = None
    detail: str | None = None


async def _verify_websocket(ctx: Context, address: str, path: str, eio: int) -> WsVerdict:
    from websockets.frames import Opcode

    from lokin_doctor.instruments.wire import open_handshake

    target = ctx.target
    resource = engineio.endpoint(path, eio=eio)
    probe_target = replace(target, resource=resource)
    settings = ctx.settings
    out = await open_handshake(
        probe_target,
        address,
        deadline=ctx.deadline,
        origin=settings.origin,
        headers=settings.headers,
        ssl_context=ctx.ssl_context() if target.secure else None,
        route=ctx.settings.route(),
    )
    if out.kind != OutcomeKind.UPGRADED or out.conn is None:
        from lokin_doctor.checks.chain.handshake import classify

        return WsVerdict("handshake", resource, result=classify(out, probe_target, check_id=CHECK_ID))
    conn = out.conn
    verdict = WsVerdict("no-open", resource)
    try:
        texts: list[str] = []
        for _i in range(64):  # bounded: the open packet and the CONNECT answer come first
            frame = await conn.next_frame(ctx.deadline)
            if frame is None:
                verdict.detail = (
                    str(conn.protocol_error) if conn.protocol_error else _("the server closed the connection")
                )
                break
            if frame.opcode is not Opcode.TEXT:
                continue
            text = bytes(frame.data).decode("utf-8", "replace")
            texts.append(text)
            if verdict.first is None:
                verdict.first = text[:200]
            if verdict.open_packet is None:
                verdict.open_packet = engineio.parse_open(text)
                if verdict.open_packet is None:
                    break
                verdict.kind = "no-connect-reply"
                if eio == 4:
                    conn.send_text(engineio.connect_packet())
                continue
            if text == engineio.PING:
                conn.send_text(engineio.PONG)
                continue
            reply = engineio.parse_connect_reply(text)
            if reply is not None:
                verdict.reply = reply
                verdict.kind = "refused" if reply.kind == "error" else "ok"
                break
    except TimeoutError:
        verdict.detail = _("nothing more within the deadline")
    finally:
        await conn.close(min(ctx.deadline, asyncio.get_running_loop().time() + 0.5))
    return verdict


def _triggered(ctx: Context) -> str | None:
    """None when the socketio check has something to look at; else why it is not applicable."""
    hs = ctx.results.get("handshake")
    out: Outcome | None = ctx.facts.get("outcome")
    if hs is None or out is None or hs.status is Status.SKIP:
        return _("no handshake answer to read")
    url = engineio.read_url(ctx.target.resource)
    if out.kind == OutcomeKind.UPGRADED:
        return None if url.is_engineio else _("the handshake succeeded: a plain WebSocket server")
    if out.kind == OutcomeKind.STATUS:
        if engineio.recognise(out.status, out.headers, out.body) is not None or url.is_engineio:
            return None
        if out.status in _MAYBE_STATUSES:
            return None
        return _("an HTTP {status} is not what a Socket.IO server answers").format(status=out.status)
    if out.kind in (OutcomeKind.CLOSED, OutcomeKind.TIMEOUT) and not out.raw:
        return None  # engine.io ends an upgrade outside its path without a byte
    return _("the handshake did not reach an HTTP server")


def _open_summary(packet: engineio.OpenPacket) -> str:
    parts = []
    if packet.ping_interval_ms is not None:
        parts.append(_("pingInterval {seconds:g} s").format(seconds=packet.ping_interval_ms / 1000))
    if packet.ping_timeout_ms is not None:
        parts.append(_("pingTimeout {seconds:g} s").format(seconds=packet.ping_timeout_ms / 1000))
    parts.append(_("sid {sid}").format(sid=packet.sid))
    return ", ".join(parts)


async def check(ctx: Context) -> CheckResult:
    reason = _triggered(ctx)
    if reason is not None:
        return skip(CHECK_ID, _("not applicable: {reason}").format(reason=reason), applicable=False)
    target = ctx.target
    out: Outcome = ctx.facts["outcome"]
    url = engineio.read_url(target.resource)
    address = (ctx.facts.get("reachable") or [target.host])[0]
    paths = engineio.candidate_paths(target.resource)
    polls = await asyncio.gather(*(_poll(ctx, address, p, 4) for p in paths))
    ev: dict[str, Any] = {
        "polling": {engineio.endpoint(p.path, transport="polling"): p.said() for p in polls}
    }
    found = next((p for p in polls if p.open_packet is not None), None) or next(
        (p for p in polls if p.recognised), None
    )
    said = engineio.recognise(out.status, out.headers, out.body) if out.kind == OutcomeKind.STATUS else None
    if found is None and said is None and out.kind != OutcomeKind.UPGRADED:
        return skip(
            CHECK_ID,
            _("no Socket.IO/Engine.IO server answers at {paths}").format(paths=", ".join(paths)),
            applicable=False,
            **ev,
        )
    path = found.path if found is not None else engine_path(url.path)
    protocol = found.payload.protocol if found is not None and found.payload is not None else None
    ev["path"] = path
    if protocol is not None:
        ev["engine_io_protocol"] = protocol
        ev["socket_io"] = engineio.socketio_major(protocol)
    # A Socket.IO 2 client's URL (EIO=3): does the server take protocol 3?
    if url.eio == 3 and protocol != 3:
        v3 = await _poll(ctx, address, path, 3)
        ev["polling_eio3"] = v3.said()
        if v3.error is not None and v3.error.code == engineio.UNSUPPORTED_PROTOCOL:
            return SOCKETIO_VERSION_MISMATCH.fail(
                CHECK_ID,
                _(
                    "the URL asks Engine.IO 3 (a Socket.IO 2 client) but the server at {path} is Socket.IO 3/4 and answers 'Unsupported protocol version'"
                ).format(path=path),
                _(
                    "upgrade the client to socket.io-client 4 (EIO=4), or start the server with allowEIO3: true to accept Socket.IO 2 clients"
                ),
                **ev,
            )
    lost: Poll | None = None
    if found is not None and found.open_packet is not None and found.payload is not None:
        lost, session_said = await _same_session(ctx, address, found)
        ev["polling_session"] = {"sid": found.open_packet.sid, "next_requests": session_said}
    eio = 3 if protocol == 3 else 4
    verdict = await _verify_websocket(ctx, address, path, eio)
    if verdict.open_packet is not None:
        ev["open_packet"] = verdict.open_packet.evidence()
        protocol = engineio.protocol_of(verdict.open_packet, found.payload if found else None, verdict.reply)
        if protocol is not None:
            ev["engine_io_protocol"] = protocol
            ev["socket_io"] = engineio.socketio_major(protocol)
    if verdict.reply is not None:
        ev["connect_reply"] = verdict.reply.raw[:200]
    ev["websocket"] = ws_url(target, verdict.resource)
    ctx.facts["socketio"] = {"path": path, "protocol": protocol, **ev}
    refused = next((p for p in polls if p.error is not None and p.error.code == engineio.FORBIDDEN), None)
    problem = _problem(ctx, verdict, path, protocol, url, ev, refused)
    if not url.is_engineio:
        then = (
            _("; at {url}: {problem}").format(url=ev["websocket"], problem=problem.summary)
            if problem is not None
            else _("; {url} works ({open})").format(
                url=ev["websocket"], open=_open_summary(verdict.open_packet)
            )
            if verdict.open_packet is not None
            else ""
        )
        return SOCKETIO_PLAIN_CLIENT.fail(
            CHECK_ID,
            _(
                "{url} is a Socket.IO {major} server (Engine.IO at {path}): a plain WebSocket client cannot talk to it{then}"
            ).format(url=target.url, major=engineio.socketio_major(protocol), path=path, then=then),
            client_hint(target, path, protocol),
            **ev,
        )
    if url.eio == 4 and protocol == 3:
        return SOCKETIO_VERSION_MISMATCH.fail(
            CHECK_ID,
            _(
                "the URL asks Engine.IO 4 (a Socket.IO 3/4 client) but the server at {path} is Socket.IO 2 (Engine.IO 3): a socket.io-client 3/4 cannot connect to it"
            ).format(path=path),
            _(
                "upgrade the server to socket.io 4 (with allowEIO3: true while old clients remain), or use socket.io-client 2.x and EIO=3"
            ),
            **ev,
        )
    if problem is not None:
        return problem
    if lost is not None:
        assert found is not None and found.open_packet is not None
        return SOCKETIO_SESSION_UNKNOWN.fail(
            CHECK_ID,
            _(
                "the Engine.IO session {sid} a polling GET opened at {path} is unknown to the next request of the same client ({said}): its requests reach different server processes"
            ).format(sid=found.open_packet.sid, path=path, said=lost.said()),
            SOCKETIO_SESSION_UNKNOWN.fix_text(),
            **ev,
        )
    assert verdict.open_packet is not None
    connect = (
        _("CONNECT answered, sid {sid}").format(sid=verdict.reply.sid)
        if verdict.reply is not None and verdict.reply.sid
        else _("CONNECT answered")
    )
    return ok(
        CHECK_ID,
        _("Socket.IO server healthy at {path} (Engine.IO {protocol}, {open}; {connect})").format(
            path=path, protocol=protocol or "?", open=_open_summary(verdict.open_packet), connect=connect
        ),
        **ev,
    )


def _problem(
    ctx: Context,
    verdict: WsVerdict,
    path: str,
    protocol: int | None,
    url: engineio.EngineUrl,
    ev: dict[str, Any],
    refused: Poll | None = None,
) -> CheckResult | None:
    """What fails on the Engine.IO WebSocket, as a result (None when it works). ``refused``: a polling
    GET that got engine.io's 403 (code 4): allowRequest said no, whatever words it gave the upgrade's 400."""
    if verdict.kind == "ok":
        return None
    where = ev["websocket"]
    if verdict.kind == "handshake":
        assert verdict.result is not None
        result = verdict.result
        if result.status is Status.OK:
            return None
        if refused is not None and refused.error is not None and result.code != SOCKETIO_FORBIDDEN.code:
            # allowRequest's own words ("origin not allowed") are the upgrade's bare 400 body, which
            # alone reads as any server's 400: the polling answer's JSON names engine.io's Forbidden.
            return SOCKETIO_FORBIDDEN.fail(
                CHECK_ID,
                _(
                    "the Engine.IO server at {path} refuses this client: HTTP 403 {message!r} (engine.io code 4, Forbidden) to the polling request, {upgrade} to the upgrade: its allowRequest hook said no"
                ).format(
                    path=path,
                    message=refused.error.message,
                    upgrade=result.evidence.get("status_line") or result.code,
                ),
                SOCKETIO_FORBIDDEN.fix_text(),
                **{**ev, **result.evidence},
            )
        return replace(result, evidence={**ev, **result.evidence})
    if verdict.kind == "refused":
        assert verdict.reply is not None
        return SOCKETIO_CONNECT_REFUSED.fail(
            CHECK_ID,
            _(
                "the Engine.IO session at {path} opened, but the Socket.IO CONNECT to namespace {namespace} was refused: {message!r}"
            ).format(path=path, namespace=verdict.reply.namespace, message=verdict.reply.message or ""),
            SOCKETIO_CONNECT_REFUSED.fix_text(),
            **ev,
        )
    if verdict.kind == "no-open":
        first = verdict.first
        got = (
            _("its first message was {first!r}").format(first=first)
            if first is not None
            else (verdict.detail or _("no message came"))
        )
        return SOCKETIO_NO_OPEN_PACKET.fail(
            CHECK_ID,
            _("{url} upgraded but sent no Engine.IO open packet: {got}").format(url=where, got=got),
            SOCKETIO_NO_OPEN_PACKET.fix_text(),
            **ev,
        )
    return SOCKETIO_NO_CONNECT_REPLY.fail(
        CHECK_ID,
        _(
            "the Engine.IO session at {path} opened but the Socket.IO CONNECT (40) got no answer ({detail})"
        ).format(path=path, detail=verdict.detail or _("no CONNECT packet came")),
        SOCKETIO_NO_CONNECT_REPLY.fix_text(),
        **ev,
    )
