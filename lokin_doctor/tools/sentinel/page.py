"""The status page and a past run's page, as HTML strings. Pure: the server (``web.py``) reads the history.

Plain HTML with inline CSS and inline SVG (``charts.py``): no script, no CDN, no external asset, so the
server can forbid everything else (``CONTENT_SECURITY_POLICY``) and an escaping slip cannot run code. A meta
refresh reloads it; a viewport meta and a fluid layout make it readable on a phone. Every text that comes from
a run (a target, a summary that quotes a hostile server's reason phrase, a code) is escaped where it is
written. Times are UTC, said so. Words go through ``_()``: the page speaks the sentinel's language.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from lokin_doctor.i18n import N_, _, language, ngettext
from lokin_doctor.tools.sentinel import charts
from lokin_doctor.tools.sentinel.history import CUT, is_down
from lokin_doctor.tools.sentinel.records import PHASES, Incident, Run

#: What the server sends with every page: nothing but the page itself and its inline styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
REFRESH_S = 30
DAY = 86400.0
WEEK = 7 * DAY
#: Slots of the timelines: 5 minutes over a day, 30 minutes over a week.
DAY_SLOTS, WEEK_SLOTS = 288, 336
LATENCY_POINTS = 144
INCIDENTS_SHOWN = 20
#: The phases by the names the page gives them.
PHASE_LABELS = {
    "resolve": N_("name resolution"),
    "connect": N_("TCP connect"),
    "tls": N_("TLS"),
    "handshake": N_("handshake"),
    "first_message": N_("first message"),
}
#: Run formats: the URL suffix of each, its content type and its ``?format=`` name.
RUN_FORMATS = {
    "text": (".txt", "text/plain; charset=utf-8"),
    "json": (".json", "application/json"),
    "markdown": (".md", "text/markdown; charset=utf-8"),
    "junit": (".xml", "application/xml"),
}

_CSS = """
:root{color-scheme:light;--ok:#2f9e44;--warn:#e8a200;--fail:#e03131;--muted:#495057}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;background:#f1f3f5}
header,main,footer{max-width:60rem;margin:0 auto;padding:.6rem 1rem}
header h1{font-size:1.25rem;margin:.2rem 0}
.meta,.note,footer{color:var(--muted);font-size:.85rem}
section.target{background:#fff;border-radius:.5rem;padding:.8rem 1rem;margin:0 0 1rem;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:1.05rem;margin:0 0 .4rem;overflow-wrap:anywhere}
h3{font-size:.9rem;margin:.9rem 0 .3rem;color:var(--muted)}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;color:#fff;font-size:.85rem;
font-weight:600;vertical-align:middle;overflow-wrap:anywhere}
.badge.ok{background:var(--ok)}.badge.warn{background:var(--warn);color:#212529}.badge.fail{background:var(--fail)}
.badge.none{background:#adb5bd}
.verdict p{margin:.2rem 0;overflow-wrap:anywhere}
svg{display:block;width:100%;height:auto}
.legend{display:flex;flex-wrap:wrap;gap:.2rem .9rem;margin:.3rem 0;padding:0;list-style:none;font-size:.8rem}
.legend li{overflow-wrap:anywhere}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:.15rem;vertical-align:-.1rem;margin-right:.3rem}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #e9ecef;vertical-align:top}
td.cause{overflow-wrap:anywhere;min-width:12rem}
code{font-size:.85em;background:#f1f3f5;padding:0 .2rem;border-radius:.2rem;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;padding:.8rem;border-radius:.5rem;font-size:.8rem}
nav a{margin-right:.8rem}
"""


@dataclass(frozen=True)
class TargetView:
    """What the page shows of one target.

    Attributes:
        target: as the sentinel names it.
        latest: its last run, None before the first.
        runs: the runs of the last week the server read (any order; bounded).
        incidents: newest first (bounded).
        truncated: the week had more runs than were read: the charts start later than a week ago.
        began_earlier: the oldest run read was down: the oldest incident began before it.
    """

    target: str
    latest: Run | None
    runs: Sequence[Run]
    incidents: Sequence[Incident]
    truncated: bool = False
    began_earlier: bool = False


def _note(text: str) -> str:
    return '<p class="note">' + escape(text) + "</p>"


def clock(at: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return time.strftime(fmt, time.gmtime(at)) + " UTC"


def length(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    s = max(0, int(round(seconds)))
    if s < 120:
        return _("{n} s").format(n=s)
    if s < 3600:
        return _("{n} min").format(n=s // 60)
    if s < 2 * 86400:
        return _("{h} h {m:02d} min").format(h=s // 3600, m=s % 3600 // 60)
    return _("{d} d {h} h").format(d=s // 86400, h=s % 86400 // 3600)


def _state_names() -> dict[int, str]:
    return {0: _("no data"), 1: _("OK"), 2: _("warning"), 3: _("failure")}


def _badge(run: Run | None) -> str:
    if run is None:
        return '<span class="badge none">' + escape(_("no run yet")) + "</span>"
    if run.status == CUT:
        return '<span class="badge none">' + escape(_("cut")) + "</span>"
    if run.status == "ok" or not run.root_cause:
        return '<span class="badge ok">' + escape(_("OK")) + "</span>"
    return f'<span class="badge {escape(run.status)}">{escape(run.root_cause)}</span>'


def _meaning(code: str | None) -> str | None:
    if not code:
        return None
    from lokin_doctor import causes

    found = causes.get(code)
    return found.meaning_text() if found else None


def _verdict(view: TargetView, now: float) -> str:
    run = view.latest
    if run is None:
        return '<div class="verdict">' + _note(_("The first run has not finished yet.")) + "</div>"
    out = ['<div class="verdict">']
    if run.status == "fail" and not is_down(run):
        out.append(_note(_("Not confirmed yet: the target is still counted up (--confirm).")))
    if run.summary:
        out.append(f'<p class="summary">{escape(run.summary)}</p>')
    meaning = _meaning(run.root_cause) if run.status != "ok" else None
    if meaning:
        out.append('<p class="meaning">' + escape(_("What it means:")) + f" {escape(meaning)}</p>")
    if run.hint and run.status != "ok":
        out.append('<p class="fix"><strong>' + escape(_("Fix:")) + f"</strong> {escape(run.hint)}</p>")
    ongoing = next((i for i in view.incidents if i.ongoing), None)
    since: str | None = None
    if is_down(run) and ongoing is not None:
        since = _("failing since {when} ({length})").format(
            when=clock(ongoing.start), length=length(ongoing.length(now))
        )
    elif not is_down(run) and view.incidents and view.incidents[0].end is not None:
        end = view.incidents[0].end
        since = _("healthy since {when} ({length})").format(when=clock(end), length=length(now - end))
    last = run.last_started if run.last_started is not None else run.started
    facts = [_("last run {when}").format(when=clock(last))]
    if since:
        facts.insert(0, since)
    if run.id is not None:
        facts.append(f'<a href="/runs/{run.id}">' + escape(_("full report")) + "</a>")
    out.append(
        '<p class="meta">' + " · ".join(f if f.startswith("<a ") else escape(f) for f in facts) + "</p>"
    )
    out.append("</div>")
    return "".join(out)


def _ticks(start: float, end: float, step: float, fmt: str) -> list[tuple[float, str]]:
    """A tick at each multiple of ``step`` (UTC) inside the window."""
    first = (int(start // step) + 1) * step
    count = int((end - first) // step) + 1
    return [
        (first + i * step, time.strftime(fmt, time.gmtime(first + i * step))) for i in range(max(0, count))
    ]


def _legend(found: Sequence[charts.Band], colours: dict[str, str]) -> str:
    states = {b.state for b in found}
    names = _state_names()
    items = []
    for state, colour in ((1, charts.OK_COLOUR), (2, charts.WARN_COLOUR), (0, charts.NO_DATA_COLOUR)):
        if state in states:
            items.append(
                f'<li><span class="swatch" style="background:{colour}"></span>{escape(names[state])}</li>'
            )
    for code in sorted({b.code for b in found if b.state == 3 and b.code}):
        meaning = _meaning(code)
        title = f' title="{escape(meaning)}"' if meaning else ""
        items.append(
            f'<li{title}><span class="swatch" style="background:{colours.get(code, charts.FAIL_PALETTE[0])}">'
            f"</span><code>{escape(code)}</code></li>"
        )
    return '<ul class="legend">' + "".join(items) + "</ul>"


def _timelines(view: TargetView, now: float, colours: dict[str, str]) -> str:
    day = charts.bands(view.runs, now - DAY, now, DAY_SLOTS)
    week = charts.bands(view.runs, now - WEEK, now, WEEK_SLOTS)
    names = _state_names()
    out = ["<h3>" + escape(_("Last 24 hours")) + "</h3>"]
    out.append(
        charts.timeline_svg(
            day, now - DAY, now, colours, _ticks(now - DAY, now, 6 * 3600, "%H:%M"), _("Last 24 hours"), names
        )
    )
    out.append("<h3>" + escape(_("Last 7 days")) + "</h3>")
    out.append(
        charts.timeline_svg(
            week,
            now - WEEK,
            now,
            colours,
            _ticks(now - WEEK, now, DAY, "%m-%d"),
            _("Last 7 days"),
            names,
            clock="%m-%d %H:%M",
        )
    )
    out.append(_legend([*day, *week], colours))
    if view.truncated and view.runs:
        oldest = min(r.started for r in view.runs)
        out.append(
            _note(
                _("Only the most recent runs were read: the charts start at {when}.").format(
                    when=clock(oldest)
                )
            )
        )
    return "".join(out)


def _latency(view: TargetView, now: float) -> str:
    series = charts.latency_points(view.runs, now - DAY, now, LATENCY_POINTS)
    title = _("Latency per phase, last 24 hours")
    out = [f"<h3>{escape(title)}</h3>"]
    if not series:
        out.append(_note(_("No phase was timed in the last 24 hours.")))
        return "".join(out)
    out.append(charts.latency_svg(series, now - DAY, now, _ticks(now - DAY, now, 6 * 3600, "%H:%M"), title))
    latest = view.latest.phases if view.latest else {}
    items = []
    for phase in PHASES.values():
        if phase not in series:
            continue
        value = f" {latest[phase] * 1000:.1f} ms" if phase in latest else ""
        items.append(
            f'<li><span class="swatch" style="background:{charts.PHASE_COLOURS[phase]}"></span>'
            + escape(_(PHASE_LABELS[phase]) + value)
            + "</li>"
        )
    out.append('<ul class="legend">' + "".join(items) + "</ul>")
    return "".join(out)


def _incidents(view: TargetView, now: float) -> str:
    out = ["<h3>" + escape(_("Incidents, last 7 days")) + "</h3>"]
    if not view.incidents:
        out.append(_note(_("No incident in the last 7 days.")))
        return "".join(out)
    head = (_("start"), _("end"), _("length"), _("root cause"), _("report"))
    out.append('<div class="table"><table class="incidents"><thead><tr>')
    out.append("".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>")
    oldest = view.incidents[-1]
    for incident in list(view.incidents)[:INCIDENTS_SHOWN]:
        end = clock(incident.end) if incident.end is not None else _("ongoing")
        start = clock(incident.start)
        if view.began_earlier and incident is oldest:
            start = _("before {when}").format(when=start)
        cause = f"<code>{escape(incident.root_cause or '?')}</code>"
        if incident.summary:
            cause += f" {escape(incident.summary)}"
        others = [c for c in incident.causes if c != incident.root_cause]
        if others:
            cause += " " + escape(_("then:")) + " " + ", ".join(f"<code>{escape(c)}</code>" for c in others)
        out.append(
            f'<tr class="{"ongoing" if incident.ongoing else "ended"}" data-code="{escape(incident.root_cause or "")}">'
            f"<td>{escape(start)}</td><td>{escape(end)}</td>"
            f"<td>{escape(length(incident.length(now)))}</td><td class='cause'>{cause}</td>"
            f'<td><a href="/runs/{int(incident.first_run)}">#{int(incident.first_run)}</a></td></tr>'
        )
    out.append("</tbody></table></div>")
    if len(view.incidents) > INCIDENTS_SHOWN or view.began_earlier:
        out.append(
            _note(_("Older incidents: lokin-doctor history --target {target}").format(target=view.target))
        )
    return "".join(out)


def _document(title: str, body: str, refresh: int | None) -> str:
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        f'<!doctype html><html lang="{escape(language())}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )


def status_page(views: Sequence[TargetView], now: float, refresh: int = REFRESH_S) -> str:
    """The whole page: one section per target, in the order given."""
    codes = {r.root_cause for v in views for r in v.runs if r.root_cause and r.status == "fail"}
    colours = charts.fail_colours(codes)
    failing = sum(1 for v in views if v.latest is not None and is_down(v.latest))
    title = _("lokin-doctor sentinel")
    total = len(views)
    if failing:
        summary = ngettext(
            "{failing} of {total} target failing", "{failing} of {total} targets failing", total
        ).format(failing=failing, total=total)
    else:
        summary = ngettext("{total} target, healthy", "all {total} targets healthy", total).format(
            total=total
        )
    body = [
        f"<header><h1>{escape(title)}</h1>",
        f'<p class="meta"><span id="overall">{escape(summary)}</span> · ',
        escape(_("updated {when}, every {n} s").format(when=clock(now), n=refresh)) + " · ",
        '<a href="/metrics">' + escape(_("metrics")) + "</a></p></header><main>",
    ]
    for index, view in enumerate(views):
        body.append(
            f'<section class="target" id="target-{index}" data-target="{escape(view.target)}" '
            f'data-status="{escape(view.latest.status if view.latest else "none")}">'
            f"<h2>{_badge(view.latest)} {escape(view.target)}</h2>"
        )
        body.append(_verdict(view, now))
        body.append(_timelines(view, now, colours))
        body.append(_latency(view, now))
        body.append(_incidents(view, now))
        body.append("</section>")
    body.append("</main>")
    return _document(f"{summary} · {title}", "".join(body), refresh)


def run_links(run_id: int) -> list[tuple[str, str]]:
    """(label, href) of a run's other formats."""
    return [
        (_("text"), f"/runs/{run_id}.txt"),
        ("JSON", f"/runs/{run_id}.json"),
        ("Markdown", f"/runs/{run_id}.md"),
        ("JUnit", f"/runs/{run_id}.xml"),
    ]


def run_page(run: Run, text: str | None) -> str:
    """One stored run: its facts, links to every format, the text report (``None`` for a folded row)."""
    assert run.id is not None
    heading = _("Run #{id}").format(id=run.id)
    body = [
        '<header><p><a href="/">' + escape(_("status page")) + f"</a></p><h1>{escape(heading)}</h1>",
        f"<h2>{_badge(run)} {escape(run.target)}</h2>",
        f'<p class="meta">{escape(clock(run.started))} · '
        + escape(_("{s:.2f} s").format(s=run.duration))
        + "</p>",
    ]
    if text is not None:
        links = " ".join(f'<a href="{quote(href)}">{escape(label)}</a>' for label, href in run_links(run.id))
        body.append(f"<nav>{links}</nav>")
    body.append("</header><main>")
    if text is None:
        last = run.last_started if run.last_started is not None else run.started
        body.append(
            '<p class="note">'
            + escape(
                _(
                    "This row stands for {n} identical healthy runs, {first} to {last}; their report was not stored."
                ).format(n=run.repeats, first=clock(run.started), last=clock(last))
            )
            + "</p>"
        )
        if run.summary:
            body.append(f"<p>{escape(run.summary)}</p>")
    else:
        body.append(f'<pre id="report">{escape(text)}</pre>')
    body.append("</main>")
    return _document(f"{heading} · {run.target}", "".join(body), None)


def render_report(report: dict[str, Any], fmt: str) -> str:
    """A stored JSON report in ``fmt`` (text, json, markdown, junit), as the CLI would have printed it."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    from lokin_doctor.formats import render
    from lokin_doctor.render import report_from_dict

    return render(fmt, [report_from_dict(report)], colors=False)
