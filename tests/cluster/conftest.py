"""Fixtures for the cluster tests: a real redis-server, serve processes (``--redis``, ``--workers``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lokin_doctor.server import RunningServer, ServerConfig, running_server

from tests.peers._common import require_binary
from tests.peers.redis import RedisPeer
from tests.server.conftest import serve_process  # noqa: F401  (re-exported fixture)


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
