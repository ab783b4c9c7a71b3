"""A Markdown report to paste into an issue or a chat: versions, a table of checks, the root cause and
its fix, the evidence in a collapsed ``<details>`` block (GitHub and GitLab render it folded)."""

from __future__ import annotations

import platform
from collections.abc import Sequence

from lokin_doctor import __version__
from lokin_doctor.i18n import _
from lokin_doctor.model import Report, Status

MARKS = {Status.OK: "✅", Status.WARN: "⚠️", Status.FAIL: "❌", Status.SKIP: "➖"}


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "<br>")


def versions() -> list[tuple[str, str]]:
    try:
        from importlib.metadata import version

        ws_version = version("websockets")
    except Exception:  # not installed as a distribution: say so rather than fail the report
        ws_version = "?"
    return [
        ("lokin-doctor", __version__),
        ("Python", platform.python_version()),
        ("websockets", ws_version),
        (_("OS"), f"{platform.system()} {platform.release()} ({platform.machine()})"),
    ]


def status_word(report: Report) -> str:
    return {
        Status.OK: _("healthy"),
        Status.WARN: _("reachable, with warnings"),
        Status.FAIL: _("problem found"),
        Status.SKIP: _("healthy"),
    }[report.status]


def _section(report: Report, level: str) -> list[str]:
    from lokin_doctor.render import fmt_value, summary_line

    heading = _("Target `{target}`: {mark} {status}").format(
        target=report.target, mark=MARKS[report.status], status=status_word(report)
    )
    out = [f"{level} {heading}", ""]
    header = (_("check"), _("status"), _("summary"), _("code"))
    out += ["| " + " | ".join(header) + " |", "|---|---|---|---|"]
    for r in report.results:
        code = f"`{r.code}`" if r.code else ""
        out.append(f"| {r.id} | {MARKS[r.status]} {r.status.value} | {_cell(r.summary)} | {code} |")
    out += ["", summary_line(report), ""]
    if report.root_cause is not None:
        rc = report.root_cause
        out += [
            _("**Root cause** ({check}, `{code}`): {summary}").format(
                check=rc.check, code=rc.code, summary=_cell(rc.summary)
            ),
            "",
            _("**Fix:** {hint}").format(hint=rc.hint),
            "",
        ]
    hints = [r for r in report.results if r.hint and r.status is Status.WARN]
    for r in hints:
        line = _("**Warning** ({check}, `{code}`): {summary} — {hint}")
        out += [line.format(check=r.id, code=r.code, summary=_cell(r.summary), hint=r.hint), ""]
    for r in report.results:
        if r.note:
            out += [_("**Note** ({check}): {note}").format(check=r.id, note=_cell(r.note)), ""]
    evidence = _("Evidence")
    out += [f"<details><summary>{evidence}</summary>", "", "```text"]
    for r in report.results:
        out.append(f"{r.id}: {r.status.value} ({r.duration_ms:.1f} ms)")
        for key, value in r.evidence.items():
            out.append(f"  {key}: {fmt_value(value)}")
    out += ["```", "", "</details>", ""]
    return out


def to_markdown(reports: Sequence[Report]) -> str:
    worst = max((r.status for r in reports), key=lambda s: s.rank, default=Status.OK)
    title = reports[0].target if len(reports) == 1 else _("{n} targets").format(n=len(reports))
    out = ["## " + _("lokin-doctor report: {title} — {mark}").format(title=title, mark=MARKS[worst]), ""]
    out += ["| " + _("component") + " | " + _("version") + " |", "|---|---|"]
    out += [f"| {name} | {value} |" for name, value in versions()]
    out.append("")
    level = "###"
    for report in reports:
        out += _section(report, level)
    return "\n".join(out).rstrip() + "\n"
