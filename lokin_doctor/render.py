"""Output: the terminal report (rich) and the JSON report. The only module of the checklist that imports rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import IO, Any

from lokin_doctor import __version__
from lokin_doctor.model import Report, Status

SCHEMA = 1
MARKS = {
    Status.OK: ("✓", "green"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✗", "red"),
    Status.SKIP: ("-", "dim"),
}


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": "lokin-doctor",
        "version": __version__,
        "target": report.target,
        "status": report.status.value,
        "root_cause": report.root_cause.to_dict() if report.root_cause else None,
        "checks": [r.to_dict() for r in report.results],
        "duration_ms": round(report.duration_ms, 1),
    }


def to_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, default=str, ensure_ascii=False)


def make_console(file: IO[str] | None = None, width: int | None = None) -> Any:
    from rich.console import Console

    # rich honours NO_COLOR and drops styles when the output is not a terminal; lines are not
    # wrapped when piped, so grep and CI logs see one line per check.
    out = file or sys.stdout
    return Console(file=out, width=width, highlight=False, soft_wrap=not out.isatty())


def _fmt_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_fmt_value(v) for v in value)
    return str(value)


def print_report(report: Report, verbose: bool = False, console: Any = None) -> None:
    from rich.markup import escape
    from rich.text import Text

    con = console or make_console()
    con.print(Text(f"lokin-doctor {__version__} — {report.target}", style="bold"))
    counts = {s: 0 for s in Status}
    for r in report.results:
        if r.evidence.get("applicable") is False and not verbose:
            continue  # e.g. tls on a ws:// target: noise unless asked for
        counts[r.status] += 1
        mark, style = MARKS[r.status]
        line = Text()
        line.append(f" {mark} ", style=f"bold {style}")
        line.append(f"{r.id:<12}", style="bold")
        line.append(r.summary, style="dim" if r.status is Status.SKIP else "")
        if r.code:
            line.append(f"  [{r.code}]", style=style)
        con.print(line)
        if r.hint and r.status in (Status.WARN, Status.FAIL):
            for i, hint_line in enumerate(r.hint.splitlines()):
                prefix = "     → " if i == 0 else "       "
                con.print(Text(prefix + hint_line, style=style))
        if verbose and r.evidence:
            for key, value in r.evidence.items():
                con.print(f"       [dim]{escape(key)}:[/dim] {escape(_fmt_value(value))}")
    ran = counts[Status.OK] + counts[Status.WARN] + counts[Status.FAIL]
    passed = counts[Status.OK] + counts[Status.WARN]
    con.print()
    tally = f"{passed}/{ran} checks passed" + (
        f", {counts[Status.WARN]} warning(s)" if counts[Status.WARN] else ""
    )
    tally += f", {counts[Status.SKIP]} skipped" if counts[Status.SKIP] else ""
    tally += f" in {report.duration_ms:.0f} ms"
    if report.root_cause is not None:
        rc = report.root_cause
        con.print(Text(f"✗ Root cause ({rc.check}, {rc.code}): {rc.summary}", style="bold red"))
        for i, hint_line in enumerate(rc.hint.splitlines()):
            con.print(Text(("  Fix: " if i == 0 else "       ") + hint_line, style="red"))
        con.print(Text(tally, style="dim"))
    elif report.status is Status.WARN:
        con.print(Text(f"! Reachable, with warnings: {tally}", style="bold yellow"))
    else:
        con.print(
            Text(f"✓ All good: the WebSocket server at {report.target} answers. {tally}", style="bold green")
        )


def print_check_list(checks: Iterable[Any], console: Any = None) -> None:
    from rich.text import Text

    con = console or make_console()
    for spec in checks:
        needs = ", ".join((*spec.requires, *spec.after)) or "-"
        line = Text()
        line.append(f"{spec.id:<13}", style="bold")
        line.append(spec.title)
        line.append(f"  (after: {needs}{'; this machine only' if spec.local_only else ''})", style="dim")
        con.print(line)
