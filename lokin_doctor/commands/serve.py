"""``lokin-doctor serve``: the embedded LOK IN WebSocket server that replaces server.js.

Only typer and the standard library are imported here (the whole CLI imports this module on
every start); the server itself is imported inside the command.
"""

from __future__ import annotations

import enum
import sys
from typing import Annotated

import typer


class LogFormat(str, enum.Enum):
    """Format of the server's log lines on stderr."""

    text = "text"
    json = "json"


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be > 0, not {value:g}", param_hint=name)
    return value


def _optional_seconds(name: str, value: float) -> float | None:
    if value < 0:
        raise typer.BadParameter(f"must be >= 0 (0 turns it off), not {value:g}", param_hint=name)
    return value or None


def _workers(value: str, redis: str | None) -> int:
    """--workers N|auto, and --redis, checked before anything starts."""
    if redis is not None:
        from lokin_doctor.server.broker import redis_url_problem

        problem = redis_url_problem(redis)
        if problem:
            raise typer.BadParameter(problem, param_hint="--redis")
        try:
            import redis as _redis  # noqa: F401
        except ImportError:
            raise typer.BadParameter(
                "needs the redis package: pip install 'lokin-doctor[redis]'", param_hint="--redis"
            ) from None
    text = value.strip().lower()
    if text == "auto":
        from lokin_doctor.server.workers import auto_workers

        count = auto_workers()
    elif text.isdigit() and 1 <= int(text) <= 256:
        count = int(text)
    else:
        raise typer.BadParameter(
            f"must be a number from 1 to 256 or auto, not {value!r}", param_hint="--workers"
        )
    if count > 1 and redis is None:
        raise typer.BadParameter(
            f"{value} ({count} processes) needs --redis redis://HOST:PORT/DB: a broadcast must reach the "
            "clients of every worker (or use --workers 1)",
            param_hint="--workers",
        )
    return count


def _loop_factory() -> object | None:
    # uvloop is optional (the "speed" extra); the standard loop works the same, only slower.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve")
    def serve_command(
        host: Annotated[
            str,
            typer.Option(
                "--host",
                help="Address to listen on. 127.0.0.1 (default) is this machine only; 0.0.0.0 (or ::) "
                "exposes the server to the network: then also give --allow-origin.",
            ),
        ] = "127.0.0.1",
        port: Annotated[
            int,
            typer.Option(
                "--port",
                "-p",
                min=0,
                max=65535,
                help="TCP port; 0 picks a free one (printed on the ready line).",
            ),
        ] = 8080,
        allow_origin: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-origin",
                help="Accept browser pages from this Origin only (repeatable): https://lokin.app, "
                "https://*.lokin.app, http://localhost:8080, null (file:// pages), * (any). Others get HTTP 403. "
                "Default: any origin.",
            ),
        ] = None,
        max_connections: Annotated[
            int,
            typer.Option(
                "--max-connections", min=1, help="Open WebSocket connections in total; more get HTTP 503."
            ),
        ] = 10000,
        max_per_ip: Annotated[
            int,
            typer.Option(
                "--max-per-ip",
                min=0,
                help="Open WebSocket connections per client IP; more get HTTP 429. 0 = no cap "
                "(behind a reverse proxy every client has the proxy's IP).",
            ),
        ] = 1000,
        max_message_size: Annotated[
            int,
            typer.Option(
                "--max-message-size",
                min=1,
                help="Largest message accepted, in bytes; bigger closes with 1009.",
            ),
        ] = 1 << 20,
        open_timeout: Annotated[
            float,
            typer.Option(
                "--open-timeout",
                help="Seconds a new connection has to complete its opening handshake (TLS included) "
                "before it is cut, so half-open connections cannot pile up.",
            ),
        ] = 10.0,
        ping_interval: Annotated[
            float,
            typer.Option(
                "--ping-interval", help="Seconds between keepalive pings to each client; 0 = no pings."
            ),
        ] = 20.0,
        ping_timeout: Annotated[
            float,
            typer.Option(
                "--ping-timeout",
                help="Seconds a client has to answer a keepalive ping before it is dropped; 0 = wait forever.",
            ),
        ] = 20.0,
        compression: Annotated[
            bool,
            typer.Option(
                "--compression/--no-compression",
                help="Negotiate permessage-deflate (less bandwidth, more CPU and memory per connection).",
            ),
        ] = False,
        certfile: Annotated[
            str | None,
            typer.Option(
                "--certfile", help="PEM certificate (chain) to serve wss:// natively; may include the key."
            ),
        ] = None,
        keyfile: Annotated[
            str | None, typer.Option("--keyfile", help="PEM private key of --certfile, if not inside it.")
        ] = None,
        log_format: Annotated[
            LogFormat,
            typer.Option("--log-format", help="Log lines on stderr as text or JSON (one object per line)."),
        ] = LogFormat.text,
        shutdown_timeout: Annotated[
            float,
            typer.Option(
                "--shutdown-timeout",
                help="On SIGTERM/SIGINT, seconds to close every client with 1001 before cutting the rest.",
            ),
        ] = 5.0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No banner and no log lines.")] = False,
        redis: Annotated[
            str | None,
            typer.Option(
                "--redis",
                help="redis://HOST:PORT/DB: publish every broadcast on this Redis so the clients of every "
                "instance (other hosts, other workers) get it. Needs the redis extra: pip install 'lokin-doctor[redis]'.",
            ),
        ] = None,
        workers: Annotated[
            str,
            typer.Option(
                "--workers",
                help="Serving processes on the port (SO_REUSEPORT) under a parent that restarts them; "
                "auto = one per core. More than 1 needs --redis.",
            ),
        ] = "1",
    ) -> None:
        """Run the LOK IN WebSocket server (replaces server.js): welcome, ping/pong, broadcast, echo;
        test page on /, /health, /metrics. Stop with Ctrl-C or SIGTERM (clients get 1001)."""
        from lokin_doctor.server.origins import origin_problem

        open_timeout = _positive("--open-timeout", open_timeout)
        shutdown_timeout = _positive("--shutdown-timeout", shutdown_timeout)
        interval = _optional_seconds("--ping-interval", ping_interval)
        timeout = _optional_seconds("--ping-timeout", ping_timeout)
        if keyfile and not certfile:
            raise typer.BadParameter("--keyfile needs --certfile", param_hint="--keyfile")
        if not host.strip():
            raise typer.BadParameter("must not be empty (127.0.0.1 or 0.0.0.0)", param_hint="--host")
        for origin in allow_origin or []:
            problem = origin_problem(origin)
            if problem:
                raise typer.BadParameter(problem, param_hint="--allow-origin")

        count = _workers(workers, redis)

        from lokin_doctor.server import ServerConfig
        from lokin_doctor.server.run import serve_until_signal, tune_gc_for_serving

        config = ServerConfig(
            host=host.strip(),
            port=port,
            allow_origins=tuple(allow_origin or ()),
            max_connections=max_connections,
            max_per_ip=max_per_ip,
            max_message_size=max_message_size,
            open_timeout=open_timeout,
            ping_interval=interval,
            ping_timeout=timeout,
            compression=compression,
            certfile=certfile,
            keyfile=keyfile,
            log_format=log_format.value,
            shutdown_timeout=shutdown_timeout,
            quiet=quiet,
            redis=redis,
        )
        if count > 1:
            from lokin_doctor.server.workers import run_workers

            raise typer.Exit(run_workers(config, count))
        import asyncio

        factory = _loop_factory()
        tune_gc_for_serving()
        try:
            with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
                code = runner.run(serve_until_signal(config, tune_gc=True))
        except KeyboardInterrupt:  # a Ctrl-C before the signal handlers are in place
            sys.stderr.write("lokin-doctor: interrupted\n")
            raise typer.Exit(130) from None
        raise typer.Exit(code)
