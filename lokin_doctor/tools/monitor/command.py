"""``lokin-doctor monitor``: a live view of the server process, its connections and its /health.

Only typer and the standard library are imported here; psutil and rich load inside the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lokin_doctor.i18n import N_, _

MONITOR_HELP = N_(
    """Live view: server process (pid, uptime, RSS, CPU), ESTABLISHED connections, listening sockets, /health.

What the write-up did with netstat, lsof and pm2 monit. Exit 0; with --once, 1 when nothing listens
on the port; 130 on Ctrl-C."""
)


def register(app: typer.Typer) -> None:
    app.command("monitor", help=_(MONITOR_HELP))(monitor_command)


def monitor_command(
    port: Annotated[int, typer.Option("--port", "-p", help=_("The WebSocket server's port."))] = 8080,
    interval: Annotated[float, typer.Option("--interval", help=_("Seconds between refreshes."))] = 1.0,
    count: Annotated[
        int | None, typer.Option("--count", help=_("Stop after this many refreshes (default: until Ctrl-C)."))
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help=_("One snapshot, then exit (1 if nothing listens)."))
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help=_("JSON on stdout (one document with --once, else one line per refresh).")
        ),
    ] = False,
    health: Annotated[
        bool,
        typer.Option(
            "--health/--no-health", help=_("GET http://127.0.0.1:PORT/health when the port listens.")
        ),
    ] = True,
) -> None:
    from lokin_doctor import validate
    from lokin_doctor.tools.monitor.view import main

    if not 1 <= port <= 65535:
        raise validate.UsageError(_("--port must be 1-65535, not {port}").format(port=port), "--port")

    problem = validate.number("--interval", interval, high=3600)
    if problem is None and count is not None and count < 1:
        problem = _("--count must be at least 1, not {count}").format(count=count)
    if problem is not None:
        raise validate.UsageError(problem)
    raise typer.Exit(
        main(port=port, interval=interval, count=count, once=once, json_out=json_out, health=health)
    )
