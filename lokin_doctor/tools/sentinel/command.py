"""``lokin-doctor sentinel URL... --every SECONDS`` and ``lokin-doctor history``.

``sentinel`` takes every option of ``all`` (the table of :mod:`lokin_doctor.options`, validated once by
``build_settings``) plus its own; every value is checked before any traffic and before the history is opened
(exit 2, one line naming the option). Only typer and the standard library are imported here; the engine loads
inside the command.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lokin_doctor.i18n import N_, _
from lokin_doctor.options import (
    ALL,
    SETTING_BY_PARAM,
    DebugOpt,
    OptionSpec,
    TargetsOpt,
    UrlsArg,
    settings_keywords,
    signature_command,
)
from lokin_doctor.tools.sentinel import values as parse
from lokin_doctor.validate import UsageError

SENTINEL_HELP = N_(
    """Diagnose the targets at an interval, keep every run in a history, alert on a change.

Each run is the whole checklist of 'all' (same options). The history (SQLite) keeps the root cause of each
failure; 'lokin-doctor history' lists the incidents. Exit 0 after SIGTERM, 130 after Ctrl-C; with --count,
0 when every target's last run was healthy, 1 otherwise; 2 usage."""
)
HISTORY_HELP = N_(
    """The sentinel's history: incidents (start, end, length, root cause, first failing check) and recent runs;
one past run in full with --run ID (in every format of 'all')."""
)

HistoryOpt = Annotated[
    str | None,
    typer.Option(
        "--history",
        metavar="FILE",
        help=_(
            "The history file (SQLite). Default: $XDG_DATA_HOME/lokin-doctor/history.sqlite, else "
            "~/.local/share/lokin-doctor/history.sqlite."
        ),
    ),
]

_OWN: tuple[OptionSpec, ...] = (
    OptionSpec("targets", TargetsOpt, None),
    OptionSpec(
        "every",
        Annotated[
            float, typer.Option("--every", metavar="SECONDS", help=_("Seconds between runs (1 or more)."))
        ],
        60.0,
    ),
    OptionSpec(
        "jitter",
        Annotated[
            str,
            typer.Option(
                "--jitter",
                metavar="FRACTION",
                help=_(
                    "Spread each interval by up to this fraction of --every, either way (0.1 or 10%; 0 off)."
                ),
            ),
        ],
        "10%",
    ),
    OptionSpec(
        "count",
        Annotated[
            int | None,
            typer.Option(
                "--count", help=_("Stop after this many runs of each target (default: until stopped).")
            ),
        ],
        None,
    ),
    OptionSpec("history", HistoryOpt, None),
    OptionSpec(
        "keep",
        Annotated[
            str,
            typer.Option(
                "--keep",
                metavar="AGE,SIZE",
                help=_(
                    "Prune the history after each run: runs older than an age (30d, 12h) and/or the oldest "
                    "beyond a size (500MB); 'all' keeps everything."
                ),
            ),
        ],
        "30d",
    ),
    OptionSpec(
        "confirm",
        Annotated[
            int,
            typer.Option(
                "--confirm",
                metavar="N",
                help=_(
                    "A target is down after N failing runs in a row (one blip is not an outage); the first "
                    "healthy run ends the outage."
                ),
            ),
        ],
        2,
    ),
    OptionSpec(
        "webhook",
        Annotated[
            str | None,
            typer.Option(
                "--webhook",
                metavar="URL",
                help=_("POST each change of state (down, back up) to this URL as JSON."),
            ),
        ],
        None,
    ),
    OptionSpec(
        "webhook_format",
        Annotated[
            str,
            typer.Option(
                "--webhook-format",
                metavar="json|slack",
                help=_('json (every field), or slack: {"text": ...} as Slack and Mattermost take it.'),
            ),
        ],
        "json",
    ),
    OptionSpec(
        "on_change",
        Annotated[
            str | None,
            typer.Option(
                "--on-change",
                metavar="CMD",
                help=_(
                    "Run this command (split like a shell line, no shell) at each change: the JSON report on "
                    "its stdin, LOKIN_TARGET, LOKIN_STATE, LOKIN_PREVIOUS_STATE, LOKIN_CODE, LOKIN_RUN_ID set."
                ),
            ),
        ],
        None,
    ),
    OptionSpec(
        "metrics_port",
        Annotated[
            int | None,
            typer.Option(
                "--metrics-port",
                metavar="PORT",
                help=_(
                    "Serve Prometheus metrics (/metrics) and the status page (/) on this port (0: any free)."
                ),
            ),
        ],
        None,
    ),
    OptionSpec(
        "metrics_host",
        Annotated[
            str,
            typer.Option("--metrics-host", metavar="ADDR", help=_("The address --metrics-port listens on.")),
        ],
        "127.0.0.1",
    ),
    OptionSpec(
        "quiet",
        Annotated[
            bool,
            typer.Option("--quiet", "-q", help=_("Print only the changes of state, not one line per run.")),
        ],
        False,
    ),
    OptionSpec(
        "only",
        Annotated[
            list[str] | None,
            typer.Option("--only", help=_("Run only these checks (and what they need); repeatable.")),
        ],
        None,
    ),
    OptionSpec("debug", DebugOpt, False),
    OptionSpec(
        "seed",
        Annotated[int | None, typer.Option("--seed", hidden=True, help="The jitter's random seed (tests).")],
        None,
    ),
)


def register(app: typer.Typer) -> None:
    setting_specs = [SETTING_BY_PARAM[p] for p in ALL]
    specs = [setting_specs[0], *_OWN, *setting_specs[1:]]

    def body(values: dict[str, Any]) -> None:
        raise typer.Exit(sentinel(values, settings_keywords(setting_specs, values)))

    app.command("sentinel", help=_(SENTINEL_HELP))(
        signature_command("sentinel_command", UrlsArg, specs, body)
    )
    app.command("history", help=_(HISTORY_HELP))(history_command)


def sentinel(values: dict[str, Any], keywords: dict[str, Any]) -> int:
    """Validate everything, open the history, run the engine; the exit code."""
    from lokin_doctor import validate
    from lokin_doctor.settings import build_settings, read_targets

    every = values["every"]
    parse.check_value(
        validate.number("--every", every, low=1, low_ok=True, high=validate.MAX_SECONDS), "--every"
    )
    jitter = parse.parse_jitter(values["jitter"])
    count = values["count"]
    if count is not None:
        parse.check_value(validate.integer("--count", count, low=1, high=10**9), "--count")
    parse.check_value(validate.integer("--confirm", values["confirm"], low=1, high=1000), "--confirm")
    keep_seconds, keep_bytes = parse.parse_keep(values["keep"])
    webhook = parse.webhook_url(values["webhook"]) if values["webhook"] is not None else None
    fmt = values["webhook_format"]
    if fmt not in ("json", "slack", "mattermost"):
        raise UsageError(
            _("invalid --webhook-format {value!r}; use json or slack (Slack and Mattermost)").format(
                value=fmt
            ),
            "--webhook-format",
        )
    on_change = parse.on_change_argv(values["on_change"]) if values["on_change"] is not None else None
    port = values["metrics_port"]
    if port is not None:
        parse.check_value(validate.integer("--metrics-port", port, low=0, high=65535), "--metrics-port")
    host = parse.metrics_host(values["metrics_host"])
    history = parse.history_path(values["history"])
    urls: list[str | None] = [*(values["url"] or [])]
    if values["targets"] is not None:
        urls += read_targets(values["targets"])
    settings = [build_settings(u, **keywords) for u in (urls or [None])]
    only = tuple(values["only"]) if values["only"] else None
    if only:
        from lokin_doctor.runner import UnknownCheckError, select_checks

        try:
            for s in settings:
                select_checks(s, only)
        except UnknownCheckError as exc:
            raise UsageError(str(exc), "--only") from None
    from lokin_doctor.tools.sentinel.engine import target_name

    names = [target_name(s) for s in settings]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise UsageError(_("the target {name} is given twice; give each target once").format(name=twice))

    from lokin_doctor.tools.sentinel.engine import SentinelConfig

    config = SentinelConfig(
        targets=tuple(settings),
        history=Path(history),
        every=every,
        jitter=jitter,
        count=count,
        keep_seconds=keep_seconds,
        keep_bytes=keep_bytes,
        confirm=values["confirm"],
        webhook=webhook,
        webhook_format="slack" if fmt == "mattermost" else fmt,
        on_change=on_change,
        metrics_port=port,
        metrics_host=host,
        only=only,
        debug=values["debug"],
        seed=values["seed"],
        names=tuple(names),
    )
    return _run_sentinel(config, quiet=values["quiet"])


def _run_sentinel(config: Any, *, quiet: bool) -> int:
    import asyncio

    from lokin_doctor import environment
    from lokin_doctor.tools.sentinel import view
    from lokin_doctor.tools.sentinel.engine import Events, run_sentinel
    from lokin_doctor.tools.sentinel.history import History

    env = environment.current()
    history = History(config.history)  # HistoryError: one line, exit 1, before any traffic
    runs = 0

    def err(line: str) -> None:
        env.stderr.write("lokin-doctor: " + line + "\n")
        env.stderr.flush()

    def on_run(run: Any, change: Any) -> None:
        nonlocal runs
        runs += 1
        if quiet and change is None:
            return
        env.stdout.write(view.run_line(run, change) + "\n")
        env.stdout.flush()

    def on_started(port: int | None) -> None:
        page = None
        if port is not None:
            host = config.metrics_host
            page = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        err(view.started_line(list(config.names), config.every, str(config.history), page))

    events = Events(
        run=on_run, problem=lambda line: err(_("sentinel: {line}").format(line=line)), started=on_started
    )
    try:
        code = asyncio.run(run_sentinel(config, events, history))
    finally:
        history.close()
    why = {0: _("done"), 1: _("done"), 130: _("interrupted")}.get(code, str(code))
    err(view.stopped_line(runs, why))
    return code


# -- history ------------------------------------------------------------------------------------------------


def history_command(
    history: HistoryOpt = None,
    json_out: Annotated[
        bool, typer.Option("--json", help=_("The incidents and runs as JSON (or --run ID's report)."))
    ] = False,
    target: Annotated[str | None, typer.Option("--target", help=_("Only this target (its URL)."))] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help=_("From this time: ISO (2026-12-03T06:00) or an age back (2h, 7d).")),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help=_("Up to this time: ISO or an age back (2h, 7d)."))
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(
            "--code", help=_("Only incidents and runs with this root cause (tcp.refused, or a layer: tcp).")
        ),
    ] = None,
    run_id: Annotated[
        int | None, typer.Option("--run", metavar="ID", help=_("Show this run in full."))
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="text|json|junit|markdown",
            help=_("With --run: the report's format (as 'all' prints it); else text or json."),
        ),
    ] = "text",
    limit: Annotated[
        int, typer.Option("--limit", help=_("How many recent runs to list under the incidents."))
    ] = 10,
) -> None:
    from lokin_doctor import environment, validate
    from lokin_doctor.formats import FORMATS

    now = time.time()
    if fmt not in FORMATS:
        raise UsageError(
            _("invalid --format {value!r}; use one of {formats}").format(
                value=fmt, formats=", ".join(FORMATS)
            ),
            "--format",
        )
    if json_out and fmt not in ("text", "json"):
        raise UsageError(
            _("--json is short for --format json; give one of them, not --json with --format {fmt}").format(
                fmt=fmt
            ),
            "--format",
        )
    fmt = "json" if json_out else fmt
    if run_id is None and fmt not in ("text", "json"):
        raise UsageError(
            _("--format {fmt} shows one run: give --run ID (the list is text or json)").format(fmt=fmt),
            "--format",
        )
    if run_id is not None:
        parse.check_value(validate.integer("--run", run_id, low=1, high=2**62), "--run")
        if any(v is not None for v in (target, since, until, code)):
            raise UsageError(
                _("--run shows one run; give it without --target, --since, --until or --code"), "--run"
            )
    parse.check_value(validate.integer("--limit", limit, low=0, high=10**6), "--limit")
    start = parse.parse_time(since, "--since", now) if since is not None else None
    end = parse.parse_time(until, "--until", now) if until is not None else None
    if start is not None and end is not None and start > end:
        raise UsageError(_("--since is after --until; swap them"), "--since")
    if code is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", code.strip()):
        raise UsageError(
            _("invalid --code {value!r}; a cause code looks like tcp.refused (see explain --list)").format(
                value=code
            ),
            "--code",
        )
    path = parse.history_path(history)
    from lokin_doctor.tools.sentinel.history import History, HistoryError

    if not os.path.exists(path):
        raise HistoryError(
            _("no history at {path}: start lokin-doctor sentinel first, or give its --history").format(
                path=path
            )
        )
    from lokin_doctor.tools.sentinel import view

    env = environment.current()
    with History(path) as hist:
        if run_id is not None:
            found = hist.run(run_id)
            if found is None:
                raise HistoryError(_("no run #{id} in the history {path}").format(id=run_id, path=path))
            env.stdout.write(view.run_report(found, fmt, colors=env.colors))
            return
        names = hist.targets()
        if target is not None:
            target = _known_target(target.strip(), names)
        code = code.strip() if code is not None else None
        incidents = hist.incidents(target=target, since=start, until=end, code=code)
        runs = hist.runs(target=target, since=start, until=end, code=code, limit=limit)
        if fmt == "json":
            env.stdout.write(view.history_json(path, incidents, runs, now))
            return
        env.stdout.write(
            view.history_text(
                path,
                incidents,
                runs,
                now,
                total_runs=hist.count(),
                targets=names,
                filtered=any(v is not None for v in (target, since, until, code)),
            )
        )


def _known_target(target: str, names: list[str]) -> str:
    """The stored name of ``--target`` (as typed, or as the sentinel names that URL); usage error if none."""
    if target in names:
        return target
    try:
        from lokin_doctor.settings import build_settings
        from lokin_doctor.tools.sentinel.engine import target_name

        named = target_name(build_settings(target))
    except UsageError:
        named = target
    if named in names:
        return named
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "") if names else _("none yet")
    raise UsageError(
        _("--target {value!r} has no run in the history; its targets: {names}").format(
            value=target, names=shown
        ),
        "--target",
    )
