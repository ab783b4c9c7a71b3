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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lokin_doctor.server.app import LokinServer

__all__ = ["LOG_FORMATS", "PROTOCOLS", "RunningServer", "ServerConfig", "ServerStartError", "running_server"]

LOG_FORMATS = ("text", "json")

#: What ``serve`` speaks once a WebSocket is open: the LOK IN protocol (welcome, ping/pong,
#: broadcast, echo of the rest), or a pure echo (for conformance suites such as Autobahn).
PROTOCOLS = ("lokin", "echo")

#: Longest timeout or interval accepted (one day): beyond, event loops overflow or never fire.
MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``lokin-doctor serve`` can be told; the defaults are the safe production ones.

    ``port=0`` binds a free port (read it back from :attr:`RunningServer.port`).
    ``max_per_ip=0`` disables the per-IP cap (behind a reverse proxy every client has its IP).
    ``ping_interval=None`` disables the keepalive pings; ``ping_timeout=None`` never drops a
    client that does not answer them. ``quiet=True`` prints nothing at all (no banner, no logs).
    ``max_fragments`` caps the frames of one fragmented message (1009 beyond); ``protocol="echo"``
    sends every message back as it came (no welcome, no JSON handling).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    allow_origins: tuple[str, ...] = ()
    max_connections: int = 10000
    max_per_ip: int = 1000
    max_message_size: int = 1 << 20
    open_timeout: float = 10
    ping_interval: float | None = 20
    ping_timeout: float | None = 20
    compression: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    log_format: str = "text"
    shutdown_timeout: float = 5.0
    quiet: bool = False
    #: ``redis://HOST:PORT/DB``: broadcasts reach the clients of every instance on that Redis.
    redis: str | None = None
    #: Bind with SO_REUSEPORT (the workers of ``serve --workers N`` share one port).
    reuse_port: bool = False
    #: Set by the ``--workers`` parent: the shared status directory and this worker's slot.
    workers_dir: str | None = None
    worker_index: int = 0
    max_fragments: int = 4096
    protocol: str = "lokin"

    def __post_init__(self) -> None:
        # Programmer errors from the in-process API; the CLI validates its options before this.
        problems = []
        if not 0 <= self.port <= 65535:
            problems.append(f"port must be 0-65535, not {self.port}")
        if self.max_connections < 1:
            problems.append("max_connections must be at least 1")
        if self.max_per_ip < 0:
            problems.append("max_per_ip must be 0 (no limit) or more")
        if self.max_message_size < 1:
            problems.append("max_message_size must be at least 1 byte")
        for name in ("open_timeout", "shutdown_timeout", "ping_interval", "ping_timeout"):
            value = getattr(self, name)
            # "not 0 < value" also refuses nan; None (off) is allowed for the keepalive ones.
            if (value is not None or name in ("open_timeout", "shutdown_timeout")) and not (
                isinstance(value, int | float) and 0 < value <= MAX_SECONDS
            ):
                problems.append(f"{name} must be > 0 and <= {MAX_SECONDS:g} seconds, not {value!r}")
        if self.max_fragments < 1:
            problems.append("max_fragments must be at least 1")
        if self.protocol not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}")
        if self.log_format not in LOG_FORMATS:
            problems.append(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.keyfile and not self.certfile:
            problems.append("keyfile needs certfile")
        if self.redis is not None:
            from lokin_doctor.server.broker import redis_url_problem

            if problem := redis_url_problem(self.redis):
                problems.append(f"redis: {problem}")
        if isinstance(self.allow_origins, str):
            problems.append("allow_origins is a tuple of origins, not a string")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def tls(self) -> bool:
        """Whether the server speaks wss:// (a certificate was given)."""
        return bool(self.certfile)


class ServerStartError(Exception):
    """The server could not start. ``str(exc)`` is one line meant for the user, no traceback."""


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
