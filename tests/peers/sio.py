"""A real Socket.IO server (the ``socket.io`` npm package) as a peer: ``tests/peers/socketio/server.js``
(socket.io 4.8, Engine.IO protocol 4) and ``tests/peers/socketio2/server.js`` (socket.io 2.5, Engine.IO
protocol 3), both pinned by their ``package-lock.json``; ``npm ci --prefix tests/peers/socketio`` and
``--prefix tests/peers/socketio2`` install them (``scripts/test`` does).

Fixture ``socketio_server(version=4, refuse=False, path=None, eio3=False, args=()) -> Peer``: ``node server.js
PORT`` on 127.0.0.1 (cwd the package directory), ready once the port accepts; ``url`` is the plain
``ws://127.0.0.1:PORT/`` a ``new WebSocket(url)`` page would use, ``extra["engine_url"]`` the Engine.IO
WebSocket URL that works (``/socket.io/?EIO=4&transport=websocket``). Options (version 4 only):
``refuse`` a middleware on the main namespace refusing every client (``44{"message":"not authorized"}``),
``path`` the server's ``path`` option, ``eio3`` ``allowEIO3``, ``args`` more of server.js's flags
(``--transports polling``, ``--allow-origin ORIGIN``, ``--hang``, ``--connect-timeout MS``). Plain HTTP outside the path gets a small
page. Stopped by its PID (SIGTERM, SIGKILL after 3 s).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    missing,
    port_accepts,
    require_binary,
)
from tests.peers.peer import Peer

PEERS = Path(__file__).resolve().parent
DIRS = {4: PEERS / "socketio", 2: PEERS / "socketio2"}


def _directory(version: int) -> Path:
    require_binary("node", "install Node.js 20 (Debian: apt-get install -y nodejs npm)")
    directory = DIRS[version]
    if not (directory / "node_modules" / "socket.io" / "package.json").exists():
        missing(f"socket.io is not installed: run `npm ci --prefix tests/peers/{directory.name}`")
    return directory


@pytest.fixture
def socketio_server(_peer_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Peer]:
    """Start real Socket.IO servers: ``socketio_server(version=4, refuse=False, path=None, eio3=False,
    args=())``."""

    def start(
        version: int = 4,
        *,
        refuse: bool = False,
        path: str | None = None,
        eio3: bool = False,
        args: tuple[str, ...] = (),
    ) -> Peer:
        directory = _directory(version)
        logs = tmp_path_factory.mktemp(f"socketio{version}")
        flags = [
            *(["--refuse"] if refuse else []),
            *(["--path", path] if path else []),
            *(["--eio3"] if eio3 else []),
            *args,
        ]
        proc: ManagedProcess | None = None
        port = 0
        for attempt in range(3):
            port = free_port()
            proc = ManagedProcess(
                ["node", "server.js", str(port), *flags],
                log=logs / f"server-{attempt}.log",
                cwd=directory,
                name=f"socket.io {version} server.js",
            ).start()
            _peer_stack.push(proc.stop)
            if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
                break
            if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
                continue
            proc.fail_start(f"port {port} not accepting")
        assert proc is not None
        engine_path = (path or "/socket.io").rstrip("/") + "/"
        eio = 3 if version == 2 else 4
        return Peer(
            host=LOOPBACK,
            port=port,
            url=f"ws://{LOOPBACK}:{port}/",
            pid=proc.pid,
            kind=f"socketio{version}",
            log=proc.log,
            extra={
                "engine_url": f"ws://{LOOPBACK}:{port}{engine_path}?EIO={eio}&transport=websocket",
                "engine_path": engine_path,
            },
            _stop=proc.stop,
        )

    return start
