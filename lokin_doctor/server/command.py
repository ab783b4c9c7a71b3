"""``lokin-doctor serve``: the embedded LOK IN WebSocket server that replaces server.js.

Only typer and the standard library are imported here (the whole CLI imports this module on
every start); the server itself is imported inside the command.
"""

from __future__ import annotations

import enum
import math
from typing import Annotated, NoReturn

import typer

from lokin_doctor.i18n import N_, _
from lokin_doctor.validate import MAX_SECONDS, UsageError


class Protocol(str, enum.Enum):
    """What the server speaks once a WebSocket is open."""

    lokin = "lokin"
    echo = "echo"


class LogFormat(str, enum.Enum):
    """Format of the server's log lines on stderr."""

    text = "text"
    json = "json"


SERVE_HELP = N_(
    """Run the LOK IN WebSocket server (replaces server.js): welcome, ping/pong, broadcast, echo;
test page on /, /health, /metrics. Stop with Ctrl-C or SIGTERM (clients get 1001)."""
)


def _bad(option: str, value: object, expected: str) -> NoReturn:
    """One line on stderr, exit 2 (the contract for every bad input)."""
    message = _("{option} {value}: {expected}").format(option=option, value=value, expected=expected)
    raise UsageError(message, option)


def _seconds(option: str, value: float, *, zero_is_off: bool = False) -> float | None:
    """A finite number of seconds in (0, MAX_SECONDS]; 0 means off where ``zero_is_off``."""
    if zero_is_off and value == 0:
        return None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        if zero_is_off:
            expected = _("must be a number of seconds >= 0 (0 turns it off) and <= {high:g}, e.g. 10")
        else:
            expected = _("must be a number of seconds > 0 and <= {high:g}, e.g. 10")
        _bad(option, f"{value:g}", expected.format(high=MAX_SECONDS))
    return value


def _listenable(option: str, host: str) -> None:
    """An address ``serve`` can bind: an IP literal, or a name that resolves (as bind would, before start-up)."""
    import ipaddress
    import socket

    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        _bad(
            option,
            repr(host),
            _("cannot be listened on ({reason}); give an address such as 127.0.0.1, ::1 or 0.0.0.0").format(
                reason=reason
            ),
        )


def _tls_files(certfile: str, keyfile: str | None) -> None:
    """--certfile (and --keyfile) loaded by the server's own reader (server/tls.py) before it starts: a file
    the server would refuse is a usage error naming the option, with the reader's one-line reason."""
    from lokin_doctor.server.config import ServerStartError
    from lokin_doctor.server.tls import build_ssl_context

    try:
        build_ssl_context(certfile, keyfile)
    except ServerStartError as exc:
        option = "--keyfile" if keyfile and keyfile in str(exc) and certfile not in str(exc) else "--certfile"
        raise UsageError(f"{option}: {exc}", option) from None


def _count(option: str, value: int, low: int, high: int | None = None, what: str = "") -> int:
    if value < low or (high is not None and value > high):
        if high is not None:
            expected = _("must be a whole number from {low} to {high}").format(low=low, high=high)
        else:
            expected = _("must be a whole number at least {low}").format(low=low)
        _bad(option, value, expected + (_(what) if what else ""))
    return value


def _workers(value: str, redis: str | None) -> int:
    """--workers N|auto, and --redis, checked before anything starts."""
    if redis is not None:
        from lokin_doctor.server.broker import redis_url_problem

        problem = redis_url_problem(redis)
        if problem:
            _bad("--redis", redis, problem)
        try:
            import redis as _redis  # noqa: F401
        except ImportError:
            _bad("--redis", redis, _("needs the redis package: pip install 'lokin-doctor[redis]'"))
    text = value.strip().lower()
    if text == "auto":
        from lokin_doctor.server.workers import auto_workers

        count = auto_workers()
    elif text.isdigit() and 1 <= int(text) <= 256:
        count = int(text)
    else:
        _bad("--workers", value, _("must be a whole number from 1 to 256, or auto (one per core)"))
    if count > 1 and redis is None:
        _bad(
            "--workers",
            value,
            _(
                "{count} processes need --redis redis://HOST:PORT/DB so a broadcast reaches the clients of every worker (start Redis, or use --workers 1)"
            ).format(count=count),
        )
    return count


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve", help=_(SERVE_HELP))
    def serve_command(
        host: Annotated[
            str,
            typer.Option(
                "--host",
                help=_(
                    "Address to listen on. 127.0.0.1 (default) is this machine only; 0.0.0.0 (or ::) exposes the server to the network: then also give --allow-origin."
                ),
            ),
        ] = "127.0.0.1",
        port: Annotated[
            int,
            typer.Option(
                "--port",
                "-p",
                help=_("TCP port; 0 picks a free one (printed on the ready line)."),
            ),
        ] = 8080,
        allow_origin: Annotated[
            list[str] | None,
            typer.Option(
                "--allow-origin",
                help=_(
                    "Accept browser pages from this Origin only (repeatable): https://lokin.app, https://*.lokin.app, http://localhost:8080, null (file:// pages), * (any). Others get HTTP 403. Default: any origin."
                ),
            ),
        ] = None,
        max_connections: Annotated[
            int,
            typer.Option(
                "--max-connections", help=_("Open WebSocket connections in total; more get HTTP 503.")
            ),
        ] = 10000,
        max_per_ip: Annotated[
            int,
            typer.Option(
                "--max-per-ip",
                help=_(
                    "Open WebSocket connections per client IP; more get HTTP 429. 0 = no cap (behind a reverse proxy every client has the proxy's IP)."
                ),
            ),
        ] = 1000,
        max_message_size: Annotated[
            int,
            typer.Option(
                "--max-message-size",
                help=_("Largest message accepted, in bytes; bigger closes with 1009."),
            ),
        ] = 1 << 20,
        open_timeout: Annotated[
            float,
            typer.Option(
                "--open-timeout",
                help=_(
                    "Seconds from the TCP accept for a new connection to complete TLS and the WebSocket upgrade (one timeout for both) before it is cut, so half-open connections cannot pile up."
                ),
            ),
        ] = 10.0,
        ping_interval: Annotated[
            float,
            typer.Option(
                "--ping-interval", help=_("Seconds between keepalive pings to each client; 0 = no pings.")
            ),
        ] = 20.0,
        ping_timeout: Annotated[
            float,
            typer.Option(
                "--ping-timeout",
                help=_(
                    "Seconds a client has to answer a keepalive ping before it is dropped; 0 = wait forever."
                ),
            ),
        ] = 20.0,
        compression: Annotated[
            bool,
            typer.Option(
                "--compression/--no-compression",
                help=_("Negotiate permessage-deflate (less bandwidth, more CPU and memory per connection)."),
            ),
        ] = False,
        certfile: Annotated[
            str | None,
            typer.Option(
                "--certfile", help=_("PEM certificate (chain) to serve wss:// natively; may include the key.")
            ),
        ] = None,
        keyfile: Annotated[
            str | None, typer.Option("--keyfile", help=_("PEM private key of --certfile, if not inside it."))
        ] = None,
        log_format: Annotated[
            str,
            typer.Option("--log-format", help=_("Log lines on stderr: text, or json (one object per line).")),
        ] = LogFormat.text.value,
        shutdown_timeout: Annotated[
            float,
            typer.Option(
                "--shutdown-timeout",
                help=_("On SIGTERM/SIGINT, seconds to close every client with 1001 before cutting the rest."),
            ),
        ] = 5.0,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_("No banner and no log lines."))] = False,
        redis: Annotated[
            str | None,
            typer.Option(
                "--redis",
                help=_(
                    "redis://HOST:PORT/DB: publish every broadcast on this Redis so the clients of every instance (other hosts, other workers) get it. Needs the redis extra: pip install 'lokin-doctor[redis]'."
                ),
            ),
        ] = None,
        workers: Annotated[
            str,
            typer.Option(
                "--workers",
                help=_(
                    "Serving processes on the port (SO_REUSEPORT) under a parent that restarts them; auto = one per core. More than 1 needs --redis."
                ),
            ),
        ] = "1",
        max_fragments: Annotated[
            int,
            typer.Option(
                "--max-fragments",
                help=_(
                    "Most frames one fragmented message may have; more closes with 1009 (each frame's header also counts toward --max-message-size)."
                ),
            ),
        ] = 4096,
        protocol: Annotated[
            str,
            typer.Option(
                "--protocol",
                help=_(
                    "lokin: the LOK IN protocol (welcome, ping/pong, broadcast, echo of the rest); echo: every message sent back as it came, nothing else (for conformance suites)."
                ),
            ),
        ] = Protocol.lokin.value,
    ) -> None:
        from lokin_doctor.server.origins import origin_problem

        if log_format not in {f.value for f in LogFormat}:
            _bad("--log-format", log_format, _("must be text or json"))
        if protocol not in {p.value for p in Protocol}:
            _bad("--protocol", protocol, _("must be lokin (the LOK IN protocol) or echo (pure echo)"))
        _count("--port", port, 0, 65535, N_(" (0 picks a free port)"))
        _count("--max-connections", max_connections, 1)
        _count("--max-per-ip", max_per_ip, 0, what=N_(" (0 = no cap)"))
        _count("--max-message-size", max_message_size, 1, what=N_(" (bytes)"))
        _count("--max-fragments", max_fragments, 1)
        _seconds("--open-timeout", open_timeout)
        _seconds("--shutdown-timeout", shutdown_timeout)
        interval = _seconds("--ping-interval", ping_interval, zero_is_off=True)
        timeout = _seconds("--ping-timeout", ping_timeout, zero_is_off=True)
        if keyfile and not certfile:
            message = _("--keyfile needs --certfile (the certificate of {keyfile})").format(keyfile=keyfile)
            raise UsageError(message, "--keyfile")
        if not host.strip():
            _bad("--host", repr(host), _("must not be empty (127.0.0.1 or 0.0.0.0)"))
        for origin in allow_origin or []:
            problem = origin_problem(origin)
            if problem:
                _bad("--allow-origin", origin, problem)

        _listenable("--host", host.strip())
        if certfile:
            _tls_files(certfile, keyfile)
        count = _workers(workers, redis)

        from lokin_doctor.server.config import ServerConfig
        from lokin_doctor.server.run import loop_factory, serve_until_signal, tune_gc_for_serving

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
            log_format=log_format,
            shutdown_timeout=shutdown_timeout,
            quiet=quiet,
            redis=redis,
            max_fragments=max_fragments,
            protocol=protocol,
        )
        if count > 1:
            from lokin_doctor.server.workers import run_workers

            raise typer.Exit(run_workers(config, count))
        import asyncio

        factory = loop_factory()
        tune_gc_for_serving()
        # A Ctrl-C before the signal handlers are in place reaches cli.main (exit 130).
        with asyncio.Runner(loop_factory=factory) as runner:  # type: ignore[arg-type]
            code = runner.run(serve_until_signal(config, tune_gc=True))
        raise typer.Exit(code)
