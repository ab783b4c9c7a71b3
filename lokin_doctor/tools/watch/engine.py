"""The engine of ``lokin-doctor watch``: a terminal client that behaves like the fixed LOK IN browser client.

The browser client (CORRECTIONS_WEBSOCKET.md, script.js) connects at once; when a connection fails or
closes it retries after ``WS_RETRY_DELAY * 1.5 ** (wsRetryCount - 1)`` (2 s, 3 s, 4.5 s, 6.75 s, 10.125 s),
at most ``WS_MAX_RETRIES = 5`` retries after the first attempt, and a successful connection resets the
counter. ``watch`` does the same (``--retries``, ``--delay``, ``--factor``; ``--forever`` never gives up,
each wait capped by ``--max-delay``), and says *why* each attempt failed with the checklist's cause code.

Every step is an event (a dict with ``event``, ``t`` = seconds since the start on the monotonic clock,
``time`` = wall clock); the command prints them as text or JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lokin_doctor.causes.dns import DNS_ERROR, DNS_TEMPORARY_FAILURE, DNS_TIMEOUT, DNS_UNKNOWN_HOST
from lokin_doctor.causes.tcp import TCP_REFUSED
from lokin_doctor.target import Target
from lokin_doctor.tools.common import Finding, outcome_cause, session_cause

#: After the 101, how long the greeting may take before "connected" is reported without it.
GREETING_WAIT_S = 2.0
#: After a close frame from the server, how long we wait for its TCP close.
CLOSE_WAIT_S = 1.0

_GAI = {
    getattr(socket, "EAI_NONAME", -2): DNS_UNKNOWN_HOST,
    getattr(socket, "EAI_AGAIN", -3): DNS_TEMPORARY_FAILURE,
}


@dataclass(frozen=True)
class WatchConfig:
    target: Target
    retries: int = 5
    delay: float = 2.0
    factor: float = 1.5
    forever: bool = False
    max_delay: float = 30.0
    max_time: float | None = None
    timeout: float = 5.0
    origin: str | None = None
    ca_file: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        from lokin_doctor import validate

        problems = []
        if self.retries < 0:
            problems.append("--retries must be >= 0")
        checks = [
            validate.number("--delay", self.delay, low_ok=True, high=86400),
            validate.number("--factor", self.factor, low=1.0, low_ok=True, high=100, unit=""),
            validate.number("--max-delay", self.max_delay, high=86400),
            validate.number("--timeout", self.timeout, high=3600),
        ]
        if self.max_time is not None:
            checks.append(validate.number("--max-time", self.max_time, high=31 * 86400))
        if self.origin is not None:
            checks.append(validate.origin(self.origin))
        if self.ca_file is not None:
            checks.append(validate.ca_file(self.ca_file))
        problems += [p for p in checks if p]
        if problems:
            raise ValueError("; ".join(problems))

    def retry_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): delay * factor ** (retry - 1)."""
        return min(self.max_delay, self.delay * self.factor ** (retry - 1))


@dataclass
class WatchState:
    attempts: int = 0
    connections: int = 0
    connected_s: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    result: str = "running"
    connected: bool = False
    connected_since: float | None = None
    #: Seconds after the start from which uptime is counted: the end of the first attempt (a first
    #: connection's handshake is not downtime, so a watch that never lost it reports 100 %).
    window_start: float | None = None
    #: time.monotonic() when the watch stopped (before the closing handshake, which is not downtime).
    ended_at: float | None = None


class Watcher:
    """Runs the connect / hold / retry loop and emits events; :meth:`run` returns the summary event."""

    def __init__(self, config: WatchConfig, emit: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = config
        self.emit_cb = emit
        self.state = WatchState()
        self.start = time.monotonic()
        self.end = self.start + config.max_time if config.max_time else None
        self._ssl: ssl.SSLContext | None = None
        self.last_rx = self.start

    # -- helpers -------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.start

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        doc = {
            "event": event,
            "t": round(self.now(), 4),
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **fields,
        }
        self.emit_cb(doc)
        return doc

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.target.secure:
            return None
        if self._ssl is None:
            from lokin_doctor.instruments.wire import make_ssl_context

            self._ssl = make_ssl_context(self.cfg.ca_file, self.cfg.insecure)
        return self._ssl

    # -- one attempt ---------------------------------------------------------------------------------
    async def _addresses(self) -> list[str] | Finding:
        target = self.cfg.target
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.cfg.timeout):
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except TimeoutError:
            return Finding(
                DNS_TIMEOUT,
                f"the system resolver did not answer for {target.host} in time",
                "check /etc/resolv.conf and that the DNS server is reachable",
            )
        except OSError as exc:  # gaierror, or EAI_SYSTEM's plain OSError
            code = _GAI.get(exc.errno or 0, DNS_ERROR)
            return Finding(
                code,
                f"cannot resolve {target.host}: {exc.strerror}",
                f"check the spelling of {target.host!r} in the URL, its DNS records or /etc/hosts",
            )
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def attempt(self) -> tuple[Any, Any] | Finding:
        """Try every address in resolver order: (outcome, conn) of the first upgrade, or the best cause."""
        from lokin_doctor.instruments.wire import open_handshake

        addresses = await self._addresses()
        if isinstance(addresses, Finding):
            return addresses
        loop = asyncio.get_running_loop()
        causes: list[Finding] = []
        for address in addresses:
            deadline = loop.time() + self.cfg.timeout
            out = await open_handshake(
                self.cfg.target,
                address,
                deadline=deadline,
                origin=self.cfg.origin,
                ssl_context=self.ssl_context(),
                compression=False,
            )
            if out.kind == "upgraded" and out.conn is not None:
                return out, out.conn
            causes.append(outcome_cause(out, self.cfg.target))
        # A refusal on one family says less than what the other one answered.
        for cause in causes:
            if cause.code != TCP_REFUSED:
                return cause
        return causes[0]

    async def _greeting(self, conn: Any) -> str | None:
        from websockets.frames import Opcode

        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(GREETING_WAIT_S, self.cfg.timeout)
        rem = self.remaining()
        if rem is not None:
            deadline = min(deadline, loop.time() + max(0.0, rem))
        try:
            while True:
                frame = await conn.next_frame(deadline)
                if frame is None:
                    return None
                if frame.opcode is Opcode.CLOSE:
                    conn.pending.insert(0, frame)  # hold() reports it
                    return None
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self.state.messages += 1
                    return bytes(frame.data).decode("utf-8", "replace")
        except TimeoutError:
            return None

    async def hold(self, conn: Any) -> tuple[str, int | None, str]:
        """Until the server ends the connection or --max-time: ("closed"|"max-time", code, reason)."""
        from websockets.frames import Opcode

        loop = asyncio.get_running_loop()
        while True:
            rem = self.remaining()
            if rem is not None and rem <= 0:
                return "max-time", None, ""
            # Without --max-time, wake up hourly (a bounded wait; the loop simply goes on).
            deadline = loop.time() + (rem if rem is not None else 3600.0)
            try:
                frame = await conn.next_frame(deadline)
            except TimeoutError:
                continue
            if frame is not None:
                self.last_rx = time.monotonic()
            if frame is None:
                rcvd = conn.proto.close_rcvd
                return "closed", (int(rcvd.code) if rcvd is not None else None), (rcvd.reason if rcvd else "")
            if frame.opcode is Opcode.CLOSE:
                rcvd = conn.proto.close_rcvd
                code = int(rcvd.code) if rcvd is not None else 1005
                reason = rcvd.reason if rcvd is not None else ""
                # Our close reply went out with the frame; wait briefly for the server's TCP close.
                try:
                    end = loop.time() + CLOSE_WAIT_S
                    while await conn.next_frame(end) is not None:
                        pass
                except TimeoutError:
                    pass
                conn.abort()
                return "closed", code, reason
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.state.messages += 1

    # -- the loop --------------------------------------------------------------------------------------
    async def _sleep(self, seconds: float) -> bool:
        """Sleep, bounded by --max-time; False when --max-time ended the wait."""
        rem = self.remaining()
        if rem is not None and rem < seconds:
            await asyncio.sleep(max(0.0, rem))
            return False
        await asyncio.sleep(seconds)
        return True

    async def run(self) -> dict[str, Any]:
        st, cfg = self.state, self.cfg
        conn: Any = None
        self.emit(
            "start",
            url=cfg.target.url,
            retries=cfg.retries,
            delay=cfg.delay,
            factor=cfg.factor,
            forever=cfg.forever,
            max_time=cfg.max_time,
        )
        try:
            retry = 0
            while True:
                rem = self.remaining()
                if rem is not None and rem <= 0:
                    st.result = "max-time"
                    break
                st.attempts += 1
                self.emit("attempt", attempt=st.attempts, retry=retry)
                got = await self.attempt()
                if isinstance(got, Finding):
                    st.failures[got.code] += 1
                    if st.window_start is None:
                        st.window_start = 0.0  # down from the start
                    self.emit("failed", attempt=st.attempts, retry=retry, **got.to_dict())
                else:
                    out, conn = got
                    greeting = await self._greeting(conn)
                    client_id = _client_id(greeting)
                    st.connections += 1
                    st.connected = True
                    st.connected_since = time.monotonic()
                    if st.window_start is None:
                        st.window_start = st.connected_since - self.start
                    retry = 0  # a successful connection resets the counter, as script.js does
                    self.last_rx = time.monotonic()
                    self.emit(
                        "connected",
                        attempt=st.attempts,
                        address=out.evidence()["address"],
                        handshake_ms=round(out.handshake_ms or 0.0, 2),
                        connect_ms=round(out.connect_ms or 0.0, 2),
                        greeting=greeting,
                        client_id=client_id,
                    )
                    how, code, reason = await self.hold(conn)
                    lived = time.monotonic() - st.connected_since
                    if how == "max-time":
                        st.result = "connected"
                        break
                    st.connected_s += lived
                    st.connected, st.connected_since = False, None
                    conn = None
                    key = str(code) if code is not None else "1006"
                    st.disconnects[key] += 1
                    cause = session_cause("held", code, reason, idle_s=time.monotonic() - self.last_rx)
                    self.emit(
                        "disconnected",
                        close_code=code if code is not None else 1006,
                        close_reason=reason,
                        lived_s=round(lived, 3),
                        code=cause.code,
                        summary=cause.summary,
                    )
                if not cfg.forever and retry >= cfg.retries:
                    st.result = "gave-up"
                    self.emit("gave-up", attempts=st.attempts, retries=retry)
                    break
                retry += 1
                wait = cfg.retry_delay(retry)
                self.emit("retry", retry=retry, of=None if cfg.forever else cfg.retries, in_s=round(wait, 3))
                if not await self._sleep(wait):
                    st.result = "max-time"
                    break
        except asyncio.CancelledError:
            st.result = "interrupted"
        finally:
            st.ended_at = time.monotonic()
            if st.connected and st.connected_since is not None:
                st.connected_s += st.ended_at - st.connected_since
            if conn is not None:
                try:
                    loop = asyncio.get_running_loop()
                    await asyncio.shield(conn.close(loop.time() + 1.0, 1000))
                except (asyncio.CancelledError, OSError, RuntimeError):
                    conn.abort()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        st = self.state
        total = (st.ended_at - self.start) if st.ended_at is not None else self.now()
        window = total - (st.window_start or 0.0)
        ratio = (st.connected_s / window) if window > 0 else 0.0
        return self.emit(
            "summary",
            result=st.result,
            healthy=st.result == "connected" or (st.result == "interrupted" and st.connected),
            duration_s=round(total, 3),
            connected_s=round(st.connected_s, 3),
            uptime_ratio=round(min(1.0, ratio), 4),
            attempts=st.attempts,
            connections=st.connections,
            failures=dict(st.failures.most_common()),
            disconnects=dict(st.disconnects.most_common()),
            messages=st.messages,
        )


def _client_id(greeting: str | None) -> str | None:
    if not greeting:
        return None
    try:
        data = json.loads(greeting)
    except ValueError:
        return None
    if isinstance(data, dict):
        value = data.get("clientId") or data.get("client_id") or data.get("id")
        return str(value) if value is not None else None
    return None


def format_event(ev: dict[str, Any]) -> list[str]:
    """Human lines for one event (the text output of ``watch``), in the chosen language."""
    from lokin_doctor.i18n import _, ngettext

    def attempts(n: int) -> str:
        return ngettext("{n} attempt", "{n} attempts", n).format(n=n)

    def retries(n: int) -> str:
        return ngettext("{n} retry", "{n} retries", n).format(n=n)

    clock = ev["time"][11:23]
    pad = " " * 14
    kind = ev["event"]
    if kind == "start":
        mode = _("forever") if ev["forever"] else retries(ev["retries"])
        text = _("watching {url} ({mode}, delay {delay} s x {factor}^(n-1)); Ctrl-C stops").format(
            url=ev["url"], mode=mode, delay=f"{ev['delay']:g}", factor=f"{ev['factor']:g}"
        )
        return [f"{clock}  {text}"]
    if kind == "attempt":
        if ev["retry"]:
            return [
                f"{clock}  " + _("attempt {n} (retry {retry})").format(n=ev["attempt"], retry=ev["retry"])
            ]
        return [f"{clock}  " + _("attempt {n}").format(n=ev["attempt"])]
    if kind == "failed":
        return [f"{clock}  x {ev['code']}: {ev['summary']}", pad + _("fix: {hint}").format(hint=ev["hint"])]
    if kind == "connected":
        parts = [
            f"{clock}  "
            + _("connected to {address} (handshake {ms} ms)").format(
                address=ev["address"], ms=f"{ev['handshake_ms']:.1f}"
            )
        ]
        if ev["greeting"] is not None:
            cid = f" (clientId {ev['client_id']})" if ev["client_id"] else ""
            parts.append(pad + _("greeting: {greeting}").format(greeting=ev["greeting"][:200]) + cid)
        else:
            parts.append(pad + _("no greeting within {seconds} s").format(seconds=f"{GREETING_WAIT_S:g}"))
        return parts
    if kind == "disconnected":
        reason = f" ({ev['close_reason']})" if ev["close_reason"] else ""
        text = _("disconnected: close code {close_code}{reason} after {seconds} s connected [{code}]").format(
            close_code=ev["close_code"], reason=reason, seconds=f"{ev['lived_s']:.1f}", code=ev["code"]
        )
        return [f"{clock}  {text}"]
    if kind == "retry":
        of = f"/{ev['of']}" if ev["of"] is not None else ""
        return [
            pad
            + _("retry {retry}{of} in {seconds} s").format(
                retry=ev["retry"], of=of, seconds=f"{ev['in_s']:g}"
            )
        ]
    if kind == "gave-up":
        text = _("gave up after {attempts} ({retries})").format(
            attempts=attempts(ev["attempts"]), retries=retries(ev["retries"])
        )
        return [f"{clock}  {text}"]
    if kind == "summary":
        none = _("none")
        fails = ", ".join(f"{k} x{v}" for k, v in ev["failures"].items()) or none
        discs = ", ".join(f"{k} x{v}" for k, v in ev["disconnects"].items()) or none
        connections = ngettext("{n} connection", "{n} connections", ev["connections"]).format(
            n=ev["connections"]
        )
        first = _(
            "summary: {result}; {attempts}, {connections}, connected {connected} s of {duration} s "
            "({uptime} % uptime)"
        ).format(
            result=ev["result"],
            attempts=attempts(ev["attempts"]),
            connections=connections,
            connected=f"{ev['connected_s']:.1f}",
            duration=f"{ev['duration_s']:.1f}",
            uptime=f"{100 * ev['uptime_ratio']:.1f}",
        )
        second = _("disconnects by close code: {discs}; failures: {fails}; messages received: {n}").format(
            discs=discs, fails=fails, n=ev["messages"]
        )
        return [first, " " * 9 + second]
    return [json.dumps(ev)]
