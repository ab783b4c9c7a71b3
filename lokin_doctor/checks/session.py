"""``session``: what happens after the 101 — greeting and client id, ping round trip,
``--send``/``--expect``, and a clean close.

Uses the connection the handshake left open (fact ``conn``), so it costs no second handshake.
Facts written: ``greeting`` (text of the first message), ``client_id``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, fail, ok
from lokin_doctor.wire import WsConn

#: After the pong, how long a greeting may still take to arrive.
GREETING_WAIT_S = 0.1


def _text(frame_data: bytes) -> str:
    return bytes(frame_data).decode("utf-8", "replace")


def _close_info(conn: WsConn) -> tuple[int | None, str]:
    rcvd = conn.proto.close_rcvd
    if rcvd is None:
        return None, ""
    return int(rcvd.code), rcvd.reason


async def check(ctx: Context) -> CheckResult:
    from websockets.frames import Opcode

    conn: WsConn = ctx.facts["conn"]
    loop = asyncio.get_running_loop()
    messages: list[str] = []
    evidence: dict[str, Any] = {}
    payload = os.urandom(8)
    t_ping = loop.time()
    conn.send_ping(payload)
    rtt_ms: float | None = None
    fragments: list[bytes] = []

    async def read_until(pred: Any, deadline: float) -> bool:
        """Read frames until ``pred()`` holds; False on close/EOF."""
        nonlocal rtt_ms
        while not pred():
            frame = await conn.next_frame(deadline)
            if frame is None or frame.opcode is Opcode.CLOSE:
                return False
            if frame.opcode is Opcode.PONG and bytes(frame.data) == payload and rtt_ms is None:
                rtt_ms = (loop.time() - t_ping) * 1000
            elif frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                fragments.append(bytes(frame.data))
                if frame.fin:
                    messages.append(_text(b"".join(fragments)))
                    fragments.clear()
        return True

    def closed_result(stage: str) -> CheckResult:
        code, reason = _close_info(conn)
        evidence["messages"] = messages[:5]
        if code is not None:
            what = f"close code {code}" + (f" ({reason})" if reason else "")
            return fail(
                "session",
                "session.closed-at-once",
                f"the server closed the connection {stage} with {what}",
                "the server accepts the upgrade, then drops the client: read its log for the error at "
                f"close code {code} (1008 policy/auth, 1011 server error, 1002/1006 protocol or compression "
                "mismatch)",
                close_code=code,
                close_reason=reason,
                **evidence,
            )
        return fail(
            "session",
            "session.dropped",
            f"the server dropped the TCP connection {stage} without a close frame (1006)",
            "the server crashes or kills connections after the upgrade, or a proxy cuts them: read the server's "
            "log; with nginx check proxy_read_timeout",
            **evidence,
        )

    try:
        if not await read_until(lambda: rtt_ms is not None, ctx.deadline):
            return closed_result("right after the upgrade")
        if not messages:
            try:
                await read_until(lambda: bool(messages), min(ctx.deadline, loop.time() + GREETING_WAIT_S))
            except TimeoutError:
                pass
    except TimeoutError:
        evidence["messages"] = messages[:5]
        return fail(
            "session",
            "session.no-pong",
            f"the server never answered a ping within the {ctx.settings.timeout:g} s deadline",
            "the server's event loop is blocked, or a proxy swallows control frames: check the server's CPU "
            "and log",
            **evidence,
        )
    greeting = messages[0] if messages else None
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
    assert rtt_ms is not None
    evidence["ping_rtt_ms"] = round(rtt_ms, 2)

    settings = ctx.settings
    if settings.send is not None:
        before = len(messages)
        conn.send_text(settings.send)
        pattern = re.compile(settings.expect) if settings.expect is not None else None

        def matched() -> bool:
            new = messages[before:]
            return bool(new) if pattern is None else any(pattern.search(m) for m in new)

        try:
            alive = await read_until(matched, ctx.deadline)
        except TimeoutError:
            evidence["replies"] = messages[before:][:5]
            if pattern is None:
                summary = f"no reply to {settings.send!r} within the deadline"
            else:
                summary = f"no reply matching {settings.expect!r} to {settings.send!r} within the deadline"
            return fail(
                "session",
                "session.expect-mismatch",
                summary,
                "check the server's protocol for this message (does it echo? what does it answer?)",
                **evidence,
            )
        if not alive:
            return closed_result(f"after {settings.send!r} was sent")
        evidence["reply"] = messages[before:][-1][:300]

    code, reason = await conn.close(min(ctx.deadline, loop.time() + 1.0))
    ctx.facts.pop("conn", None)
    evidence["close_code"] = code
    parts = []
    if greeting is not None:
        parts.append(f"greeting received{f' (clientId {client_id})' if client_id else ''}")
        if instance is not None:
            parts.append(f"answered by instance {instance}")
    else:
        parts.append("no greeting")
    parts.append(f"ping {rtt_ms:.1f} ms")
    if settings.send is not None:
        parts.append(
            f"reply to {settings.send!r} matched" if settings.expect else f"reply to {settings.send!r}"
        )
    parts.append(f"closed cleanly ({code})" if code is not None else "closed without a close frame")
    return ok("session", "; ".join(parts), **evidence)
