"""``lokin-doctor load`` around the engine: safety checks, the progress bar, the report, the thresholds."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from lokin_doctor.i18n import N_, _, ngettext
from lokin_doctor.tools.common import (
    ToolError,
    check_ephemeral_ports,
    pick_address,
    raise_fd_limit,
    require_loopback,
    resolve,
    uvloop_factory,
)
from lokin_doctor.tools.load.engine import LoadConfig, LoadRun, run_load

SCHEMA = 1
#: How often the progress bar is redrawn (it reads counters; the connections never touch it).
PROGRESS_S = 0.2


@dataclass(frozen=True)
class Thresholds:
    max_errors: int = 0
    max_p99_ms: float | None = None

    def check(self, figures: dict[str, Any]) -> list[str]:
        """Every threshold the figures break, one sentence each."""
        broken = []
        errors = figures["failures"]["total"]
        if errors > self.max_errors:
            codes = ", ".join(f"{c} x{n}" for c, n in figures["failures"]["by_code"].items())
            broken.append(
                ngettext(
                    "{errors} failed connection > --max-errors {max_errors} ({codes})",
                    "{errors} failed connections > --max-errors {max_errors} ({codes})",
                    errors,
                ).format(errors=errors, max_errors=self.max_errors, codes=codes)
            )
        if self.max_p99_ms is not None:
            for name, key in ((N_("handshake"), "handshake_ms"), (N_("echo round-trip"), "rtt_ms")):
                stats = figures[key] if key == "handshake_ms" else figures["echo"][key]
                p99 = stats.get("p99")
                if p99 is not None and p99 > self.max_p99_ms:
                    broken.append(
                        _("{name} p99 {p99:.1f} ms > --max-p99-ms {limit:g}").format(
                            name=_(name), p99=p99, limit=self.max_p99_ms
                        )
                    )
        return broken


def prepare(
    url: str, *, connections: int, allow_remote: bool, timeout: float
) -> tuple[Any, str, tuple[int, int]]:
    """Parse and resolve the target, refuse what is unsafe or cannot fit: (target, address, fd limits)."""
    from lokin_doctor.target import TargetError, parse_target

    try:
        target = parse_target(url)
    except TargetError as exc:
        raise ToolError(str(exc)) from None
    if target.secure:
        raise ToolError(
            _("load speaks ws:// only (test the server behind its TLS proxy, or its own ws:// port)")
        )
    addresses = resolve(target.host, target.port)
    require_loopback(target.host, addresses, allow_remote, _("a load test"))
    limits = raise_fd_limit(connections)
    check_ephemeral_ports(connections)
    address = (
        pick_address(addresses, target.port, timeout=min(timeout, 1.0))
        if len(addresses) > 1
        else addresses[0]
    )
    return target, address, limits


#: Seconds between two lines of the plain progress (``--progress`` when stderr is not a terminal).
LINE_PROGRESS_S = 1.0


def progress_mode(progress: bool | None, json_out: bool) -> str | None:
    """``bar`` (rich, on a terminal), ``lines`` (plain text: --progress on a pipe, a log, TERM=dumb) or None."""
    if json_out or progress is False:
        return None
    terminal = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    if progress is None:
        return "bar" if terminal else None
    return "bar" if terminal else "lines"


def _phase_figures(run: LoadRun, hold_elapsed: float) -> tuple[str, float, float]:
    """(phase label, done, total) for the progress display."""
    cfg = run.config
    if run.phase == "hold":
        return "holding", round(min(cfg.duration, hold_elapsed), 1), max(cfg.duration, 0.001)
    if run.phase == "echo":
        return "echo", run.echo_received, max(1, run.opened * cfg.messages)
    if run.phase == "close":
        return "closing", run.settled, cfg.connections
    return "connecting", run.settled, cfg.connections


class _LineProgress:
    """Plain progress lines on stderr, no escape codes: one per phase change and every LINE_PROGRESS_S."""

    def __init__(self, run: LoadRun) -> None:
        self.run = run
        self.last: tuple[str, float] | None = None
        self.hold_start = 0.0

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        run = self.run
        if run.phase == "hold" and not self.hold_start:
            self.hold_start = now
        label, done, total = _phase_figures(run, now - self.hold_start)
        if self.last is not None and self.last[0] == label and now - self.last[1] < LINE_PROGRESS_S:
            return
        self.last = (label, now)
        sys.stderr.write(f"load: {label:<10} {done:g}/{total:g}  open {run.open_now}  failed {run.failed}\n")
        sys.stderr.flush()


class _Progress:
    """A rich progress bar on stderr, redrawn from the counters every PROGRESS_S."""

    def __init__(self, run: LoadRun) -> None:
        from rich.console import Console  # noqa: TID251 - the load progress is a live view
        from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn  # noqa: TID251

        self.run = run
        no_color = os.environ.get("NO_COLOR") is not None
        bar: Any = BarColumn()
        if no_color:

            class AsciiBar(ProgressColumn):
                """``[#####-----]``: reads without colour, where rich's bar is one solid line."""

                def render(self, task: Any) -> Any:
                    from rich.text import Text  # noqa: TID251

                    width = 20
                    done = 0 if not task.total else min(width, round(width * task.completed / task.total))
                    return Text("[" + "#" * done + "-" * (width - done) + "]")

            bar = AsciiBar()
        self.progress = Progress(
            TextColumn("{task.description:<10}"),
            bar,
            TextColumn("{task.completed:>7g}/{task.total:g}"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True, no_color=no_color or None),
            auto_refresh=False,
            transient=True,
        )
        cfg = run.config
        self.task = self.progress.add_task("connecting", total=cfg.connections, info="")
        self.phase = "ramp"
        self.hold_start = 0.0

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self) -> None:
        run, cfg = self.run, self.run.config
        loop = asyncio.get_running_loop()
        if run.phase != self.phase:
            self.phase = run.phase
            if run.phase == "hold":
                self.hold_start = loop.time()
                self.progress.update(
                    self.task, description="holding", total=max(cfg.duration, 0.001), completed=0
                )
            elif run.phase == "echo":
                self.progress.update(
                    self.task, description="echo", total=max(1, run.opened * cfg.messages), completed=0
                )
            elif run.phase == "close":
                self.progress.update(self.task, description="closing")
        info = f"open {run.open_now}  failed {run.failed}"
        if self.phase == "ramp":
            self.progress.update(self.task, completed=run.settled, info=info)
        elif self.phase == "hold":
            self.progress.update(
                self.task, completed=round(min(cfg.duration, loop.time() - self.hold_start), 1), info=info
            )
        elif self.phase == "echo":
            self.progress.update(self.task, completed=run.echo_received, info=info)
        self.progress.refresh()


async def _drive(config: LoadConfig, run: LoadRun, show_progress: str | None) -> LoadRun:
    if not show_progress:
        return await run_load(config, run=run)
    display: _LineProgress | _Progress = _LineProgress(run) if show_progress == "lines" else _Progress(run)
    with display as bar:
        main = asyncio.ensure_future(run_load(config, run=run))
        try:
            while not main.done():
                bar.update()
                await asyncio.wait({main}, timeout=PROGRESS_S)
        except asyncio.CancelledError:
            main.cancel()
            await asyncio.wait({main}, timeout=config.timeout + 5.0)
            raise
        return main.result()


def figures_dict(run: LoadRun, thresholds: Thresholds) -> dict[str, Any]:
    from lokin_doctor import __version__

    figures = run.to_dict()
    broken = thresholds.check(figures)
    return {
        "schema": SCHEMA,
        "tool": "lokin-doctor load",
        "version": __version__,
        **figures,
        "thresholds": {
            "max_errors": thresholds.max_errors,
            "max_p99_ms": thresholds.max_p99_ms,
            "passed": not broken,
            "broken": broken,
        },
    }


def _ms(stats: dict[str, Any]) -> str:
    if not stats.get("count"):
        return "-"
    return "  ".join(f"{k} {stats[k]:.1f}" for k in ("p50", "p95", "p99", "max")) + " ms"


def render_text(doc: dict[str, Any]) -> str:
    from lokin_doctor.i18n import _

    def row(label: str, text: str) -> str:
        return f"  {label:<13} {text}"

    conns, cfg = doc["connections"], doc["config"]
    ramp, echo, dropped = doc["ramp"], doc["echo"], doc["dropped"]
    opened = _("{opened}/{requested} opened, {failed} failed").format(
        opened=conns["opened"], requested=conns["requested"], failed=conns["failed"]
    )
    if ramp["handshakes_per_s"]:
        opened += _(", ramp {seconds} s = {rate} handshakes/s").format(
            seconds=f"{ramp['seconds']:.2f}", rate=f"{ramp['handshakes_per_s']:.0f}"
        )
    held = _("{seconds} s, dropped by the server while held: {n}").format(
        seconds=f"{doc['hold']['seconds']:.1f}", n=dropped["while_held"]
    )
    if dropped["by_close_code"]:
        codes = ", ".join(f"{k} x{v}" for k, v in dropped["by_close_code"].items())
        held += " " + _("(close codes: {codes})").format(codes=codes)
    lines = [
        _("load test of {target} ({address}), engine {engine} on {loop}").format(
            target=doc["target"], address=doc["address"], engine=cfg["engine"], loop=cfg["loop"]
        ),
        row(_("connections"), opened),
        row(_("handshake"), _ms(doc["handshake_ms"])),
        row(_("greeting"), _ms(doc["greeting_ms"])),
        row(_("held"), held),
    ]
    if cfg["messages"]:
        rate = f"{echo['messages_per_s']:.0f} msg/s" if echo["messages_per_s"] else "-"
        text = _(
            "{received}/{expected} round trips in {seconds} s = {rate}, dropped during echo: {n}"
        ).format(
            received=echo["received"],
            expected=echo["expected"],
            seconds=f"{echo['seconds']:.2f}",
            rate=rate,
            n=dropped["during_echo"],
        )
        lines.append(row(_("echo"), text))
        lines.append(row(_("round trip"), _ms(echo["rtt_ms"])))
        if echo["other_messages"]:
            text = _("{n} messages that were not echoes (broadcasts?)").format(n=echo["other_messages"])
            lines.append(row(_("other msgs"), text))
    failures = doc["failures"]
    if failures["total"]:
        lines.append(row(_("failures"), str(failures["total"])))
        for code, n in failures["by_code"].items():
            ex = failures["examples"][code]
            lines.append(f"    {code} x{n}: {ex['summary']}")
            lines.append("      " + _("fix: {hint}").format(hint=ex["hint"]))
    th = doc["thresholds"]
    if doc.get("interrupted"):
        lines.append(row(_("result"), _("interrupted")))
    elif th["passed"]:
        lines.append(row(_("result"), "PASS"))
    else:
        lines.append(row(_("result"), "FAIL: " + "; ".join(th["broken"])))
    return "\n".join(lines)


def main(
    url: str,
    *,
    connections: int,
    rate: float,
    concurrency: int,
    duration: float,
    messages: int,
    message_size: int,
    timeout: float,
    origin: str | None,
    allow_remote: bool,
    max_errors: int,
    max_p99_ms: float | None,
    json_out: bool,
    progress: bool | None,
    engine: str,
    use_uvloop: bool,
    compression: bool = False,
) -> int:
    """Run the load test; the exit code (0 pass, 1 thresholds broken, 2 usage, 130 interrupted)."""
    if max_errors < 0:
        raise ToolError(_("--max-errors must be >= 0"))
    if max_p99_ms is not None:
        from lokin_doctor import validate

        problem = validate.number("--max-p99-ms", max_p99_ms, high=3_600_000, unit="milliseconds")
        if problem:
            raise ToolError(problem)
    target, address, _limits = prepare(
        url, connections=connections, allow_remote=allow_remote, timeout=timeout
    )
    try:
        config = LoadConfig(
            target=target,
            address=address,
            connections=connections,
            rate=rate,
            concurrency=concurrency,
            duration=duration,
            messages=messages,
            message_size=message_size,
            timeout=timeout,
            origin=origin,
            engine=engine,
            compression=compression,
        )
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    thresholds = Thresholds(max_errors=max_errors, max_p99_ms=max_p99_ms)
    show = progress_mode(progress, json_out)
    run = LoadRun(config)
    interrupted = False
    with asyncio.Runner(loop_factory=uvloop_factory(use_uvloop)) as runner:
        try:
            runner.run(_drive(config, run, show))
        except (KeyboardInterrupt, asyncio.CancelledError):
            interrupted = True
            run.interrupted = True
    doc = figures_dict(run, thresholds)
    if json_out:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(render_text(doc) + "\n")
    sys.stdout.flush()
    if interrupted:
        return 130
    return 0 if doc["thresholds"]["passed"] else 1
