"""Fixtures for the ``serve`` tests: in-process servers on free loopback ports, the server as a
subprocess, and a raw HTTP client. Everything binds and connects to loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lokin_doctor.server import RunningServer, ServerConfig, running_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_server() -> Callable[..., contextlib.AbstractAsyncContextManager[RunningServer]]:
    """``async with make_server(max_per_ip=2) as server``: a quiet server on a free loopback port."""

    def factory(**overrides: Any) -> contextlib.AbstractAsyncContextManager[RunningServer]:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "quiet": True, **overrides}
        return running_server(ServerConfig(**settings))

    return factory


@pytest.fixture
async def server(make_server: Callable[..., Any]) -> AsyncIterator[RunningServer]:
    """A quiet server with the default limits."""
    async with make_server() as started:
        yield started


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def http_get(
    port: int, path: str = "/", headers: dict[str, str] | None = None, method: str = "GET"
) -> HttpReply:
    """One plain HTTP/1.1 request to 127.0.0.1:port, read to EOF (the server closes)."""
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return HttpReply(int(status_line.split()[1]), parsed, body)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class ServeProcess:
    """``python -m lokin_doctor serve ...`` with its stderr read line by line in a thread."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lokin_doctor", "serve", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self, timeout: float) -> str | None:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Block until a stderr line matches ``pattern`` (fails the test on timeout or exit)."""
        regex = re.compile(pattern)
        for seen in self.lines:
            if m := regex.search(seen):
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._drain(0.05)
            if line is None:
                if self.proc.poll() is not None and self._queue.empty():
                    pytest.fail(f"serve exited ({self.proc.returncode}) before {pattern!r}:\n{self.stderr}")
                continue
            if m := regex.search(line):
                return m
        pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{self.stderr}")

    def ready_port(self) -> int:
        """Wait for the ready line and return the port it announces."""
        return int(self.wait_for(r"\bready\b.*\bport[=\": ]+(\d+)").group(1))

    def finish(self, timeout: float = 10.0) -> int:
        """Wait for the exit code, then collect the rest of stderr."""
        code = self.proc.wait(timeout)
        self._reader.join(2)
        while self._drain(0) is not None:
            pass
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def serve_factory(cls: type[ServeProcess] = ServeProcess) -> Iterator[Callable[..., ServeProcess]]:
    """Body of the ``serve`` fixtures: yields a factory of ``cls`` subprocesses, stops them all afterwards."""
    started: list[ServeProcess] = []

    def factory(*args: str) -> ServeProcess:
        proc = cls(*args)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Factory of ``serve`` subprocesses, all stopped at teardown."""
    yield from serve_factory()
