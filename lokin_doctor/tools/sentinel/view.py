"""What ``sentinel`` and ``history`` print: strings only (the commands write them).

Times are shown in this machine's local time (``2026-12-03 06:40:12``); the JSON gives ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from lokin_doctor.i18n import _
from lokin_doctor.tools.sentinel.alerts import Change, iso
from lokin_doctor.tools.sentinel.records import Incident, Run

#: Runs shown under the incidents by default (``history --limit``).
TAIL = 10


def clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def length(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return _("{s} s").format(s=s)
    if s < 3600:
        return _("{m} min {s:02d} s").format(m=s // 60, s=s % 60)
    if s < 86400:
        return _("{h} h {m:02d} min").format(h=s // 3600, m=s % 3600 // 60)
    return _("{d} d {h} h").format(d=s // 86400, h=s % 86400 // 3600)


# -- the sentinel's lines -----------------------------------------------------------------------------------


def run_line(run: Run, change: Change | None) -> str:
    """One line per run (stdout): time, target, status or change, root cause, duration, summary."""
    when = run.last_started if run.last_started is not None else run.started  # a folded repeat: this one
    head = f"{clock(when)}  {run.target}  "
    took = _("{s:.2f} s").format(s=run.duration)
    if change is not None:
        state = change.state.upper()
        what = _("{state} (was {previous})").format(state=state, previous=change.previous)
        if change.state == "down":
            fix = f"  {_('Fix: {hint}').format(hint=run.hint)}" if run.hint else ""
            return f"{head}{what}  {run.root_cause}  {took}  {run.summary}{fix}"
        if change.opener is not None and change.previous == "down":
            what += "  " + _("after {length} down ({code})").format(
                length=length(run.started - change.opener.started), code=change.opener.root_cause or "?"
            )
        return f"{head}{what}  {took}  {run.summary}"
    code = f"  {run.root_cause}" if run.root_cause else ""
    repeats = "  " + _("(x{n})").format(n=run.repeats) if run.repeats > 1 else ""
    return f"{head}{run.status}{code}  {took}  {run.summary}{repeats}"


def started_line(targets: Sequence[str], every: float, history: str, page: str | None) -> str:
    line = _("sentinel: {n} target(s) every {every:g} s, history {history}").format(
        n=len(targets), every=every, history=history
    )
    if page:
        line += "; " + _("status page and metrics on {url}").format(url=page)
    return line


def stopped_line(runs: int, why: str) -> str:
    return _("sentinel: stopped ({why}) after {n} run(s)").format(why=why, n=runs)


# -- history ------------------------------------------------------------------------------------------------


def incident_dict(i: Incident, now: float) -> dict[str, Any]:
    return {
        "target": i.target,
        "start": iso(i.start),
        "end": iso(i.end) if i.end is not None else None,
        "seconds": round(i.length(now), 1),
        "ongoing": i.ongoing,
        "root_cause": i.root_cause,
        "failing_check": i.failing_check,
        "summary": i.summary,
        "hint": i.hint,
        "causes": list(i.causes),
        "runs": i.runs,
        "first_run": i.first_run,
        "last_run": i.last_run,
    }


def run_dict(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "target": r.target,
        "started": iso(r.started),
        "last_started": iso(r.last_started if r.last_started is not None else r.started),
        "repeats": r.repeats,
        "duration": r.duration,
        "status": r.status,
        "state": r.state,
        "root_cause": r.root_cause,
        "failing_check": r.failing_check,
        "summary": r.summary,
        "hint": r.hint,
        "phases": r.phases,
        "cert_not_after": iso(r.cert_not_after) if r.cert_not_after is not None else None,
    }


def history_json(path: str, incidents: Sequence[Incident], runs: Sequence[Run], now: float) -> str:
    doc = {
        "schema": 1,
        "tool": "lokin-doctor",
        "history": path,
        "incidents": [incident_dict(i, now) for i in incidents],
        "runs": [run_dict(r) for r in runs],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def history_text(
    path: str,
    incidents: Sequence[Incident],
    runs: Sequence[Run],
    now: float,
    *,
    total_runs: int,
    targets: Sequence[str],
    filtered: bool,
) -> str:
    """The incident list (newest first) and the tail of recent runs."""
    out = [
        _("History {path}: {targets} target(s), {runs} row(s)").format(
            path=path, targets=len(targets), runs=total_runs
        ),
        "",
    ]
    if incidents:
        out.append(_("Incidents (newest first):"))
        rows = [[_("START"), _("END"), _("LENGTH"), _("TARGET"), _("ROOT CAUSE"), _("CHECK"), _("RUNS")]]
        for i in incidents:
            rows.append(
                [
                    clock(i.start),
                    clock(i.end) if i.end is not None else _("ongoing"),
                    length(i.length(now)),
                    i.target,
                    i.root_cause or "?",
                    i.failing_check or "?",
                    str(i.runs),
                ]
            )
        table = _table(rows)
        out.append(table[0])
        for line, i in zip(table[1:], incidents, strict=True):
            out.append(line)
            out.append("      " + i.summary)
            others = [c for c in i.causes if c != i.root_cause]
            if others:
                out.append("      " + _("then also: {codes}").format(codes=", ".join(others)))
    else:
        out.append(_("No incident matches.") if filtered else _("No incident: every target stayed healthy."))
    out.append("")
    if runs:
        out.append(_("Recent runs (newest first; lokin-doctor history --run ID shows one in full):"))
        rows = []
        for r in runs:
            extra = ""
            if r.repeats > 1:
                last = r.last_started if r.last_started is not None else r.started
                extra = _("x{n}, until {last}").format(n=r.repeats, last=clock(last))
            rows.append(
                [
                    f"#{r.id}",
                    clock(r.started),
                    r.target,
                    r.status,
                    r.root_cause or "",
                    _("{s:.2f} s").format(s=r.duration),
                    extra,
                ]
            )
        out.extend(_table(rows))
    else:
        out.append(_("No run matches."))
    return "\n".join(out) + "\n"


def run_report(run: Run, fmt: str, *, colors: bool = False) -> str:
    """One stored run in ``fmt`` (text, json, markdown, junit), as ``lokin-doctor all --format`` prints it."""
    if run.report is None:  # a run cut by a stop: its one line is all there is
        line = f"{clock(run.started)}  {run.target}  {run.status}  {run.summary}"
        if fmt == "json":
            return json.dumps({**run_dict(run), "report": None}, indent=2, ensure_ascii=False) + "\n"
        return line + "\n"
    if fmt == "json":
        return json.dumps(run.report, indent=2, ensure_ascii=False, default=str) + "\n"
    from lokin_doctor.formats import render
    from lokin_doctor.render import report_from_dict

    text = render(fmt, [report_from_dict(run.report)], colors=colors)
    if fmt != "text":
        return text
    head = _("Run #{id} of {target}, {when}").format(id=run.id, target=run.target, when=clock(run.started))
    if run.repeats > 1:
        last = run.last_started if run.last_started is not None else run.started
        head += " " + _(
            "(the same healthy result {n} times, until {last}; the report is the last one's)"
        ).format(n=run.repeats, last=clock(last))
    return head + "\n\n" + text
