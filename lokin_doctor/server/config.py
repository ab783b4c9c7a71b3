"""What ``serve`` can be told (:class:`ServerConfig`) and the one error it starts with.

The leaf of the server package: every other module of it imports this one, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lokin_doctor.validate import CommandError

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


class ServerStartError(CommandError):
    """The server could not start. ``str(exc)`` is one line meant for the user, no traceback (exit 1)."""
