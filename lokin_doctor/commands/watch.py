"""``lokin-doctor watch URL``: stay connected like the fixed browser client, retry with its policy, say why.

Only typer and the standard library are imported here; the engine loads inside the command.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)


def watch_command(
    url: Annotated[
        str | None,
        typer.Argument(
            envvar="LOKIN_URL",
            show_default="ws://localhost:8080/",
            help="WebSocket URL (ws://, wss://, http(s)://, host:port, port).",
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option("--retries", help="Retries after a failed attempt or a disconnect (script.js: 5).")
    ] = 5,
    delay: Annotated[
        float, typer.Option("--delay", help="Seconds before the first retry (script.js: 2.0).")
    ] = 2.0,
    factor: Annotated[
        float, typer.Option("--factor", help="Each retry waits delay * factor^(n-1) (script.js: 1.5).")
    ] = 1.5,
    forever: Annotated[
        bool, typer.Option("--forever", help="Never give up (each wait capped by --max-delay).")
    ] = False,
    max_delay: Annotated[
        float, typer.Option("--max-delay", help="Longest wait between retries, seconds.")
    ] = 30.0,
    max_time: Annotated[
        float | None,
        typer.Option("--max-time", help="Stop after this many seconds (exit 0 if connected then)."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", "-t", help="Seconds each attempt (DNS, connect, handshake) may take."),
    ] = 5.0,
    origin: Annotated[
        str | None, typer.Option("--origin", help="Origin header to send (as the page would).")
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option("--ca-file", help="PEM file of CA certificates to trust.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", "-k", help="Do not verify the certificate.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="JSON lines on stdout: one per event, then the summary.")
    ] = False,
) -> None:
    """Connect like the browser client, show the greeting, retry with its backoff and diagnose each failure.

    Exit 0 when it ended connected, 1 when it gave up (or --max-time ended it disconnected), 2 usage,
    130 on Ctrl-C (after the summary).
    """
    from lokin_doctor.tools.common import ToolError

    if url is not None and not url.strip():
        sys.stderr.write(
            "lokin-doctor: error: empty URL argument (or LOKIN_URL); give a target such as "
            "ws://localhost:8080/, or leave it out for the default\n"
        )
        raise typer.Exit(2)
    from lokin_doctor.tools.watchui import main

    try:
        code = main(
            url or "ws://localhost:8080/",
            retries=retries,
            delay=delay,
            factor=factor,
            forever=forever,
            max_delay=max_delay,
            max_time=max_time,
            timeout=timeout,
            origin=origin,
            ca_file=ca_file,
            insecure=insecure,
            json_out=json_out,
        )
    except ToolError as exc:
        sys.stderr.write(f"lokin-doctor: error: {exc}\n")
        raise typer.Exit(2) from None
    raise typer.Exit(code)
