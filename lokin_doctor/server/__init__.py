"""The embedded LOK IN WebSocket server (``lokin-doctor serve``) and its in-process API.

This module stays light (standard library only at import time) because ``lokin-doctor all``
imports it on every run; websockets, prometheus-client and the page are loaded by
:func:`running_server` through :mod:`lokin_doctor.server.app`.

Usage from the runner or from tests::

    async with running_server(ServerConfig(port=0, quiet=True)) as server:
        ...  # connect to server.url

``ServerStartError`` carries a one-line message for the user (port in use with the holder's
pid, permission denied, bad certificate, bad host); nothing else escapes :func:`running_server`
at start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from lokin_doctor.server.config import (
    LOG_FORMATS,
    MAX_SECONDS,
    PROTOCOLS,
    ServerConfig,
    ServerStartError,
)

if TYPE_CHECKING:
    from lokin_doctor.server.app import LokinServer

__all__ = [
    "LOG_FORMATS",
    "MAX_SECONDS",
    "PROTOCOLS",
    "RunningServer",
    "ServerConfig",
    "ServerStartError",
    "running_server",
]


class RunningServer:
    """A started server: where it listens, a few live numbers, and :meth:`close`."""

    def __init__(self, app: LokinServer) -> None:
        self._app = app

    @property
    def host(self) -> str:
        """The address clients of this machine should use (127.0.0.1 for 0.0.0.0, ::1 for ::)."""
        return self._app.connect_host

    @property
    def port(self) -> int:
        """The bound port (the real one when the config asked for port 0)."""
        return self._app.port

    @property
    def url(self) -> str:
        """The WebSocket URL, e.g. ``ws://127.0.0.1:8080/`` (``wss://`` with a certificate)."""
        return self._app.url

    @property
    def http_url(self) -> str:
        """The same endpoint as http(s)://, where the test page, /health and /metrics live."""
        return self._app.http_url

    @property
    def config(self) -> ServerConfig:
        """The configuration the server runs with."""
        return self._app.config

    @property
    def connections(self) -> int:
        """WebSocket connections currently open."""
        return self._app.open_connections

    def health(self) -> dict[str, Any]:
        """The same document ``GET /health`` returns."""
        return self._app.health()

    async def close(self) -> None:
        """Stop accepting, close every client with 1001 (going away), within shutdown_timeout.

        Idempotent; :func:`running_server` calls it on exit.
        """
        await self._app.close()


@asynccontextmanager
async def running_server(config: ServerConfig) -> AsyncIterator[RunningServer]:
    """Start the LOK IN WebSocket server, yield it, close it gracefully on exit.

    Args:
        config: What to listen on and the limits; ``port=0`` picks a free port.

    Yields:
        The started server (its real port and URL).

    Raises:
        ServerStartError: The server could not start (one-line message).
    """
    from lokin_doctor.server.app import LokinServer

    app = LokinServer(config)
    await app.start()
    try:
        yield RunningServer(app)
    finally:
        await app.close()
