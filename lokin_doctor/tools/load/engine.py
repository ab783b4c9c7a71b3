"""The load client behind ``lokin-doctor load``: N concurrent WebSocket connections, driven from one core.

Phases, each bounded in count and time:

1. **ramp**: open N connections at ``rate`` handshakes per second (0: as fast as the in-flight window
   allows), at most ``concurrency`` handshakes in flight; each waits for its 101 and its greeting
   (the server's first message) within ``timeout`` seconds of its TCP connect starting.
2. **hold**: keep them open and idle for ``duration`` seconds, counting connections the server drops.
3. **echo**: every open connection does ``messages`` sequential round trips (send a text message,
   wait for the same bytes back within ``timeout``), all connections concurrently.
4. **close**: closing handshake on every connection (bounded by ``timeout``), then abort the rest.

Engine ``sansio`` (the default): one :class:`asyncio.Protocol` per connection driving websockets'
sans-I/O :class:`~websockets.client.ClientProtocol` from callbacks — no task, no queue, no keepalive
timer per connection, the next echo is sent from ``data_received``. Engine ``websockets``: the
websockets asyncio client, one task per connection (kept to measure against; see bench/RESULTS.md:
it costs several times more CPU per handshake and per message).

Failures get the checklist's cause codes (see :mod:`lokin_doctor.tools.common`): a handshake that does
not end in a valid 101 becomes a :class:`lokin_doctor.instruments.wire.Outcome` built from the bytes that came back
and goes through :func:`lokin_doctor.checks.chain.handshake.classify`, exactly as ``lokin-doctor all`` would.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidMessage, InvalidStatus
from websockets.frames import Opcode
from websockets.typing import Origin
from websockets.uri import parse_uri

from lokin_doctor.instruments.observer import BODY_GRACE_S, HandshakeObserver, Observation, OutcomeKind
from lokin_doctor.instruments.wire import Outcome, from_observation
from lokin_doctor.target import Target
from lokin_doctor.tools.common import (
    Finding,
    connect_exception_cause,
    no_echo_cause,
    no_greeting_cause,
    outcome_cause,
    percentiles,
    session_cause,
)

ENGINES = ("sansio", "websockets")
PHASES = ("ramp", "hold", "echo", "close", "done")
#: How much of a failed handshake's reply we keep to diagnose it.
RAW_KEEP = 8192
#: How often the echo phase looks for round trips past their deadline.
SWEEP_S = 0.25

# Connection states.
#: Latencies use perf_counter: uvloop's loop.time() only has millisecond resolution.
_now = time.perf_counter

CONNECTING, HANDSHAKE, GREETING, OPEN, ECHO, CLOSING, DONE = range(7)
_TEXT, _BINARY, _CONT, _CLOSE = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.CLOSE


@dataclass(frozen=True)
class LoadConfig:
    """What to do. ``address`` is the resolved IP the connections go to (``target.host`` is the Host)."""

    target: Target
    address: str
    connections: int = 100
    rate: float = 500.0
    concurrency: int = 100
    duration: float = 5.0
    messages: int = 10
    message_size: int = 32
    timeout: float = 10.0
    origin: str | None = None
    engine: str = "sansio"
    compression: bool = False

    def __post_init__(self) -> None:
        from lokin_doctor import validate

        problems = []
        if self.connections < 1:
            problems.append("--connections must be at least 1")
        rate = validate.number("--rate", self.rate, low_ok=True, high=1e6, unit="handshakes per second")
        if rate:
            problems.append(rate + " (0: as fast as --concurrency allows)")
        if self.concurrency < 1:
            problems.append("--concurrency must be at least 1")
        for problem in (
            validate.number("--duration", self.duration, low_ok=True, high=86400),
            validate.number("--timeout", self.timeout, high=3600),
        ):
            if problem:
                problems.append(problem)
        if self.messages < 0:
            problems.append("--messages must be >= 0")
        if not 16 <= self.message_size <= 2**20:
            problems.append(f"--message-size must be from 16 to {2**20} bytes, not {self.message_size}")
        if self.origin is not None and (problem := validate.origin(self.origin)):
            problems.append(problem)
        if self.engine not in ENGINES:
            problems.append(f"--engine must be one of {', '.join(ENGINES)}")
        if problems:
            raise ValueError("; ".join(problems))

    def max_seconds(self) -> float:
        """An upper bound of the whole run (every phase is bounded by this arithmetic)."""
        ramp = (self.connections / self.rate if self.rate else 0.0) + self.timeout
        return ramp + self.duration + self.messages * self.timeout + self.timeout + 5.0


@dataclass(repr=False)  # its lists hold one float per handshake/message: never format them
class LoadRun:
    """Live counters (read by the progress bar) and, at the end, the figures."""

    config: LoadConfig
    phase: str = "ramp"
    started: int = 0
    inflight: int = 0
    settled: int = 0
    opened: int = 0
    open_now: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    examples: dict[str, Finding] = field(default_factory=dict)
    dropped_held: Counter[int] = field(default_factory=Counter)
    dropped_echo: Counter[int] = field(default_factory=Counter)
    handshake_ms: list[float] = field(default_factory=list)
    greeting_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)
    echo_sent: int = 0
    echo_received: int = 0
    other_messages: int = 0
    closed_clean: int = 0
    phase_s: dict[str, float] = field(default_factory=dict)
    ramp_first: float | None = None
    ramp_last: float | None = None
    loop_kind: str = "asyncio"
    interrupted: bool = False
    cpu_s: float = 0.0
    phase_cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def fail(self, cause: Finding) -> None:
        self.failures[cause.code] += 1
        self.examples.setdefault(cause.code, cause)

    def to_dict(self) -> dict[str, Any]:
        cfg = self.config
        ramp_s = (self.ramp_last - self.ramp_first) if self.ramp_first is not None and self.ramp_last else 0.0
        echo_s = self.phase_s.get("echo", 0.0)
        return {
            "target": cfg.target.url,
            "address": f"[{cfg.address}]:{cfg.target.port}"
            if ":" in cfg.address
            else f"{cfg.address}:{cfg.target.port}",
            "config": {
                "connections": cfg.connections,
                "rate": cfg.rate,
                "concurrency": cfg.concurrency,
                "duration_s": cfg.duration,
                "messages": cfg.messages,
                "message_size": cfg.message_size,
                "timeout_s": cfg.timeout,
                "engine": cfg.engine,
                "compression_offered": cfg.compression,
                "loop": self.loop_kind,
            },
            "connections": {
                "requested": cfg.connections,
                "started": self.started,
                "opened": self.opened,
                "failed": self.failed,
                "open_at_end": self.open_now,
                "closed_cleanly": self.closed_clean,
            },
            "failures": {
                "total": self.failed,
                "by_code": dict(self.failures.most_common()),
                "examples": {code: cause.to_dict() for code, cause in self.examples.items()},
            },
            "dropped": {
                "while_held": sum(self.dropped_held.values()),
                "during_echo": sum(self.dropped_echo.values()),
                "by_close_code": {
                    str(k): v for k, v in sorted((self.dropped_held + self.dropped_echo).items())
                },
            },
            "handshake_ms": percentiles(self.handshake_ms),
            "greeting_ms": percentiles(self.greeting_ms),
            "ramp": {
                "seconds": round(ramp_s, 3),
                "handshakes_per_s": round(self.opened / ramp_s, 1) if ramp_s > 0 else None,
            },
            "hold": {"seconds": round(self.phase_s.get("hold", 0.0), 3)},
            "echo": {
                "sent": self.echo_sent,
                "received": self.echo_received,
                "expected": self.opened * cfg.messages,
                "seconds": round(echo_s, 3),
                "messages_per_s": round(self.echo_received / echo_s, 1) if echo_s > 0 else None,
                "rtt_ms": percentiles(self.rtt_ms),
                "other_messages": self.other_messages,
            },
            "client_cpu_s": round(self.cpu_s, 3),
            "client_busy": {
                name: round(self.phase_cpu_s[name] / self.phase_s[name], 2)
                for name in ("ramp", "echo")
                if self.phase_s.get(name) and name in self.phase_cpu_s
            },
            "interrupted": self.interrupted,
        }


def _payload(idx: int, seq: int, size: int) -> bytes:
    head = b"load %07d %07d " % (idx, seq)
    return head + b"x" * (size - len(head)) if size > len(head) else head


class _Driver:
    """Starts the connections, paces the ramp, runs the phases; shared by both engines."""

    def __init__(self, config: LoadConfig, run: LoadRun, on_phase: Callable[[str, LoadRun], None] | None):
        self.cfg = config
        self.run = run
        self.on_phase = on_phase
        self.loop = asyncio.get_running_loop()
        self.wsuri = parse_uri(config.target.url)
        self.user_agent = f"lokin-doctor load (websockets; pid {os.getpid()})"
        self.conns: list[Any] = []
        self.window = asyncio.Event()
        self.all_settled = asyncio.Event()
        self.echo_done = asyncio.Event()
        self.all_closed = asyncio.Event()
        self.echo_pending = 0
        self.closing = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    # -- accounting, called by the connections ------------------------------------------------------
    def settled(self, ok: bool) -> None:
        run = self.run
        run.inflight -= 1
        run.settled += 1
        if ok:
            run.opened += 1
            run.open_now += 1
            run.ramp_last = _now()
        if run.inflight < self.cfg.concurrency:
            self.window.set()
        if run.settled >= self.cfg.connections:
            self.all_settled.set()

    def echo_finished(self) -> None:
        self.echo_pending -= 1
        if self.echo_pending <= 0:
            self.echo_done.set()

    def closed(self) -> None:
        self.closing -= 1
        if self.closing <= 0:
            self.all_closed.set()

    def lost_open(self, stage: str, code: int | None, reason: str) -> None:
        """An open connection the server ended (not during our own close)."""
        run = self.run
        run.open_now -= 1
        counter = run.dropped_echo if stage == "echo" else run.dropped_held
        counter[code if code is not None else 1006] += 1
        run.fail(session_cause(stage, code, reason))

    def _phase(self, name: str) -> None:
        self.run.phase = name
        if self.on_phase is not None:
            self.on_phase(name, self.run)

    # -- phases ---------------------------------------------------------------------------------------
    async def ramp(self) -> None:
        cfg, run, loop = self.cfg, self.run, self.loop
        self._phase("ramp")
        t0 = loop.time()
        run.ramp_first = _now()
        i = 0
        n = cfg.connections
        while i < n:
            now = loop.time()
            due = n if not cfg.rate else min(n, int((now - t0) * cfg.rate) + 1)
            room = cfg.concurrency - run.inflight
            batch = min(due - i, room)
            for _ in range(max(0, batch)):
                self.start(i)
                i += 1
            if i >= n:
                break
            if room <= batch:
                self.window.clear()
                # Every in-flight handshake settles within the timeout: the wait is bounded.
                try:
                    await asyncio.wait_for(self.window.wait(), cfg.timeout + 1.0)
                except TimeoutError:
                    pass
            else:
                next_due = t0 + i / cfg.rate
                await asyncio.sleep(max(0.0005, min(0.05, next_due - loop.time())))
        if run.settled < n:
            try:
                await asyncio.wait_for(self.all_settled.wait(), cfg.timeout + 1.0)
            except TimeoutError:
                pass
        self.force_settle()
        if run.ramp_last is None:
            run.ramp_last = _now()

    def start(self, idx: int) -> None:
        raise NotImplementedError

    def force_settle(self) -> None:
        """Past every deadline, a connection that is still opening is a timeout (belt and braces)."""

    async def hold(self) -> None:
        self._phase("hold")
        if self.cfg.duration > 0:
            await asyncio.sleep(self.cfg.duration)

    async def echo(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------
# Engine "sansio": asyncio.Protocol + websockets.client.ClientProtocol, callbacks only.
# ---------------------------------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    __slots__ = (
        "drv",
        "idx",
        "proto",
        "transport",
        "state",
        "t0",
        "t_upgraded",
        "obs",
        "graced",
        "timer",
        "frags",
        "expect",
        "left",
        "seq",
        "sent_at",
        "close_code",
        "close_reason",
    )

    def __init__(self, drv: _SansIODriver, idx: int) -> None:
        self.drv = drv
        self.idx = idx
        proto = ClientProtocol(drv.wsuri, origin=drv.origin, extensions=drv.extensions, max_size=2**20)
        request = proto.connect()
        request.headers["User-Agent"] = drv.user_agent
        proto.send_request(request)
        self.proto = proto
        self.transport: asyncio.Transport | None = None
        self.state = CONNECTING
        self.t0 = _now()
        self.t_upgraded = 0.0
        # The same sans-I/O observer as the doctor's handshake check: the same verdict from the same bytes.
        self.obs: HandshakeObserver | None = HandshakeObserver(proto, keep=RAW_KEEP, lean=True)
        self.graced = False
        self.timer: asyncio.TimerHandle | None = None
        self.frags: list[bytes] | None = None
        self.expect = b""
        self.left = 0
        self.seq = 0
        self.sent_at = 0.0
        self.close_code: int | None = None
        self.close_reason = ""

    # asyncio callbacks -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's transports are not asyncio's classes
        if self.state != CONNECTING:  # timed out while connecting
            transport.abort()  # type: ignore[attr-defined]
            return
        self.state = HANDSHAKE
        self._flush()
        remaining = self.drv.cfg.timeout - (_now() - self.t0)
        self.timer = self.drv.loop.call_later(max(0.0, remaining), self._timeout)

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == DONE:
            return
        proto = self.proto
        events: list[Any]
        event: Any
        if state == HANDSHAKE:
            obs = self.obs
            assert obs is not None
            result = obs.data(data)
            if result is None:
                if obs.grace and not self.graced:
                    self._grace()
                self._flush()
                return
            if result.kind is not OutcomeKind.UPGRADED:
                self._handshake_failed(result)
                return
            self._upgraded()
            events = obs.frames
        else:
            proto.receive_data(data)
            events = proto.events_received()  # Frames once open; no isinstance per frame
        for event in events:
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY:
                if event.fin:
                    self._message(event.data)
                else:
                    self.frags = [bytes(event.data)]
            elif opcode is _CONT:
                if self.frags is not None:
                    self.frags.append(bytes(event.data))
                    if event.fin:
                        payload = b"".join(self.frags)
                        self.frags = None
                        self._message(payload)
            elif opcode is _CLOSE:
                rcvd = proto.close_rcvd
                self.close_code = int(rcvd.code) if rcvd is not None else 1005
                self.close_reason = rcvd.reason if rcvd is not None else ""
        self._flush()
        if self.close_code is not None and self.state not in (CLOSING, DONE):
            self._ended()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost does the accounting

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        if state == DONE:
            return
        if state == HANDSHAKE:
            obs = self.obs
            assert obs is not None
            if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
                self._handshake_failed(obs.reset(exc))
            elif exc is not None and _is_ssl_error(exc):
                self._handshake_failed(obs.tls_failed(exc))
            else:
                self._handshake_failed(obs.eof())
        elif state == CLOSING:
            self._finish()
            self.drv.run.closed_clean += 1
            self.drv.closed()
        else:
            self._ended()

    # state machine -------------------------------------------------------------------------------
    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                try:
                    transport.write_eof()
                except (OSError, RuntimeError):
                    pass

    def _finish(self) -> None:
        self.state = DONE
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.obs = None

    def _grace(self) -> None:
        """A complete non-101 head: its body gets BODY_GRACE_S more, as the doctor gives it."""
        self.graced = True
        if self.timer is not None:
            self.timer.cancel()
            remaining = self.drv.cfg.timeout - (_now() - self.t0)
            self.timer = self.drv.loop.call_later(max(0.0, min(remaining, BODY_GRACE_S)), self._timeout)

    def _upgraded(self) -> None:
        drv = self.drv
        now = _now()
        self.t_upgraded = now
        drv.run.handshake_ms.append((now - self.t0) * 1000)
        self.state = GREETING
        self.obs = None

    def _message(self, data: Any) -> None:
        state = self.state
        drv = self.drv
        if state == ECHO:
            if data == self.expect:
                now = _now()
                run = drv.run
                run.rtt_ms.append((now - self.sent_at) * 1000)
                run.echo_received += 1
                self.left -= 1
                if self.left > 0:
                    self._send_next(now)
                else:
                    self.state = OPEN
                    drv.echo_finished()
            else:
                drv.run.other_messages += 1
        elif state == GREETING:
            now = _now()
            drv.run.greeting_ms.append((now - self.t_upgraded) * 1000)
            self.state = OPEN
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            drv.settled(True)
        else:
            drv.run.other_messages += 1

    def _send_next(self, now: float) -> None:
        self.seq += 1
        self.expect = payload = _payload(self.idx, self.seq, self.drv.cfg.message_size)
        self.sent_at = now
        self.proto.send_text(payload)
        self.drv.run.echo_sent += 1
        # _flush inline: one write per message.
        transport = self.transport
        if transport is not None:
            for chunk in self.proto.data_to_send():
                transport.write(chunk)

    def start_echo(self, messages: int) -> None:
        self.state = ECHO
        self.left = messages
        self._send_next(_now())

    def start_close(self) -> None:
        self.state = CLOSING
        try:
            self.proto.send_close(1000, "load test done")
        except Exception:  # noqa: BLE001 - the protocol may already be closing
            pass
        self._flush()

    def _timeout(self) -> None:
        self.timer = None
        drv = self.drv
        if self.state == HANDSHAKE and self.obs is not None:
            self._handshake_failed(self.obs.timeout())
        elif self.state == GREETING:
            self._abort()
            drv.run.fail(no_greeting_cause(drv.cfg.timeout))
            drv.settled(False)

    def echo_timed_out(self) -> None:
        self._abort()
        drv = self.drv
        drv.run.open_now -= 1
        drv.run.fail(no_echo_cause(drv.cfg.timeout))
        drv.echo_finished()

    def _abort(self, graceful: bool = False) -> None:
        self._finish()
        if self.transport is not None:
            if graceful:
                self.transport.close()  # after the close frame we just answered
            else:
                self.transport.abort()

    def _ended(self) -> None:
        """The server ended the connection (close frame or TCP) after the 101."""
        state = self.state
        drv = self.drv
        code, reason = self.close_code, self.close_reason
        graceful = code is not None
        if state == GREETING:
            self._abort(graceful)
            drv.run.fail(session_cause("greeting", code, reason))
            drv.settled(False)
        elif state == OPEN:
            self._abort(graceful)
            drv.lost_open("held", code, reason)
        elif state == ECHO:
            self._abort(graceful)
            drv.lost_open("echo", code, reason)
            drv.echo_finished()

    def connect_failed(self, cause: Finding) -> None:
        if self.state == DONE:
            return
        self._abort()
        self.drv.run.fail(cause)
        self.drv.settled(False)

    def _handshake_failed(self, result: Observation) -> None:
        drv = self.drv
        self._abort()
        out = from_observation(result, drv.cfg.address, drv.cfg.target.port)
        drv.run.fail(outcome_cause(out, drv.cfg.target))
        drv.settled(False)


def _is_ssl_error(exc: BaseException) -> bool:
    import ssl

    return isinstance(exc, ssl.SSLError)


class _SansIODriver(_Driver):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.origin = Origin(self.cfg.origin) if self.cfg.origin else None
        self.extensions: list[Any] | None = None
        if self.cfg.compression:
            from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

            # What browsers offer; the server decides (serve's default is no compression).
            self.extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=True)]

    def start(self, idx: int) -> None:
        conn = _Conn(self, idx)
        self.conns.append(conn)
        self.run.started += 1
        self.run.inflight += 1
        task = self.loop.create_task(self._connect(conn))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn: _Conn) -> None:
        cfg = self.cfg
        try:
            async with asyncio.timeout(cfg.timeout):
                await self.loop.create_connection(lambda: conn, cfg.address, cfg.target.port)
        except (OSError, TimeoutError) as exc:
            if conn.state == CONNECTING:
                conn.connect_failed(connect_exception_cause(exc, cfg.address, cfg.target.port))

    def force_settle(self) -> None:
        for conn in self.conns:
            if conn.state == CONNECTING:
                conn.connect_failed(
                    connect_exception_cause(TimeoutError(), self.cfg.address, self.cfg.target.port)
                )
            elif conn.state in (HANDSHAKE, GREETING):
                conn._timeout()

    async def echo(self) -> None:
        cfg, loop = self.cfg, self.loop
        self._phase("echo")
        if cfg.messages <= 0:
            return
        ready = [c for c in self.conns if c.state == OPEN]
        self.echo_pending = len(ready)
        if not ready:
            return
        self.echo_done.clear()
        for conn in ready:
            conn.start_echo(cfg.messages)
        # Each round trip is bounded by the timeout; the sweep enforces it without a timer per message.
        limit = loop.time() + cfg.messages * cfg.timeout + 1.0
        while not self.echo_done.is_set() and loop.time() < limit:
            try:
                await asyncio.wait_for(self.echo_done.wait(), SWEEP_S)
            except TimeoutError:
                now = _now()
                for conn in ready:
                    if conn.state == ECHO and now - conn.sent_at > cfg.timeout:
                        conn.echo_timed_out()

    async def close(self) -> None:
        self._phase("close")
        live = [c for c in self.conns if c.state in (OPEN, ECHO)]
        self.closing = len(live)
        self.all_closed.clear()
        for conn in live:
            conn.start_close()
        self.run.open_now = 0
        if live:
            try:
                await asyncio.wait_for(self.all_closed.wait(), min(self.cfg.timeout, 5.0))
            except TimeoutError:
                pass
        for conn in self.conns:
            if conn.state != DONE:
                conn._abort()
        for task in list(self.tasks):
            task.cancel()


# ---------------------------------------------------------------------------------------------------
# Engine "websockets": the websockets asyncio client, one task per connection (for comparison).
# ---------------------------------------------------------------------------------------------------


class _AsyncioDriver(_Driver):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.go_echo = asyncio.Event()
        self.go_close = asyncio.Event()
        self.ws_open: list[Any] = []

    def start(self, idx: int) -> None:
        self.run.started += 1
        self.run.inflight += 1
        task = self.loop.create_task(self._one(idx))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, idx: int) -> None:  # noqa: C901 - one connection's whole life
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        cfg, run, loop = self.cfg, self.run, self.loop
        t0 = _now()
        stage = "connect"
        ws = None
        try:
            try:
                async with asyncio.timeout(cfg.timeout):
                    ws = await connect(
                        cfg.target.url,
                        host=cfg.address,
                        port=cfg.target.port,
                        compression="deflate" if cfg.compression else None,
                        ping_interval=None,
                        open_timeout=None,
                        proxy=None,
                        origin=Origin(cfg.origin) if cfg.origin else None,
                        user_agent_header=self.user_agent,
                    )
                    t_up = _now()
                    run.handshake_ms.append((t_up - t0) * 1000)
                    stage = "greeting"
                    await ws.recv()
                    run.greeting_ms.append((_now() - t_up) * 1000)
            except TimeoutError:
                if stage == "greeting":
                    run.fail(no_greeting_cause(cfg.timeout))
                else:
                    out = Outcome(OutcomeKind.TIMEOUT, cfg.address, cfg.target.port, error="no reply in time")
                    run.fail(outcome_cause(out, cfg.target))
                self.settled(False)
                return
            except InvalidStatus as exc:
                out = Outcome(
                    OutcomeKind.STATUS,
                    cfg.address,
                    cfg.target.port,
                    status=exc.response.status_code,
                    reason=exc.response.reason_phrase,
                    headers=list(exc.response.headers.raw_items()),
                    body=bytes(exc.response.body or b""),
                )
                run.fail(outcome_cause(out, cfg.target))
                self.settled(False)
                return
            except InvalidHandshake as exc:
                out = Outcome(OutcomeKind.INVALID_UPGRADE, cfg.address, cfg.target.port, error=str(exc))
                if isinstance(exc, InvalidMessage):
                    out.kind = (
                        OutcomeKind.CLOSED if isinstance(exc.__cause__, EOFError) else OutcomeKind.NOT_HTTP
                    )
                run.fail(outcome_cause(out, cfg.target))
                self.settled(False)
                return
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                run.fail(session_cause("greeting", rcvd.code if rcvd else None, rcvd.reason if rcvd else ""))
                self.settled(False)
                return
            except OSError as exc:
                run.fail(connect_exception_cause(exc, cfg.address, cfg.target.port))
                self.settled(False)
                return
            self.settled(True)
            self.ws_open.append(ws)
            stage = "held"
            closed_task = loop.create_task(ws.wait_closed())
            go = loop.create_task(self.go_echo.wait())
            await asyncio.wait({closed_task, go}, return_when=asyncio.FIRST_COMPLETED)
            go.cancel()
            if closed_task.done():
                rcvd = ws.protocol.close_rcvd
                self.lost_open("held", rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
                if self.go_echo.is_set() and cfg.messages:
                    self.echo_finished()
                return
            closed_task.cancel()
            if cfg.messages:
                stage = "echo"
                try:
                    for seq in range(1, cfg.messages + 1):
                        payload = _payload(idx, seq, cfg.message_size).decode()
                        t_sent = _now()
                        await ws.send(payload)
                        run.echo_sent += 1
                        async with asyncio.timeout(cfg.timeout):
                            while True:
                                reply = await ws.recv()
                                if reply == payload:
                                    break
                                run.other_messages += 1
                        run.rtt_ms.append((_now() - t_sent) * 1000)
                        run.echo_received += 1
                except TimeoutError:
                    run.open_now -= 1
                    run.fail(no_echo_cause(cfg.timeout))
                    await ws.close()
                    return
                except ConnectionClosed as exc:
                    rcvd = exc.rcvd
                    self.lost_open("echo", rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
                    return
                finally:
                    self.echo_finished()
            await self.go_close.wait()
            async with asyncio.timeout(min(cfg.timeout, 5.0)):
                await ws.close(1000, "load test done")
            run.closed_clean += 1
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            if ws is not None:
                ws.transport.abort()

    async def echo(self) -> None:
        self._phase("echo")
        self.echo_pending = self.run.open_now if self.cfg.messages else 0
        if self.echo_pending:
            self.echo_done.clear()
        self.go_echo.set()
        if self.echo_pending:
            try:
                await asyncio.wait_for(self.echo_done.wait(), self.cfg.messages * self.cfg.timeout + 1.0)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self._phase("close")
        self.run.open_now = 0
        self.go_close.set()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=min(self.cfg.timeout, 5.0) + 1.0)
        for task in list(self.tasks):
            task.cancel()


async def run_load(
    config: LoadConfig, on_phase: Callable[[str, LoadRun], None] | None = None, run: LoadRun | None = None
) -> LoadRun:
    """Run the phases and return the figures. ``run`` may be passed in to watch its counters live."""
    run = run or LoadRun(config)
    loop = asyncio.get_running_loop()
    from lokin_doctor.tools.common import loop_name

    run.loop_kind = loop_name(loop)
    driver_cls = _SansIODriver if config.engine == "sansio" else _AsyncioDriver
    drv = driver_cls(config, run, on_phase)
    cpu0 = time.process_time()
    # Thousands of long-lived connection objects make every cyclic-GC pass walk them all (it cost
    # the client ~6 % of its CPU at 10,000 connections). What a run allocates is bounded by N and
    # freed by reference counting; the few cycles (failed connects) are collected at the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, phase in (("ramp", drv.ramp), ("hold", drv.hold), ("echo", drv.echo)):
            t, c = _now(), time.process_time()
            await phase()
            run.phase_s[name] = _now() - t
            run.phase_cpu_s[name] = time.process_time() - c
    except asyncio.CancelledError:
        run.interrupted = True
        raise
    finally:
        t = _now()
        await asyncio.shield(drv.close())
        run.phase_s["close"] = _now() - t
        run.cpu_s = time.process_time() - cpu0
        if gc_was_enabled:
            gc.enable()
        drv._phase("done")
    return run
