"""The real sentinel as a user starts it (``python -m lokin_doctor sentinel ...`` in a subprocess), a webhook
receiver (the standard library's HTTP server in a thread), and bounded waits on what they show over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.peers._common import scaled
from tests.server.conftest import REPO, ServeProcess, serve_factory


class SentinelProcess(ServeProcess):
    """``python -m lokin_doctor sentinel ARGS``; stderr read line by line (``wait_for``), stdout kept."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lokin_doctor", "sentinel", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        import queue

        self._queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def page_url(self, timeout: float = 20.0) -> str:
        """The status page's URL, from the started line."""
        return self.wait_for(r"(http://127\.0\.0\.1:\d+/)", timeout=scaled(timeout)).group(1)

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.finish(scaled(timeout))


def sentinel_factory() -> Iterator[Callable[..., SentinelProcess]]:
    started: list[SentinelProcess] = []

    def start(*args: str) -> SentinelProcess:
        proc = SentinelProcess(*args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(name="serve_process")
def serve_process_fixture() -> Iterator[Callable[..., ServeProcess]]:
    """Factory of ``serve`` subprocesses (tests/server's), all stopped at teardown."""
    yield from serve_factory()


@pytest.fixture(name="sentinel_process")
def sentinel_process_fixture() -> Iterator[Callable[..., SentinelProcess]]:
    """Factory of sentinel subprocesses, all killed (by PID) at teardown."""
    yield from sentinel_factory()


class WebhookSink:
    """Records the JSON bodies POSTed to it (answers 204)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 1 << 20))
                try:
                    sink.bodies.append(json.loads(raw))
                except ValueError:
                    sink.bodies.append({"unparsed": raw.decode("utf-8", "replace")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def states(self) -> list[str]:
        return [str(b.get("state")) for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(name="webhook")
def webhook_fixture() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    yield sink
    sink.close()


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 (loopback only)
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def until(check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.3) -> Any:
    """Call ``check`` until it returns something truthy (bounded in time); fail the test otherwise."""
    deadline = time.monotonic() + scaled(timeout)
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {str(last)[:500]})")
