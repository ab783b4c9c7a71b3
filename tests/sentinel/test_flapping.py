"""Intermittent faults, what the sentinel is for: a WebSocket server of our own that refuses one handshake in
three (503), watched by a real ``lokin-doctor sentinel`` subprocess. The history keeps every failing run with its
cause; with ``--confirm 2`` the blips open no incident (the list does not flood), with ``--confirm 1`` each blip
is an incident that the next healthy run closes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.sentinel.conftest import REPO, Receiver

RUNS = 9  # with one handshake a run (--only handshake): ok, ok, fail three times


class OneInThree:
    """A websockets server on a free loopback port whose every third opening handshake gets a 503."""

    def __init__(self) -> None:
        self.handshakes = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        def process_request(connection: Any, request: Any) -> Any:
            self.handshakes += 1
            if self.handshakes % 3 == 0:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "flapping: try again\n")
            return None

        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        self._stop = asyncio.Event()
        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> OneInThree:
        self._thread.start()
        assert self._ready.wait(10), "the flapping server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def flapping() -> Iterator[OneInThree]:
    with OneInThree() as server:
        yield server


def _sentinel(url: str, history: Path, confirm: int) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "lokin_doctor", "sentinel", url, "--only", "handshake", "--no-variants"]
    argv += ["--every", "1", "--jitter", "0", "--count", str(RUNS), "--confirm", str(confirm)]
    argv += ["--timeout", "3", "--history", str(history), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def _failing(history: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(history) as db:
        rows = db.execute("SELECT status, root_cause FROM runs WHERE status = 'fail' ORDER BY id").fetchall()
    return [(str(status), str(code)) for status, code in rows]


def _incidents(history: Path) -> list[dict[str, Any]]:
    import json

    run = run_cli("history", "--history", str(history), "--json")
    assert run.code == 0, run.stderr
    incidents: list[dict[str, Any]] = json.loads(run.stdout)["incidents"]
    return incidents


def test_blips_are_kept_in_the_runs_and_open_no_incident_under_confirm_2(
    flapping: OneInThree, tmp_path: Path
) -> None:
    history = tmp_path / "h.sqlite"
    done = _sentinel(f"ws://127.0.0.1:{flapping.port}/", history, confirm=2)
    assert done.returncode in (0, 1), done.stderr
    assert flapping.handshakes == RUNS  # one upgrade a run: the pattern below is the server's, not luck
    failing = _failing(history)
    assert len(failing) == RUNS // 3, failing
    assert {code for _status, code in failing} == {"handshake.unavailable"}, failing
    assert _incidents(history) == []  # never two failures in a row: no outage, no flood


def test_each_blip_is_an_incident_closed_by_the_next_run_under_confirm_1(
    flapping: OneInThree, tmp_path: Path
) -> None:
    history = tmp_path / "h.sqlite"
    done = _sentinel(f"ws://127.0.0.1:{flapping.port}/", history, confirm=1)
    assert done.returncode in (0, 1), done.stderr
    incidents = _incidents(history)
    # runs 3, 6 and 9 fail; the last one is still open when --count ends the sentinel
    assert len(incidents) == RUNS // 3, incidents
    assert all(i["root_cause"] == "handshake.unavailable" for i in incidents), incidents
    assert sum(1 for i in incidents if i["end"] is None) == 1, incidents


@pytest.mark.root
def test_a_full_disk_is_one_line_and_the_probing_goes_on(flapping: OneInThree, tmp_path: Path) -> None:
    """The history on a 256 KiB tmpfs of a mount namespace of our own, filled after the first run: the
    sentinel says so in one line on stderr and goes on diagnosing (every run still printed)."""
    import shlex

    from tests.peers._common import missing, require_binary

    if os.geteuid() != 0:
        missing("a tmpfs in a mount namespace needs root (unshare -m)")
    unshare = require_binary("unshare", "apt-get install -y util-linux")
    disk = tmp_path / "disk"
    disk.mkdir()
    runs = 5
    sentinel = [sys.executable, "-m", "lokin_doctor", "sentinel", f"ws://127.0.0.1:{flapping.port}/"]
    sentinel += ["--only", "tcp", "--every", "1", "--jitter", "0", "--count", str(runs), "--timeout", "2"]
    sentinel += ["--history", str(disk / "h.sqlite"), "--keep", "all"]
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(disk))} && "
        f"{{ {shlex.join(sentinel)} & pid=$!; sleep 1.5; "
        f"head -c 1M /dev/zero > {shlex.quote(str(disk / 'fill'))} 2>/dev/null; wait $pid; }}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    done = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    full = [line for line in done.stderr.splitlines() if "disk is full" in line]
    assert full, done.stderr
    assert len(full) <= 2, done.stderr  # said once per problem, not once per run
    assert len([line for line in done.stdout.splitlines() if line.strip()]) >= runs, (
        done.stdout,
        done.stderr,
    )


def test_a_slow_failing_webhook_never_delays_the_probing(receiver: Receiver, tmp_path: Path) -> None:
    """The receiver answers its first POST with a 500 after 2 s, and the next ones after 2 s too: the runs
    stay one second apart, the failure is logged, and the retry delivers the alert."""
    from tests.peers._common import free_port

    nothing = free_port()  # nothing listens: tcp.refused, down at the first run (--confirm 1)
    history = tmp_path / "h.sqlite"
    receiver.delay, receiver.fail_first = 2.0, 1
    argv = [sys.executable, "-m", "lokin_doctor", "sentinel", f"ws://127.0.0.1:{nothing}/"]
    argv += ["--only", "tcp", "--every", "1", "--jitter", "0", "--count", "5", "--confirm", "1"]
    argv += ["--timeout", "2", "--history", str(history), "--webhook", receiver.url, "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 1, done.stderr  # the last run failed
    with sqlite3.connect(history) as db:
        started = [row[0] for row in db.execute("SELECT started FROM runs ORDER BY id")]
    assert len(started) == 5, started
    gaps = [b - a for a, b in zip(started, started[1:], strict=False)]
    assert all(gap < 1.6 for gap in gaps), gaps  # a 2 s webhook call held no run back
    assert "Traceback" not in done.stderr and "webhook" in done.stderr.lower(), done.stderr
    posts = receiver.wait(1, timeout=10)
    assert posts and posts[0]["state"] == "down" and posts[0]["root_cause"] == "tcp.refused", posts
