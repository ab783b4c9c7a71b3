"""Output: the terminal report (rich) and the JSON report. The only module of the checklist that imports rich.

JUnit and Markdown live in :mod:`lokin_doctor.formats`. Headings and summary lines go through
:mod:`lokin_doctor.i18n`; JSON keys, statuses and cause codes never do.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from lokin_doctor import __version__
from lokin_doctor.i18n import _, ngettext
from lokin_doctor.model import Report, Status

#: Schema of a one-target JSON report; several targets give :data:`SCHEMA_MANY` (docs/report.md).
SCHEMA = 1
SCHEMA_MANY = 2
MARKS = {
    Status.OK: ("✓", "green"),
    Status.WARN: ("!", "yellow"),
    Status.FAIL: ("✗", "red"),
    Status.SKIP: ("-", "dim"),
}


def _target_dict(report: Report) -> dict[str, Any]:
    return {
        "target": report.target,
        "status": report.status.value,
        "root_cause": report.root_cause.to_dict() if report.root_cause else None,
        "checks": [r.to_dict() for r in report.results],
        "duration_ms": round(report.duration_ms, 1),
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {"schema": SCHEMA, "tool": "lokin-doctor", "version": __version__, **_target_dict(report)}


def reports_dict(reports: Sequence[Report]) -> dict[str, Any]:
    """Schema 2: several targets, one entry each (the entry is a schema-1 report without its header)."""
    worst = max((r.status for r in reports), key=lambda s: s.rank, default=Status.OK)
    return {
        "schema": SCHEMA_MANY,
        "tool": "lokin-doctor",
        "version": __version__,
        "status": worst.value,
        "targets": [_target_dict(r) for r in reports],
        "duration_ms": round(max((r.duration_ms for r in reports), default=0.0), 1),
    }


def to_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, default=str, ensure_ascii=False)


def to_json_many(reports: Sequence[Report]) -> str:
    return json.dumps(reports_dict(reports), indent=2, default=str, ensure_ascii=False)


def make_console(file: IO[str] | None = None, width: int | None = None) -> Any:
    from rich.console import Console

    # rich honours NO_COLOR and drops styles when the output is not a terminal; lines are not
    # wrapped when piped, so grep and CI logs see one line per check.
    out = file or sys.stdout
    return Console(file=out, width=width, highlight=False, soft_wrap=not out.isatty())


def fmt_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(fmt_value(v) for v in value)
    return str(value)


def _shown(report: Report, verbose: bool) -> list[Any]:
    # e.g. tls on a ws:// target: noise unless asked for
    return [r for r in report.results if verbose or r.evidence.get("applicable") is not False]


def summary_line(report: Report, verbose: bool = False) -> str:
    """``5 of 6 passed, 1 failed, 1 warning, 3 skipped in 354 ms`` (the checks shown)."""
    counts = {s: 0 for s in Status}
    for r in _shown(report, verbose):
        counts[r.status] += 1
    ran = counts[Status.OK] + counts[Status.WARN] + counts[Status.FAIL]
    passed = counts[Status.OK] + counts[Status.WARN]
    parts = [_("{passed} of {ran} passed").format(passed=passed, ran=ran)]
    if counts[Status.FAIL]:
        n = counts[Status.FAIL]
        parts.append(ngettext("{n} failed", "{n} failed", n).format(n=n))
    if counts[Status.WARN]:
        n = counts[Status.WARN]
        parts.append(ngettext("{n} warning", "{n} warnings", n).format(n=n))
    if counts[Status.SKIP]:
        n = counts[Status.SKIP]
        parts.append(ngettext("{n} skipped", "{n} skipped", n).format(n=n))
    return ", ".join(parts) + " " + _("in {ms} ms").format(ms=f"{report.duration_ms:.0f}")


def print_report(report: Report, verbose: bool = False, console: Any = None) -> None:
    from rich.markup import escape
    from rich.text import Text

    con = console or make_console()
    con.print(Text(f"lokin-doctor {__version__} — {report.target}", style="bold"))
    for r in _shown(report, verbose):
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
                con.print(f"       [dim]{escape(key)}:[/dim] {escape(fmt_value(value))}")
    tally = summary_line(report, verbose)
    con.print()
    if report.root_cause is not None:
        rc = report.root_cause
        con.print(
            Text(
                _("✗ Root cause ({check}, {code}): {summary}").format(
                    check=rc.check, code=rc.code, summary=rc.summary
                ),
                style="bold red",
            )
        )
        fix = _("Fix:")
        pad = " " * (len(fix) + 3)
        for i, hint_line in enumerate(rc.hint.splitlines()):
            con.print(Text((f"  {fix} " if i == 0 else pad) + hint_line, style="red"))
        con.print(Text(tally, style="dim"))
    elif report.status is Status.WARN:
        con.print(Text(_("! Reachable, with warnings: {tally}").format(tally=tally), style="bold yellow"))
    else:
        con.print(
            Text(
                _("✓ All good: the WebSocket server at {target} answers. {tally}").format(
                    target=report.target, tally=tally
                ),
                style="bold green",
            )
        )


def print_reports(reports: Sequence[Report], verbose: bool = False, console: Any = None) -> None:
    """One section per target, then one line for the whole run."""
    from rich.text import Text

    if len(reports) == 1:
        print_report(reports[0], verbose=verbose, console=console)
        return
    con = console or make_console()
    for i, report in enumerate(reports):
        if i:
            con.print()
        print_report(report, verbose=verbose, console=con)
    bad = sum(r.status is Status.FAIL for r in reports)
    warned = sum(r.status is Status.WARN for r in reports)
    good = len(reports) - bad - warned
    con.print()
    parts = [ngettext("{n} target", "{n} targets", len(reports)).format(n=len(reports))]
    parts.append(ngettext("{n} healthy", "{n} healthy", good).format(n=good))
    if warned:
        parts.append(ngettext("{n} with warnings", "{n} with warnings", warned).format(n=warned))
    if bad:
        parts.append(ngettext("{n} with a problem", "{n} with a problem", bad).format(n=bad))
    style = "bold red" if bad else "bold yellow" if warned else "bold green"
    con.print(Text(", ".join(parts), style=style))


def print_check_list(checks: Iterable[Any], console: Any = None) -> None:
    from rich.text import Text

    con = console or make_console()
    for spec in checks:
        needs = ", ".join((*spec.requires, *spec.after)) or "-"
        line = Text()
        line.append(f"{spec.id:<13}", style="bold")
        line.append(spec.title)
        local = _("; this machine only") if spec.local_only else ""
        line.append("  " + _("(after: {needs}{local})").format(needs=needs, local=local), style="dim")
        con.print(line)
