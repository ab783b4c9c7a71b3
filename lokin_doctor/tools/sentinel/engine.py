"""The sentinel's engine: each target's diagnosis at an interval, recorded, its changes alerted. No printing.

One asyncio task per target, so a target is never diagnosed twice at once and a slow one never delays the
others. A run is the checklist of ``all`` (:func:`lokin_doctor.runner.diagnose`) under its own deadline (the
settings' ``--timeout``, plus ``--hold``, plus a margin for the browser), and the next one starts ``every``
seconds (+- ``jitter``) after the previous one began (right away when a run took longer). The history is
written from a worker thread (:func:`asyncio.to_thread`), the alerts from a background task: neither a slow
disk nor a slow webhook delays a probe.

A history that cannot be written (full disk, a file corrupted or locked under it) is logged once per problem;
the runs wait in memory (at most :data:`BACKLOG` of them, the oldest dropped and counted) and are written, in
order, as soon as the file takes them again. The probing goes on.

Stop: ``SIGTERM``/``SIGINT`` (or the ``stop`` event) lets each run in flight finish for ``grace`` seconds, then
cuts it and records it as ``cut``; the queued alerts get a few seconds to go out; the history is closed. The
exit code: 0 after SIGTERM or the stop event, 130 after SIGINT (Ctrl-C, as every command); with ``--count``,
0 when every target's last run was healthy, 1 when one was failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lokin_doctor.i18n import _
from lokin_doctor.settings import Settings
from lokin_doctor.tools.sentinel.alerts import UNKNOWN, Alerter, Change, StateTracker
from lokin_doctor.tools.sentinel.history import CUT, History, HistoryError
from lokin_doctor.tools.sentinel.records import PHASES, Run

#: Runs kept in memory while the history cannot be written.
BACKLOG = 1000
#: Seconds past a run's own deadline before the engine cuts it (the runner bounds every check already).
RUN_MARGIN_S = 5.0
#: Extra time a ``--browser`` run gets to start Chromium (not network time, outside the deadline).
BROWSER_START_S = 30.0
#: How long a run in flight may finish after a stop is asked for.
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class SentinelConfig:
    """What ``lokin-doctor sentinel`` was asked to do, validated (see ``command.py``).

    ``keep_seconds``/``keep_bytes``: ``--keep``; ``confirm``: failing runs before a target is down (a
    recovery counts after ``confirm_up`` healthy runs); ``seed``: the jitter's random seed (tests);
    ``names``: the target names, in the order of ``targets`` (default: :func:`target_name`).
    """

    targets: tuple[Settings, ...]
    history: Path
    every: float = 60.0
    jitter: float = 0.1
    count: int | None = None
    keep_seconds: float | None = None
    keep_bytes: int | None = None
    confirm: int = 2
    confirm_up: int = 1
    webhook: str | None = None
    webhook_format: str = "json"
    on_change: tuple[str, ...] | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    only: tuple[str, ...] | None = None
    debug: bool = False
    seed: int | None = None
    grace: float = STOP_GRACE_S
    names: tuple[str, ...] = ()


@dataclass
class Events:
    """What the engine tells its caller (the command prints; tests collect).

    ``run(run, change)``: after each recorded run (``change`` when it confirmed a new state);
    ``problem(line)``: a one-line trouble (history, webhook) that does not stop the probing;
    ``started(port)``: the status server's port, once bound (None without ``--metrics-port``).
    """

    run: Callable[[Run, Change | None], None] = lambda run, change: None
    problem: Callable[[str], None] = lambda line: None
    started: Callable[[int | None], None] = lambda port: None


_SECRET_KEYS = ("token", "key", "auth", "password", "passwd", "secret", "jwt", "sig", "session", "access")


def target_name(settings: Settings) -> str:
    """How the sentinel names a target: its URL (the page's URL when only --page-url gave it), with the
    values of query parameters that look like credentials replaced by ``***``."""
    url = settings.page_url if settings.page_url and not settings.target_given else settings.target.url
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [
        (k, "***" if any(s in k.lower() for s in _SECRET_KEYS) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def run_deadline(settings: Settings) -> float:
    """The longest a run of ``settings`` may take before the engine cuts it."""
    return (
        settings.timeout
        + (settings.hold or 0.0)
        + (BROWSER_START_S if settings.browser else 0.0)
        + RUN_MARGIN_S
    )


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def run_of(name: str, started: float, report_dict: dict[str, Any]) -> Run:
    """The :class:`Run` a JSON report (``render.report_dict``) stands for."""
    checks = report_dict.get("checks") or []
    root = report_dict.get("root_cause") or None
    phases: dict[str, float] = {}
    cert: float | None = None
    for check in checks:
        phase = PHASES.get(check.get("id", ""))
        if phase and check.get("status") != "skip":
            phases[phase] = round(float(check.get("duration_ms") or 0.0) / 1000, 4)
        if check.get("id") == "tls":
            evidence: dict[str, Any] = check.get("evidence") or {}
            leaf = evidence.get("certificate")
            certificate: dict[str, Any] = leaf if isinstance(leaf, dict) else {}
            cert = _parse_time(evidence.get("not_after") or certificate.get("not_after"))
    status = str(report_dict.get("status") or "ok")
    if root:
        summary, hint = str(root.get("summary") or ""), root.get("hint")
    else:
        summary, hint = _healthy_summary(checks, status), None
    return Run(
        target=name,
        started=started,
        duration=round(float(report_dict.get("duration_ms") or 0.0) / 1000, 4),
        status=status,
        root_cause=root.get("code") if root else None,
        failing_check=root.get("check") if root else None,
        summary=summary,
        hint=hint,
        phases=phases,
        cert_not_after=cert,
        report=report_dict,
    )


def _healthy_summary(checks: Sequence[dict[str, Any]], status: str) -> str:
    warned = [c for c in checks if c.get("status") == "warn"]
    if warned:
        return _("healthy, with a warning: {code}: {summary}").format(
            code=warned[0].get("code"), summary=warned[0].get("summary")
        )
    passed = sum(1 for c in checks if c.get("status") == "ok")
    return _("healthy: {n} checks passed").format(n=passed)


def cut_run(name: str, started: float, why: str) -> Run:
    return Run(
        target=name, started=started, duration=round(time.time() - started, 4), status=CUT, summary=why
    )


class _Writer:
    """The history writes: in a worker thread, with a bounded backlog while the file refuses them."""

    def __init__(self, history: History, config: SentinelConfig, events: Events) -> None:
        self.history = history
        self.config = config
        self.events = events
        self.backlog: deque[Run] = deque()
        self.dropped = 0
        self.errors = 0
        self._last_problem: str | None = None
        self._lock = asyncio.Lock()

    async def record(self, run: Run) -> Run:
        """``run`` as stored (with its id), or as given when it waits in the backlog."""
        async with self._lock:
            if len(self.backlog) >= BACKLOG:
                self.backlog.popleft()
                self.dropped += 1
            self.backlog.append(run)
            stored = run
            while self.backlog:
                head = self.backlog[0]
                try:
                    written = await asyncio.to_thread(self.history.record, head)
                except HistoryError as exc:
                    self.errors += 1
                    if exc.message != self._last_problem:
                        self._last_problem = exc.message
                        self.events.problem(
                            _("{error}; {n} run(s) kept in memory, written when it works again").format(
                                error=exc.message, n=len(self.backlog)
                            )
                        )
                    return stored
                self.backlog.popleft()
                if head is run:
                    stored = written
            if self._last_problem is not None:
                self._last_problem = None
                self.events.problem(
                    _("the history {path} is written again").format(path=self.history.path)
                    + (_(" ({n} run(s) were dropped)").format(n=self.dropped) if self.dropped else "")
                )
            await self._prune()
            return stored

    async def _prune(self) -> None:
        if self.config.keep_seconds is None and self.config.keep_bytes is None:
            return
        try:
            await asyncio.to_thread(
                self.history.prune, older_than=self.config.keep_seconds, max_bytes=self.config.keep_bytes
            )
        except HistoryError as exc:
            self.events.problem(exc.message)


@dataclass
class _Target:
    settings: Settings
    name: str
    tracker: StateTracker
    runs: int = 0
    last: Run | None = None
    history_state: str | None = None
    seen: list[str] = field(default_factory=list)


class Sentinel:
    """One sentinel: its targets, history, alerts and (optionally) its status server."""

    def __init__(self, config: SentinelConfig, history: History, events: Events | None = None) -> None:
        self.config = config
        self.history = history
        self.events = events or Events()
        self.stop_event = asyncio.Event()
        self.signal: signal.Signals | None = None
        self.writer = _Writer(history, config, self.events)
        self.random = random.Random(config.seed)
        self.metrics: Any = None
        self.server: Any = None
        self.alerter = Alerter(
            webhook=config.webhook,
            webhook_format=config.webhook_format,
            on_change=config.on_change,
            log=self.events.problem,
            report_url=self._report_url,
        )
        names = config.names or tuple(target_name(s) for s in config.targets)
        self.targets = [
            _Target(s, n, StateTracker(config.confirm, config.confirm_up))
            for s, n in zip(config.targets, names, strict=True)
        ]

    def _report_url(self, run: Run) -> str | None:
        if self.server is None or run.id is None:
            return None
        host = self.config.metrics_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port}/runs/{run.id}"

    async def _resume(self) -> None:
        """Each target's state from the history (a restart neither repeats an alert nor forgets an outage)."""
        for t in self.targets:
            latest = await asyncio.to_thread(self.history.latest, t.name)
            if latest is None or latest.state not in ("up", "down"):
                continue
            t.tracker = StateTracker(self.config.confirm, self.config.confirm_up, latest.state)
            if latest.state == "down":
                ongoing = await asyncio.to_thread(self.history.incidents, t.name)
                if ongoing and ongoing[0].ongoing:
                    t.tracker.opener = await asyncio.to_thread(self.history.run, ongoing[0].first_run)

    async def _start_server(self) -> None:
        if self.config.metrics_port is None:
            self.events.started(None)
            return
        from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
        from lokin_doctor.tools.sentinel.web import StatusServer

        self.metrics = SentinelMetrics()
        server = StatusServer(
            self.history,
            self.metrics,
            [t.name for t in self.targets],
            self.config.metrics_host,
            self.config.metrics_port,
        )
        try:
            await server.start()
        except OSError as exc:
            from lokin_doctor.validate import CommandError

            raise CommandError(
                _("--metrics-port {port}: cannot listen on {host} ({error})").format(
                    port=self.config.metrics_port, host=self.config.metrics_host, error=exc.strerror or exc
                )
            ) from None
        self.server = server
        self.events.started(server.port)

    def request_stop(self, signum: signal.Signals | None = None) -> None:
        if signum is not None and self.signal is None:
            self.signal = signum
        self.stop_event.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.request_stop, signum)
                installed.append(signum)
        try:
            await self._resume()
            await self._start_server()
            self.alerter.start()
            await asyncio.gather(*(self._loop(t) for t in self.targets))
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await self.alerter.stop()
            if self.server is not None:
                with contextlib.suppress(Exception):
                    await self.server.stop()
        if self.signal == signal.SIGINT:
            return 130
        if self.config.count is not None and not self.stop_event.is_set():
            return 0 if all(t.last is None or t.last.healthy for t in self.targets) else 1
        return 0

    async def _loop(self, t: _Target) -> None:
        config = self.config
        # Targets start spread over the first interval's jitter, not all in the same millisecond.
        first = self.random.uniform(0, config.every * config.jitter) if len(self.targets) > 1 else 0.0
        if await self._sleep(first):
            return
        while config.count is None or t.runs < config.count:
            started_mono = time.monotonic()
            run = await self._one(t)
            t.runs += 1
            if run.status == CUT:
                return
            if config.count is not None and t.runs >= config.count:
                return
            spread = config.every * config.jitter
            wait = config.every + self.random.uniform(-spread, spread) - (time.monotonic() - started_mono)
            if await self._sleep(max(0.0, wait)):
                return

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until a stop; True when stopped."""
        if self.stop_event.is_set():
            return True
        if seconds <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        return self.stop_event.is_set()

    async def _diagnose(self, t: _Target, started: float) -> Run:
        from lokin_doctor.render import report_dict
        from lokin_doctor.runner import diagnose

        task = asyncio.ensure_future(diagnose(t.settings, self.config.only, self.config.debug))
        stopper = asyncio.ensure_future(self.stop_event.wait())
        try:
            done, _pending = await asyncio.wait(
                {task, stopper}, timeout=run_deadline(t.settings), return_when=asyncio.FIRST_COMPLETED
            )
            if task not in done and stopper in done:
                await asyncio.wait({task}, timeout=self.config.grace)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            why = (
                _("cut by the sentinel's stop before it finished")
                if self.stop_event.is_set()
                else _("cut: no result within {seconds:g} s").format(seconds=run_deadline(t.settings))
            )
            return cut_run(t.name, started, why)
        report = task.result()
        return run_of(t.name, started, report_dict(report))

    async def _one(self, t: _Target) -> Run:
        started = time.time()
        run = await self._diagnose(t, started)
        change: Change | None = None
        if run.status == CUT:
            run = replace(run, state=t.tracker.state)
        else:
            state, previous = t.tracker.update(run)
            run = replace(run, state=state)
            if previous is not None and not (previous == UNKNOWN and state == "up"):
                change = Change(t.name, state, previous, run, t.tracker.opener if state == "up" else None)
        stored = await self.writer.record(run)
        t.last = stored
        if change is not None:
            change = replace(change, run=stored)
            self.alerter.notify(change)
        if self.metrics is not None and stored.status != CUT:
            try:
                self.metrics.observe(stored)
            except Exception as exc:  # the metrics never stop the probing
                self.events.problem(_("metrics: {error}").format(error=f"{type(exc).__name__}: {exc}"))
        self.events.run(stored, change)
        return stored


async def run_sentinel(
    config: SentinelConfig, events: Events | None = None, history: History | None = None
) -> int:
    """Run the sentinel until ``--count`` runs per target or a stop; the exit code (see the module)."""
    own = history is None
    hist = history or History(config.history)
    try:
        return await Sentinel(config, hist, events).run()
    finally:
        if own:
            hist.close()
