"""Peers of the sentinel tests: ``lokin-doctor serve`` subprocesses (killed and restarted on the same port by
their PID) and a webhook receiver (a local HTTP server that records POSTs; slow or failing on demand)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A ``serve`` on its own port; ``kill()`` stops it by its PID, ``start()`` starts it again there."""

    port: int
    log: Path
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def pattern(self) -> str:
        """A --process regex that matches this serve only (other helpers run servers on this machine)."""
        return rf"lokin_doctor serve .*--port {self.port}\b"

    def start(self) -> Served:
        argv = [sys.executable, "-m", "lokin_doctor", "serve", "--host", LOOPBACK, "--port", str(self.port)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = ManagedProcess([*argv, "--quiet"], log=self.log, env=env, name="serve").start()
        if not self.proc.wait_ready(partial(port_accepts, LOOPBACK, self.port), timeout=15):
            self.proc.fail_start(f"port {self.port} not accepting")
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    peer = Served(free_port(), tmp_path / "serve.log").start()
    yield peer
    peer.kill()


@dataclass
class Receiver:
    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    fail_first: int = 0
    seen: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posts


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port: records each POSTed JSON body."""
    state = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.seen += 1
            if state.delay:
                time.sleep(state.delay)
            if state.seen <= state.fail_first:
                self.send_response(500)
                self.end_headers()
                return
            state.posts.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
