"""What the metrics, page and Prometheus tests share: real reports of real peers, runs made of them, a
history in a temp file, a started :class:`StatusServer`.

The reports come from ``lokin-doctor all`` against real peers on loopback (a ``serve`` that answers, the same
port once it is killed, a server whose 403 reason phrase is HTML); the runs the tests need in numbers (a
timeline, a week) are those reports at other times (``at``), as the engine would record them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from lokin_doctor.tools.sentinel.history import History
from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
from lokin_doctor.tools.sentinel.records import PHASES, Run
from lokin_doctor.tools.sentinel.web import StatusServer
from tests.helpers import run_cli
from tests.peers._common import free_port
from tests.server.conftest import ServeProcess

#: A 403 whose reason phrase is markup: it ends up in the handshake's summary, then on the page.
HOSTILE_REASON = "<img src=x onerror=alert(1)>&</pre><script>alert(2)</script>"
HOSTILE_REPLY = (
    f"HTTP/1.1 403 {HOSTILE_REASON}\r\nContent-Type: text/html\r\nContent-Length: 0\r\n"
    "Connection: close\r\n\r\n"
).encode()


def run_from_report(report: dict[str, Any], started: float, **changes: Any) -> Run:
    """A run as the engine records it: the report's status, root cause and per-phase seconds."""
    rc = report.get("root_cause")
    phases = {
        PHASES[c["id"]]: c["duration_ms"] / 1000.0
        for c in report["checks"]
        if c["id"] in PHASES and c["status"] != "skip"
    }
    run = Run(
        target=report["target"],
        started=started,
        duration=report["duration_ms"] / 1000.0,
        status=report["status"],
        root_cause=rc["code"] if rc else None,
        failing_check=rc["check"] if rc else None,
        summary=rc["summary"] if rc else "healthy",
        hint=rc["hint"] if rc else None,
        phases=phases,
        report=report,
    )
    return replace(run, **changes)


@dataclass(frozen=True)
class Reports:
    """Real JSON reports of one target URL: ``ok`` (serve answering), ``down`` (serve killed)."""

    url: str
    ok: dict[str, Any]
    down: dict[str, Any]
    hostile_url: str
    hostile: dict[str, Any]

    def run(self, kind: str, started: float, **changes: Any) -> Run:
        return run_from_report(getattr(self, kind), started, **changes)


def _report(url: str, *extra: str) -> dict[str, Any]:
    run = run_cli("all", url, "--format", "json", "--timeout", "5", *extra)
    assert run.code in (0, 1), run.stderr
    return run.report


@pytest.fixture(scope="session", name="reports")
def reports_fixture() -> Iterator[Reports]:
    """Diagnoses of real peers, once per session (each takes about a second)."""
    from tests.peers.bad import start_bad_server

    port = free_port()
    serve = ServeProcess("--host", "127.0.0.1", "--port", str(port))
    try:
        serve.ready_port()
        url = f"ws://127.0.0.1:{port}/"
        # This serve only: other servers on the machine (a parallel run) are not its concern.
        ok = _report(url, "--process", rf"serve .*--port {port}\b")
    finally:
        serve.stop()
    down = _report(url)
    hostile_peer = start_bad_server("replay", reply=HOSTILE_REPLY)
    try:
        hostile_url = f"ws://127.0.0.1:{hostile_peer.port}/"
        hostile = _report(hostile_url)
    finally:
        hostile_peer.stop()
    assert ok["status"] == "ok", ok["root_cause"]
    assert down["status"] == "fail" and hostile["status"] == "fail"
    yield Reports(url, ok, down, hostile_url, hostile)


@pytest.fixture(name="history")
def history_fixture(tmp_path: Path) -> Iterator[History]:
    """The real history in a temp file."""
    with History(tmp_path / "history.sqlite3") as opened:
        yield opened


@contextlib.asynccontextmanager
async def status_server(
    history: History, metrics: SentinelMetrics, targets: list[str], host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[StatusServer]:
    server = StatusServer(history, metrics, targets, host, port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def record_timeline(
    history: History, reports: Reports, now: float, metrics: SentinelMetrics | None = None
) -> dict[str, Run]:
    """Two days of a target every minute: healthy, 20 minutes down 3 hours ago (recovered), 5 minutes
    hostile 30 minutes ago (recovered), healthy since; every run observed by ``metrics`` too.

    Returns the first stored run of each incident and the last run (``down``, ``hostile``, ``last``).
    """
    firsts: dict[str, Run] = {}
    stored: Run | None = None
    start = now - 2 * 86400
    for i in range(2 * 24 * 60):
        at = start + i * 60
        age = now - at
        kind = (
            "down" if 3 * 3600 - 1200 < age <= 3 * 3600 else "hostile" if 1800 - 300 < age <= 1800 else "ok"
        )
        run = reports.run(kind, at, target=reports.url, state="down" if kind != "ok" else "up")
        stored = history.record(run)
        if metrics is not None:
            metrics.observe(run)
        if kind != "ok" and kind not in firsts:
            firsts[kind] = stored
    assert stored is not None
    firsts["last"] = stored
    return firsts


def now_s() -> float:
    """The current time, on a whole minute: the timelines' slots line up with the runs."""
    return float(int(time.time() // 60 * 60))
