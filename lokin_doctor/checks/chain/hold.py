"""``hold`` (``--hold SECONDS``): open a connection of its own, stay idle (no pings from us; the
server's pings are answered, as a browser does) and report when and how it died.

A connection dropped without a close frame (1006) after a fixed idle time, with no server ping
in between, is a proxy's idle timeout (``hold.idle-timeout``): nginx ``proxy_read_timeout`` and cloud
load balancers default to 60 s, Cloudflare to about 100 s. Server pings arriving means the server
keeps its connections alive. The check runs past the run's deadline by ``--hold`` seconds (the
runner grants it ``extra_time``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from lokin_doctor.causes.session import (
    HOLD_CLOSED_BY_SERVER,
    HOLD_DROPPED,
    HOLD_IDLE_TIMEOUT,
    HOLD_NO_CONNECTION,
)
from lokin_doctor.checks.chain.handshake import classify
from lokin_doctor.context import Context
from lokin_doctor.i18n import N_, _
from lokin_doctor.instruments.wire import open_handshake
from lokin_doctor.model import CheckResult, fail, ok

#: Known idle timeouts: (seconds, who).
CULPRITS = (
    (60.0, N_("nginx's proxy_read_timeout default (60 s) or a cloud load balancer's idle timeout (60 s)")),
    (100.0, N_("Cloudflare's idle timeout (~100 s)")),
    (350.0, N_("AWS NLB/Gateway idle timeout (350 s)")),
)
#: Time kept for the closing handshake before the runner's own limit.
CLOSE_MARGIN_S = 0.15


def culprit(idle: float) -> str | None:
    for seconds, who in CULPRITS:
        if abs(idle - seconds) <= max(3.0, seconds * 0.08):
            return _(who)
    return None


async def check(ctx: Context) -> CheckResult:
    from websockets.frames import Opcode

    settings = ctx.settings
    target = settings.target
    hold = float(settings.hold or 0.0)
    loop = asyncio.get_running_loop()
    address = (ctx.facts.get("reachable") or ctx.facts["addresses"])[0]
    # The main handshake succeeded; give ours the usual time even if the run's deadline is near.
    hs_deadline = min(max(ctx.deadline, loop.time() + min(settings.timeout, 5.0)), ctx.deadline + hold)
    out = await open_handshake(
        target,
        address,
        deadline=hs_deadline,
        origin=settings.origin,
        headers=settings.headers,
        subprotocols=settings.subprotocols,
        ssl_context=ctx.ssl_context() if target.secure else None,
        keep_open=True,
        route=settings.route(),
    )
    if out.conn is None:
        r = classify(out, target, check_id="hold", origin=settings.origin)
        return fail(
            "hold",
            HOLD_NO_CONNECTION,
            _("could not open the connection to hold: {summary}").format(summary=r.summary),
            r.hint or _("see the handshake check"),
            **r.evidence,
        )
    conn = out.conn
    t_open = loop.time()
    end = min(t_open + hold, ctx.deadline + hold - CLOSE_MARGIN_S)
    pings: list[float] = []
    messages = 0
    last = t_open
    died_at: float | None = None
    close_code: int | None = None
    close_reason = ""
    try:
        while True:
            try:
                frame = await conn.next_frame(end)
            except TimeoutError:
                break
            now = loop.time()
            if frame is None:
                died_at = now
                break
            if frame.opcode is Opcode.CLOSE:
                died_at = now
                rcvd = conn.proto.close_rcvd
                if rcvd is not None:
                    close_code, close_reason = int(rcvd.code), rcvd.reason
                break
            if frame.opcode is Opcode.PING:
                pings.append(round(now - t_open, 2))
            elif frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                messages += 1
            last = now
    finally:
        if died_at is None:
            await conn.close(min(loop.time() + 1.0, ctx.deadline + hold + CLOSE_MARGIN_S / 2))
        else:
            conn.abort()

    evidence: dict[str, Any] = {"held_s": hold, "server_pings_at_s": pings[:20], "messages": messages}
    ping_every = round((pings[-1] - pings[0]) / (len(pings) - 1), 1) if len(pings) > 1 else None
    if ping_every is not None:
        evidence["server_ping_interval_s"] = ping_every
        ctx.facts["server_ping_interval_s"] = ping_every
    # What nginx's proxy_read_timeout is weighed against: the longest stretch without a server ping.
    quiet_marks = [0.0, *pings, round((died_at or loop.time()) - t_open, 2)]
    ctx.facts["hold_observed"] = {
        "held_s": quiet_marks[-1],
        "pings": len(pings),
        "messages": messages,
        "longest_without_ping_s": max(b - a for a, b in zip(quiet_marks, quiet_marks[1:], strict=False)),
        "survived": died_at is None,
    }
    if died_at is None:
        held = loop.time() - t_open
        if pings:
            how = (
                _("the server pings every ~{ping_every:g} s, which keeps it alive").format(
                    ping_every=ping_every
                )
                if ping_every
                else (_("the server sent a ping, which keeps it alive"))
            )
        else:
            how = _(
                "no server pings: a proxy idle timeout longer than the hold could still cut it (nginx/load balancers 60 s, Cloudflare ~100 s): hold longer or enable server pings"
            )
        return ok(
            "hold",
            _("held an idle connection {held:.1f} s: still open; {how}").format(held=held, how=how),
            **evidence,
        )

    elapsed = died_at - t_open
    idle = died_at - last
    evidence.update(elapsed_s=round(elapsed, 2), idle_before_drop_s=round(idle, 2))
    if close_code is not None:
        evidence.update(close_code=close_code, close_reason=close_reason)
        return fail(
            "hold",
            HOLD_CLOSED_BY_SERVER,
            _(
                "the server closed the idle connection after {elapsed:.1f} s with close code {close_code}{value}"
            ).format(
                elapsed=elapsed, close_code=close_code, value=f" ({close_reason})" if close_reason else ""
            ),
            _(
                "the server closes idle clients: raise its idle/keepalive timeout, or make the client send application pings; read its log at that time"
            ),
            **evidence,
        )
    evidence["close_code"] = 1006
    if not pings:
        who = culprit(idle)
        what = (
            f"matches {who}"
            if who
            else _("after about {idle:.1f} s").format(idle=idle)
            if idle < 10
            else _("after about {idle:.0f} s").format(idle=idle)
        )
        interval = max(1, int(idle / 2))
        return fail(
            "hold",
            HOLD_IDLE_TIMEOUT,
            _(
                "the connection was dropped without a close frame (1006) after {elapsed:.1f} s idle, with no server ping in between: a proxy idle timeout ({what})"
            ).format(elapsed=elapsed, what=what),
            _(
                "raise the proxy's idle timeout (nginx, in the location: proxy_read_timeout 86400s; proxy_send_timeout 86400s;) or make the server ping every {interval} s or less (ws: setInterval(() => client.ping(), {interval2}); websockets: ping_interval={interval})"
            ).format(interval=interval, interval2=interval * 1000),
            **evidence,
        )
    return fail(
        "hold",
        HOLD_DROPPED,
        _(
            "the connection was dropped without a close frame (1006) after {elapsed:.1f} s despite server pings (last traffic {idle:.1f} s before): not an idle timeout"
        ).format(elapsed=elapsed, idle=idle),
        _(
            "something cuts connections regardless of traffic: a proxy's maximum connection age, a server restart or a NAT/firewall; read the proxy's and the server's logs at that time"
        ),
        **evidence,
    )
