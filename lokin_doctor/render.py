"""Output: the terminal report (rich) and the JSON report. The only module of the checklist that imports rich.

JUnit and Markdown live in :mod:`lokin_doctor.formats`. Headings and summary lines go through
:mod:`lokin_doctor.i18n`; JSON keys, statuses and cause codes never do.
"""

from __future__ import annotations

import json
import os
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


def report_from_dict(data: dict[str, Any]) -> Report:
    """The :class:`Report` of a schema-1 JSON report (:func:`report_dict`'s inverse): a stored report rendered
    again in any format (the sentinel's history)."""
    from lokin_doctor.model import CheckResult, RootCause

    results = tuple(
        CheckResult(
            id=str(c["id"]),
            status=Status(c["status"]),
            summary=str(c.get("summary") or ""),
            code=c.get("code"),
            hint=c.get("hint"),
            evidence=dict(c.get("evidence") or {}),
            duration_ms=float(c.get("duration_ms") or 0.0),
            note=c.get("note"),
        )
        for c in data.get("checks") or []
    )
    rc = data.get("root_cause")
    root = RootCause(str(rc["check"]), str(rc["code"]), str(rc["summary"]), str(rc["hint"])) if rc else None
    return Report(str(data.get("target", "")), results, root, float(data.get("duration_ms") or 0.0))


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


#: One line of the terminal report: (text, rich style) segments.
Line = list[tuple[str, str]]


def report_lines(report: Report, verbose: bool = False) -> list[Line]:
    """The terminal report as lines of styled segments (printed by rich, or as plain text)."""
    lines: list[Line] = [[(f"lokin-doctor {__version__} — {report.target}", "bold")]]
    for r in _shown(report, verbose):
        mark, style = MARKS[r.status]
        line: Line = [(f" {mark} ", f"bold {style}"), (f"{r.id + ' ':<12}", "bold")]
        line.append((r.summary, "dim" if r.status is Status.SKIP else ""))
        if r.code:
            line.append((f"  [{r.code}]", style))
        lines.append(line)
        if r.hint and r.status in (Status.WARN, Status.FAIL):
            for i, hint_line in enumerate(r.hint.splitlines()):
                prefix = "     → " if i == 0 else "       "
                lines.append([(prefix + hint_line, style)])
        if r.note:
            lines.append([("     · " + _("note: {note}").format(note=r.note), "dim")])
        if verbose and r.evidence:
            for key, value in r.evidence.items():
                lines.append([(f"       {key}:", "dim"), (f" {fmt_value(value)}", "")])
    tally = summary_line(report, verbose)
    lines.append([])
    if report.root_cause is not None:
        rc = report.root_cause
        text = _("✗ Root cause ({check}, {code}): {summary}").format(
            check=rc.check, code=rc.code, summary=rc.summary
        )
        lines.append([(text, "bold red")])
        fix = _("Fix:")
        pad = " " * (len(fix) + 3)
        for i, hint_line in enumerate(rc.hint.splitlines()):
            lines.append([((f"  {fix} " if i == 0 else pad) + hint_line, "red")])
        lines.append([(tally, "dim")])
    elif report.status is Status.WARN:
        if _upgraded(report):
            text = _("! Reachable, with warnings: {tally}").format(tally=tally)
        else:
            text = _("! Passed with warnings ({checks}): {tally}").format(checks=_ran(report), tally=tally)
        lines.append([(text, "bold yellow")])
    elif _upgraded(report):
        text = _("✓ All good: the WebSocket server at {target} answers. {tally}").format(
            target=report.target, tally=tally
        )
        lines.append([(text, "bold green")])
    else:
        # check-port, check-process, --only without a handshake: say only what was checked.
        text = _(
            "✓ All good for what was checked ({checks}); no WebSocket handshake was made. {tally}"
        ).format(checks=_ran(report), tally=tally)
        lines.append([(text, "bold green")])
    return lines


def _upgraded(report: Report) -> bool:
    """Whether this run made a WebSocket handshake that succeeded (the only ground for "answers")."""
    return any(r.id == "handshake" and r.status in (Status.OK, Status.WARN) for r in report.results)


def _ran(report: Report) -> str:
    return ", ".join(r.id for r in report.results if r.status is not Status.SKIP)


def _plain_output() -> bool:
    """No styles to draw (a pipe, a file, NO_COLOR, a dumb terminal): write text, do not import rich."""
    return (
        not sys.stdout.isatty() or os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb"
    )


def lines_text(lines: list[Line], *, colors: bool = False, width: int | None = None) -> str:
    """The lines as one string: plain text, or with ANSI styles when ``colors`` (rich, imported only then)."""
    if not colors:
        return "".join("".join(text for text, _style in line) + "\n" for line in lines)
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    con = Console(
        file=buffer,
        width=width,
        highlight=False,
        force_terminal=True,
        color_system="standard",
        soft_wrap=False,
    )
    for line in lines:
        text = Text()
        for segment, style in line:
            text.append(segment, style=style)
        con.print(text)
    return buffer.getvalue()


def print_lines(lines: list[Line], console: Any = None) -> None:
    if console is None and _plain_output():
        sys.stdout.write("".join("".join(text for text, _style in line) + "\n" for line in lines))
        sys.stdout.flush()
        return
    from rich.text import Text

    con = console or make_console()
    for line in lines:
        text = Text()
        for segment, style in line:
            text.append(segment, style=style)
        con.print(text)


def print_report(report: Report, verbose: bool = False, console: Any = None) -> None:
    print_lines(report_lines(report, verbose), console)


def print_reports(reports: Sequence[Report], verbose: bool = False, console: Any = None) -> None:
    print_lines(reports_lines(reports, verbose), console)


def to_text(
    reports: Sequence[Report], verbose: bool = False, *, colors: bool = False, width: int | None = None
) -> str:
    """The ``text`` format as a string (styled when ``colors``): one section per target, then the run's line."""
    return lines_text(reports_lines(reports, verbose), colors=colors, width=width)


def reports_lines(reports: Sequence[Report], verbose: bool = False) -> list[Line]:
    """One section per target, then one line for the whole run."""
    lines: list[Line] = []
    for i, report in enumerate(reports):
        if i:
            lines.append([])
        lines += report_lines(report, verbose)
    if len(reports) > 1:
        bad = sum(r.status is Status.FAIL for r in reports)
        warned = sum(r.status is Status.WARN for r in reports)
        good = len(reports) - bad - warned
        parts = [ngettext("{n} target", "{n} targets", len(reports)).format(n=len(reports))]
        parts.append(ngettext("{n} healthy", "{n} healthy", good).format(n=good))
        if warned:
            parts.append(ngettext("{n} with warnings", "{n} with warnings", warned).format(n=warned))
        if bad:
            parts.append(ngettext("{n} with a problem", "{n} with a problem", bad).format(n=bad))
        style = "bold red" if bad else "bold yellow" if warned else "bold green"
        lines += [[], [(", ".join(parts), style)]]
    return lines


def print_check_list(checks: Iterable[Any], console: Any = None) -> None:
    print_lines(check_list_lines(checks), console)


def check_list_lines(checks: Iterable[Any]) -> list[Line]:
    lines: list[Line] = []
    for spec in checks:
        needs = ", ".join((*spec.requires, *spec.after)) or "-"
        local = _("; this machine only") if spec.local_only else ""
        after = "  " + _("(after: {needs}{local})").format(needs=needs, local=local)
        lines.append([(f"{spec.id:<13}", "bold"), (spec.title, ""), (after, "dim")])
    return lines
