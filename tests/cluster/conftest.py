"""Fixtures for the cluster tests: a real redis-server, serve processes (``--redis``, ``--workers``)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from lokin_doctor.server import RunningServer, ServerConfig, running_server
from tests.peers._common import require_binary
from tests.peers.redis import RedisPeer
from tests.server.conftest import ServeProcess, serve_factory


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisPeer]:
    """A private redis-server on a free loopback port, stopped (by PID) at teardown."""
    binary = require_binary("redis-server", "apt-get install -y redis-server")
    peer = RedisPeer(binary, tmp_path / "redis").start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """A quiet single server, no broker."""
    async with running_server(ServerConfig(port=0, quiet=True)) as started:
        yield started


class ClusterServe(ServeProcess):
    """A serve process stopped with SIGTERM first: a ``--workers`` parent then stops its workers."""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._reader.join(5)  # the workers hold stderr too: wait for the last of them
        super().stop()


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Factory of ``serve`` subprocesses (``--redis``, ``--workers``), stopped at teardown."""
    yield from serve_factory(ClusterServe)
