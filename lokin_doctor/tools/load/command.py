"""``lokin-doctor load URL``: open N WebSocket connections, hold them, echo, report percentiles and failures.

Only typer and the standard library are imported here; the engine loads inside the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lokin_doctor.i18n import N_, _

LOAD_HELP = N_(
    """Load-test a WebSocket server: N connections, hold, echo; latency percentiles, failures by cause code.

Exit 0 within the thresholds, 1 when --max-errors or --max-p99-ms is broken, 2 usage, 130 interrupted."""
)


def register(app: typer.Typer) -> None:
    app.command("load", help=_(LOAD_HELP))(load_command)


def load_command(
    url: Annotated[
        str | None,
        typer.Argument(
            envvar="LOKIN_URL",
            show_envvar=False,
            show_default=False,
            help=_(
                "WebSocket URL to load (ws://, loopback unless --allow-remote); "
                "default: $LOKIN_URL, else ws://localhost:8080/."
            ),
        ),
    ] = None,
    connections: Annotated[
        int, typer.Option("--connections", "-n", help=_("Concurrent connections to open."))
    ] = 100,
    rate: Annotated[
        float,
        typer.Option(
            "--rate", help=_("Handshakes per second while ramping up (0: as fast as --concurrency allows).")
        ),
    ] = 500.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help=_("Handshakes in flight at most while ramping up."))
    ] = 100,
    duration: Annotated[
        float, typer.Option("--duration", help=_("Seconds to hold the connections open, idle."))
    ] = 5.0,
    messages: Annotated[
        int, typer.Option("--messages", help=_("Echo round trips per connection, after the hold."))
    ] = 10,
    message_size: Annotated[
        int, typer.Option("--message-size", help=_("Bytes per echo message (text)."))
    ] = 32,
    timeout: Annotated[
        float,
        typer.Option("--timeout", "-t", help=_("Seconds each handshake+greeting, and each echo, may take.")),
    ] = 10.0,
    origin: Annotated[str | None, typer.Option("--origin", help=_("Origin header to send."))] = None,
    compression: Annotated[
        bool,
        typer.Option(
            "--compression", help=_("Offer permessage-deflate, as browsers do (the server decides).")
        ),
    ] = False,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help=_("Allow a target that is not this machine (loopback)."))
    ] = False,
    max_errors: Annotated[
        int, typer.Option("--max-errors", help=_("Exit 1 when more connections than this fail."))
    ] = 0,
    max_p99_ms: Annotated[
        float | None,
        typer.Option(
            "--max-p99-ms", help=_("Exit 1 when the handshake or echo round-trip p99 exceeds this (ms).")
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help=_("Print the JSON report on stdout, nothing else."))
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help=_("Progress bar on stderr (default: when stderr is a terminal).")
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help=_("Client engine: sansio (light) or websockets (asyncio client)."), hidden=True
        ),
    ] = "sansio",
    use_uvloop: Annotated[
        bool, typer.Option("--uvloop/--no-uvloop", help=_("Use uvloop when installed."), hidden=True)
    ] = True,
) -> None:
    from lokin_doctor import validate

    problem = validate.url_argument(url)
    if problem is not None:
        raise validate.UsageError(problem)
    from lokin_doctor.tools.load.view import main

    code = main(
        url or "ws://localhost:8080/",
        connections=connections,
        rate=rate,
        concurrency=concurrency,
        duration=duration,
        messages=messages,
        message_size=message_size,
        timeout=timeout,
        origin=origin,
        allow_remote=allow_remote,
        max_errors=max_errors,
        max_p99_ms=max_p99_ms,
        json_out=json_out,
        progress=progress,
        engine=engine,
        use_uvloop=use_uvloop,
        compression=compression,
    )
    raise typer.Exit(code)
