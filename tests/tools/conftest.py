"""Helpers for the load / watch / monitor tests: the real CLI in an asyncio subprocess (so an in-process
server keeps serving while the command runs), and an in-process ``lokin-doctor serve``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from lokin_doctor.server import ServerConfig, running_server


@dataclass
class Run:
    code: int | None
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.stdout)  # type: ignore[no-any-return]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def _env() -> dict[str, str]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("LOKIN_URL", None)
    return env


async def cli(*args: str, timeout: float = 30.0) -> Run:
    """``python -m lokin_doctor ARGS`` without blocking the event loop; no traceback allowed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lokin_doctor",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    run = Run(proc.returncode, out.decode(), err.decode())
    assert "Traceback" not in run.stderr, run.stderr
    return run


class LiveCli:
    """A CLI subprocess whose stdout lines are read while it runs (watch)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def next_event(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            return None
        self.lines.append(line.decode())
        return json.loads(line)  # type: ignore[no-any-return]

    async def until(self, event: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            ev = await self.next_event(max(0.01, end - loop.time()))
            if ev is None:
                raise AssertionError(f"the command ended before a {event!r} event: {self.lines}")
            if ev["event"] == event:
                return ev

    async def finish(self, timeout: float) -> tuple[int | None, list[dict[str, Any]]]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        rest, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        assert b"Traceback" not in err, err.decode()
        self.lines.extend(rest.decode().splitlines(keepends=True))
        return self.proc.returncode, [json.loads(x) for x in self.lines if x.strip()]

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)


@asynccontextmanager
async def live_cli(*args: str) -> AsyncIterator[LiveCli]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lokin_doctor",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    try:
        yield LiveCli(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def lokin_config(port: int = 0, **kw: Any) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=port, quiet=True, max_per_ip=0, **kw)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """An in-process ``lokin-doctor serve`` on a free loopback port."""
    async with running_server(lokin_config()) as server:
        yield server
