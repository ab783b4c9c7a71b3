"""The status page's pictures as inline SVG strings: the up/down timeline and the latency per phase. Pure.

Both take the runs of a window (any order; folded rows count for the span they stand for) and bound their
output whatever the number of runs: the timeline is ``buckets`` slots wide, each slot showing the worst
state seen in it (one failed run in five minutes of health is what an operator wants to see), then merged
into bands; the latency plot averages each phase over at most ``points`` slots. Every text that reaches
the SVG (a cause code, a tooltip) is escaped here.
"""

from __future__ import annotations

import math
import statistics
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from lokin_doctor.tools.sentinel.history import CUT
from lokin_doctor.tools.sentinel.records import PHASES, Run

#: The width of every chart's viewBox; the page scales it to the screen (text scales with it).
WIDTH = 400
OK_COLOUR = "#2f9e44"
WARN_COLOUR = "#e8a200"
NO_DATA_COLOUR = "#dee2e6"
#: Failure colours, handed out by the code's hash (stable across pages and refreshes), then the next free.
FAIL_PALETTE = (
    "#e03131",
    "#9c36b5",
    "#862e9c",
    "#c2255c",
    "#f76707",
    "#5f3dc4",
    "#a61e4d",
    "#d9480f",
    "#1864ab",
    "#495057",
)
PHASE_COLOURS = {
    "resolve": "#1c7ed6",
    "connect": "#f76707",
    "tls": "#37b24d",
    "handshake": "#9c36b5",
    "first_message": "#862e1a",
}
#: Severity of a slot's state: nothing known, healthy, warning, failing.
_NONE, _OK, _WARN, _FAIL = 0, 1, 2, 3


def fail_colours(codes: Iterable[str]) -> dict[str, str]:
    """A distinct colour for each failure code (its hash's colour when free, else the next one)."""
    taken: dict[str, str] = {}
    used: set[str] = set()
    for code in sorted(set(codes)):
        start = zlib.crc32(code.encode()) % len(FAIL_PALETTE)
        for step in range(len(FAIL_PALETTE)):
            colour = FAIL_PALETTE[(start + step) % len(FAIL_PALETTE)]
            if colour not in used:
                break
        # More codes than colours: they share (the legend and the tooltips still name each).
        taken[code] = colour
        used.add(colour)
    return taken


def typical_interval(runs: Sequence[Run], default: float = 60.0) -> float:
    """The median spacing between runs (a folded row's repeats spread over its span), else ``default``."""
    starts = sorted(r.started for r in runs)
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False) if b > a]
    gaps += [
        (r.last_started - r.started) / (r.repeats - 1)
        for r in runs
        if r.repeats > 1 and r.last_started is not None and r.last_started > r.started
    ]
    return statistics.median(gaps) if gaps else default


@dataclass(frozen=True)
class Band:
    """A run of equal slots: ``[start, end)`` in seconds, its state and (failing or warning) its code."""

    start: float
    end: float
    state: int
    code: str | None


def _segments(runs: Sequence[Run], end: float) -> list[tuple[float, float, int, str | None]]:
    """Each run's span: from its start until the next run began, no longer than twice the usual spacing
    (a sentinel that was stopped leaves a gap, not a band). A run the stop cut is no verdict: left out."""
    ordered = sorted((r for r in runs if r.status != CUT), key=lambda r: r.started)
    hold = max(2.0 * typical_interval(ordered), 1.0)
    out = []
    for i, run in enumerate(ordered):
        last = run.last_started if run.last_started is not None else run.started
        stop = min(end, last + max(hold, run.duration))
        if i + 1 < len(ordered):
            stop = min(stop, max(ordered[i + 1].started, last))
        stop = max(stop, run.started + run.duration)
        state = _FAIL if run.status == "fail" else _WARN if run.status == "warn" else _OK
        out.append((run.started, stop, state, run.root_cause if state != _OK else None))
    return out


def bands(runs: Sequence[Run], start: float, end: float, buckets: int) -> list[Band]:
    """The window ``[start, end)`` in ``buckets`` slots, merged into bands of equal state and code.

    A slot's state is the worst of the runs overlapping it; among failing runs, the code that covered the
    most of the slot. Linear in runs + buckets.
    """
    width = (end - start) / buckets
    segments = [s for s in _segments(runs, end) if s[1] > start and s[0] < end]
    slots: list[tuple[int, str | None]] = []
    first = 0
    for i in range(buckets):
        lo, hi = start + i * width, start + (i + 1) * width
        while first < len(segments) and segments[first][1] <= lo:
            first += 1
        worst = _NONE
        cover: dict[str | None, float] = {}
        j = first
        while j < len(segments) and segments[j][0] < hi:
            s0, s1, state, code = segments[j]
            overlap = min(s1, hi) - max(s0, lo)
            if overlap > 0 or (s0 == s1 and lo <= s0 < hi):
                if state > worst:
                    worst, cover = state, {}
                if state == worst:
                    cover[code] = cover.get(code, 0.0) + max(overlap, 0.0)
            j += 1
        code = max(cover, key=lambda c: cover[c]) if cover else None
        slots.append((worst, code))
    merged: list[Band] = []
    for i, (state, code) in enumerate(slots):
        lo = start + i * width
        if merged and merged[-1].state == state and merged[-1].code == code:
            last = merged[-1]
            merged[-1] = Band(last.start, lo + width, state, code)
        else:
            merged.append(Band(lo, lo + width, state, code))
    return merged


def band_colour(band: Band, colours: dict[str, str]) -> str:
    if band.state == _FAIL:
        return colours.get(band.code or "", FAIL_PALETTE[0])
    return {_WARN: WARN_COLOUR, _OK: OK_COLOUR}.get(band.state, NO_DATA_COLOUR)


def timeline_svg(
    found: Sequence[Band],
    start: float,
    end: float,
    colours: dict[str, str],
    ticks: Sequence[tuple[float, str]],
    label: str,
    describe: dict[int, str],
    clock: str = "%H:%M",
) -> str:
    """The bands as an SVG strip with tick labels; each band's tooltip says when and what.

    ``ticks`` are (time, label); ``describe`` names the states (no data, OK, warning, failure) in the page's
    language; ``clock`` formats a band's bounds in its tooltip (UTC).
    """
    import time as _time

    span = end - start
    height, strip = 34, 18
    parts = [
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for band in found:
        x = (band.start - start) / span * WIDTH
        w = (band.end - band.start) / span * WIDTH
        when = f"{_time.strftime(clock, _time.gmtime(band.start))}–{_time.strftime(clock, _time.gmtime(band.end))} UTC"
        what = describe.get(band.state, "")
        if band.code:
            what = f"{what}: {band.code}"
        parts.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{strip}" fill="{band_colour(band, colours)}" '
            f'data-state="{band.state}" data-code="{escape(band.code or "")}">'
            f"<title>{escape(when)} {escape(what)}</title></rect>"
        )
    for at, text in ticks:
        x = (at - start) / span * WIDTH
        anchor = "start" if x < 20 else "end" if x > WIDTH - 20 else "middle"
        parts.append(f'<line x1="{x:.1f}" y1="{strip}" x2="{x:.1f}" y2="{strip + 3}" stroke="#868e96"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{height - 2}" font-size="9" text-anchor="{anchor}" fill="#495057">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_points(
    runs: Sequence[Run], start: float, end: float, points: int
) -> dict[str, list[tuple[float, float]]]:
    """Per phase, (slot middle time, mean seconds) for each slot of ``[start, end)`` that has values."""
    width = (end - start) / points
    sums: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        if not start <= run.started < end or run.status == CUT:
            continue
        slot = min(points - 1, int((run.started - start) / width))
        for phase, seconds in run.phases.items():
            acc = sums.setdefault(phase, {}).setdefault(slot, [0.0, 0.0])
            acc[0] += seconds
            acc[1] += 1
    return {
        phase: [(start + (slot + 0.5) * width, total / n) for slot, (total, n) in sorted(slots.items())]
        for phase, slots in sums.items()
    }


#: The latency plot's vertical scale: logarithmic from 0.1 ms to 100 s (a refused port and a slow
#: handshake on one plot), with a labelled line at each decade.
_LOG_MIN, _LOG_MAX = -4, 2
_DECADES = {-4: "0.1 ms", -3: "1 ms", -2: "10 ms", -1: "100 ms", 0: "1 s", 1: "10 s", 2: "100 s"}


def latency_svg(
    series: dict[str, list[tuple[float, float]]],
    start: float,
    end: float,
    ticks: Sequence[tuple[float, str]],
    label: str,
) -> str:
    """One line per phase (chain order), on a log scale, with decade lines and time ticks."""
    span = end - start
    height, plot_top, plot_bottom, left = 130, 4, 110, 34
    plot_w = WIDTH - left - 4

    values = [v for pts in series.values() for _, v in pts]
    # The decades the values span (two at least), within 0.1 ms .. 100 s.
    low = math.floor(math.log10(max(min(values), 10.0**_LOG_MIN))) if values else -3
    high = math.ceil(math.log10(max(max(values), 10.0**_LOG_MIN))) if values else 0
    low, high = max(_LOG_MIN, low), min(_LOG_MAX, high)
    if high - low < 2:
        low = max(_LOG_MIN, high - 2)
        high = low + 2

    def y(seconds: float) -> float:
        value = min(max(math.log10(max(seconds, 10.0**low)), low), high)
        return plot_bottom - (value - low) / (high - low) * (plot_bottom - plot_top)

    def x(at: float) -> float:
        return left + (at - start) / span * plot_w

    parts = [
        f'<svg class="latency" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for decade in range(low, high + 1):
        yy = y(10.0**decade)
        parts.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{WIDTH - 4}" y2="{yy:.1f}" stroke="#e9ecef"/>'
            f'<text x="{left - 3}" y="{yy + 3:.1f}" font-size="8" text-anchor="end" fill="#495057">'
            f"{_DECADES[decade]}</text>"
        )
    for at, text in ticks:
        xx = x(at)
        anchor = "start" if xx < left + 20 else "end" if xx > WIDTH - 20 else "middle"
        parts.append(
            f'<text x="{xx:.1f}" y="{height - 4}" font-size="9" text-anchor="{anchor}" fill="#495057">'
            f"{escape(text)}</text>"
        )
    for phase in PHASES.values():
        pts = series.get(phase)
        if not pts:
            continue
        colour = PHASE_COLOURS.get(phase, "#000")
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        if len(pts) == 1:
            cx, cy = coords.split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}" data-phase="{phase}"/>')
        else:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.2" '
                f'data-phase="{phase}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)
