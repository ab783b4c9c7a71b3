"""``lokin-doctor watch URL``: stay connected like the fixed browser client, retry with its policy, say why.

Only typer and the standard library are imported here; the engine loads inside the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lokin_doctor.i18n import N_, _

WATCH_HELP = N_(
    """Connect like the browser client, show the greeting, retry with its backoff and diagnose each failure.

Exit 0 when it ended connected, 1 when it gave up (or --max-time ended it disconnected), 2 usage,
130 on Ctrl-C or SIGTERM (after the summary)."""
)


def register(app: typer.Typer) -> None:
    app.command("watch", help=_(WATCH_HELP))(watch_command)


def watch_command(
    url: Annotated[
        str | None,
        typer.Argument(
            envvar="LOKIN_URL",
            show_envvar=False,
            show_default=False,
            help=_(
                "WebSocket URL (ws://, wss://, http(s)://, host:port, port); "
                "default: $LOKIN_URL, else ws://localhost:8080/."
            ),
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option("--retries", help=_("Retries after a failed attempt or a disconnect (script.js: 5).")),
    ] = 5,
    delay: Annotated[
        float, typer.Option("--delay", help=_("Seconds before the first retry (script.js: 2.0)."))
    ] = 2.0,
    factor: Annotated[
        float, typer.Option("--factor", help=_("Each retry waits delay * factor^(n-1) (script.js: 1.5)."))
    ] = 1.5,
    forever: Annotated[
        bool, typer.Option("--forever", help=_("Never give up (each wait capped by --max-delay)."))
    ] = False,
    max_delay: Annotated[
        float, typer.Option("--max-delay", help=_("Longest wait between retries, seconds."))
    ] = 30.0,
    max_time: Annotated[
        float | None,
        typer.Option("--max-time", help=_("Stop after this many seconds (exit 0 if connected then).")),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", "-t", help=_("Seconds each attempt (DNS, connect, handshake) may take.")),
    ] = 5.0,
    origin: Annotated[
        str | None, typer.Option("--origin", help=_("Origin header to send (as the page would)."))
    ] = None,
    ca_file: Annotated[
        str | None, typer.Option("--ca-file", help=_("PEM file of CA certificates to trust."))
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", "-k", help=_("Do not verify the certificate."))
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help=_("JSON lines on stdout: one per event, then the summary."))
    ] = False,
) -> None:
    from lokin_doctor import validate

    problem = validate.url_argument(url)
    if problem is not None:
        raise validate.UsageError(problem)
    from lokin_doctor.tools.watch.view import main

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
    raise typer.Exit(code)
