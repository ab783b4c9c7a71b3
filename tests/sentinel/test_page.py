"""The status page and the run pages: rendered from a real history of real diagnoses, fetched over loopback
from the real server; hostile text escaped; the server's limits (head size, read time, clients, methods)."""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from lokin_doctor import i18n
from lokin_doctor.tools.sentinel import charts, page, web
from lokin_doctor.tools.sentinel.history import History
from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
from lokin_doctor.tools.sentinel.records import Run
from tests.sentinel.viewkit import (  # noqa: F401
    HOSTILE_REASON,
    Reports,
    history_fixture,
    now_s,
    record_timeline,
    reports_fixture,
    status_server,
)
from tests.server.conftest import http_get


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text (what a browser would build)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


async def test_the_page_shows_each_targets_verdict_timelines_latency_and_incidents(
    reports: Reports, history: History
) -> None:
    now = now_s()
    firsts = record_timeline(history, reports, now)
    async with status_server(history, SentinelMetrics(), [reports.url]) as server:
        reply = await http_get(server.port, "/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src" not in reply.headers["content-security-policy"]  # default-src 'none': no script
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    html = reply.text
    doc = parse(html)
    metas = [a for t, a in doc.tags if t == "meta"]
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in metas
    assert {"http-equiv": "refresh", "content": str(page.REFRESH_S)} in metas
    # Nothing from elsewhere: no script, no stylesheet link, no image, every link on this server.
    assert not [t for t, _a in doc.tags if t in ("script", "link", "img", "iframe", "object")]
    hrefs = [a["href"] for t, a in doc.tags if t == "a"]
    assert hrefs and all(h is not None and h.startswith("/") for h in hrefs)
    # The current verdict: healthy, since the hostile incident ended.
    section = next(a for t, a in doc.tags if t == "section")
    assert section["data-target"] == reports.url and section["data-status"] == "ok"
    assert "healthy since" in html
    # Timelines: bands coloured by cause, the two causes in the legend, each once.
    down_code = reports.down["root_cause"]["code"]
    hostile_code = reports.hostile["root_cause"]["code"]
    rects = [a for t, a in doc.tags if t == "rect"]
    assert {a["data-code"] for a in rects} >= {down_code, hostile_code}
    colours = charts.fail_colours({down_code, hostile_code})
    assert colours[down_code] != colours[hostile_code]
    assert {a["fill"] for a in rects if a["data-code"] == down_code} == {colours[down_code]}
    assert html.count(f"<code>{down_code}</code>") >= 1
    # The latency plot: one line per phase the runs timed.
    phases = {a["data-phase"] for t, a in doc.tags if t == "polyline"}
    assert phases == set(reports.run("ok", 0).phases)
    # The incidents, newest first, each linking to its first failing run.
    rows = [a for t, a in doc.tags if t == "tr" and a.get("data-code")]
    assert [r["data-code"] for r in rows] == [hostile_code, down_code]
    assert f'href="/runs/{firsts["hostile"].id}"' in html and f'href="/runs/{firsts["down"].id}"' in html
    assert "20 min" in html and "5 min" in html  # their lengths


async def test_a_failing_target_shows_its_root_cause_summary_and_fix(
    reports: Reports, history: History
) -> None:
    now = now_s()
    for i in range(5):
        history.record(
            reports.run("ok" if i < 3 else "down", now - 300 + i * 60, state="up" if i < 3 else "down")
        )
    async with status_server(history, SentinelMetrics(), [reports.url, "ws://127.0.0.1:9/never"]) as server:
        html = (await http_get(server.port, "/")).text
    rc = reports.down["root_cause"]
    doc = parse(html)
    sections = [a for t, a in doc.tags if t == "section"]
    assert [s["data-status"] for s in sections] == ["fail", "none"]
    text = "".join(doc.text)
    assert rc["code"] in text and rc["summary"] in text and rc["hint"] in text
    assert "failing since" in text and "ongoing" in text
    assert "1 of 2 targets failing" in text
    assert "The first run has not finished yet." in text


async def test_hostile_text_is_escaped_everywhere(reports: Reports, history: History) -> None:
    # A real server's 403 whose reason phrase is markup: the doctor quotes it in the summary.
    assert HOSTILE_REASON in reports.hostile["root_cause"]["summary"]
    now = now_s()
    stored = history.record(reports.run("hostile", now - 60, target=reports.hostile_url, state="down"))
    async with status_server(history, SentinelMetrics(), [reports.hostile_url]) as server:
        html = (await http_get(server.port, "/")).text
        run_html = (await http_get(server.port, f"/runs/{stored.id}")).text
        as_json = await http_get(server.port, f"/runs/{stored.id}.json")
    for doc_html in (html, run_html):
        doc = parse(doc_html)
        assert not [t for t, _a in doc.tags if t in ("script", "img")]
        assert "&lt;img src=x onerror=alert(1)&gt;&amp;&lt;/pre&gt;&lt;script&gt;" in doc_html
        assert HOSTILE_REASON in "".join(doc.text)  # shown as text, not run
    # The JSON is the stored report as it was: JSON, never sniffed as HTML.
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["x-content-type-options"] == "nosniff"
    assert json.loads(as_json.text)["root_cause"]["summary"] == reports.hostile["root_cause"]["summary"]


async def test_a_run_in_every_format(reports: Reports, history: History) -> None:
    stored = history.record(reports.run("down", now_s() - 60))
    rc = reports.down["root_cause"]
    async with status_server(history, SentinelMetrics(), [reports.url]) as server:
        got = {
            fmt: await http_get(server.port, f"/runs/{stored.id}{suffix}")
            for fmt, (suffix, _type) in page.RUN_FORMATS.items()
        }
        html = await http_get(server.port, f"/runs/{stored.id}")
        by_query = await http_get(server.port, f"/runs/{stored.id}?format=markdown")
        unknown = await http_get(server.port, f"/runs/{stored.id}?format=pdf")
        missing = await http_get(server.port, "/runs/999999")
    for fmt, (_suffix, content_type) in page.RUN_FORMATS.items():
        assert got[fmt].status == 200 and got[fmt].headers["content-type"] == content_type
    assert json.loads(got["json"].text) == reports.down
    assert rc["code"] in got["text"].text and rc["hint"] in got["text"].text
    assert f"`{rc['code']}`" in got["markdown"].text
    suite = ET.fromstring(got["junit"].body)
    assert rc["code"] in [f.get("type") for f in suite.iter("failure")]
    assert by_query.text == got["markdown"].text
    assert unknown.status == 400 and missing.status == 404
    # The HTML page: the text report, links to the other formats.
    doc = parse(html.text)
    assert {a["href"] for t, a in doc.tags if t == "a"} >= {
        f"/runs/{stored.id}{s}" for s, _t in page.RUN_FORMATS.values()
    }
    pre = html.text[html.text.index('<pre id="report">') :]
    assert rc["code"] in pre


async def test_a_folded_row_says_its_report_was_not_stored(history: History) -> None:
    folded = history.record(Run("ws://127.0.0.1:1/", 100.0, 0.2, "ok", summary="healthy", report=None))
    async with status_server(history, SentinelMetrics(), ["ws://127.0.0.1:1/"]) as server:
        html = await http_get(server.port, f"/runs/{folded.id}")
        as_json = await http_get(server.port, f"/runs/{folded.id}.json")
    assert html.status == 200 and "was not stored" in html.text
    assert as_json.status == 404


async def test_the_page_speaks_the_sentinels_language(reports: Reports, history: History) -> None:
    record_timeline(history, reports, now_s())
    i18n.set_language("fr")
    async with status_server(history, SentinelMetrics(), [reports.url]) as server:
        html = (await http_get(server.port, "/")).text
    assert '<html lang="fr">' in html
    text = "".join(parse(html).text)
    for french in (
        "Dernières 24 heures",
        "7 derniers jours",
        "Incidents des 7 derniers jours",
        "mise à jour",
    ):
        assert french in text
    assert "Last 24 hours" not in text


def test_many_runs_make_a_bounded_page(
    reports: Reports, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A flapping target every 10 s for a day, a folded row never possible: the page reads WEEK_ROWS rows
    # (patched down) and its SVG stays a few hundred bands whatever the number of runs.
    now = now_s()
    for i in range(3000):
        kind = "down" if i % 3 == 0 else "ok"
        history.record(reports.run(kind, now - 86400 + i * 28.8, state="down" if kind == "down" else "up"))
    monkeypatch.setattr(web, "WEEK_ROWS", 1000)
    server = web.StatusServer(history, SentinelMetrics(), [reports.url], "127.0.0.1", 0)
    html = server.respond("/", {}).body.decode()
    assert "Only the most recent runs were read" in html
    assert html.count("<rect") <= page.DAY_SLOTS + page.WEEK_SLOTS
    assert len(html) < 400_000
    view = server.views(now)[0]
    assert len(view.runs) == 1000 and view.truncated


def test_timeline_slots_show_the_worst_state_and_gaps_as_no_data(reports: Reports) -> None:
    t0 = 0.0
    runs = [reports.run("ok", t0 + i * 60) for i in range(60)]  # an hour, every minute
    runs[30] = reports.run("down", t0 + 30 * 60)  # one failure
    del runs[40:50]  # the sentinel was stopped for ten minutes
    found = charts.bands(runs, t0, t0 + 3600, 12)  # 5-minute slots
    states = [(b.start, b.end, b.state) for b in found]
    # The last run before the gap holds for twice the usual spacing (2 min), then: no data.
    assert states == [(0, 1800, 1), (1800, 2100, 3), (2100, 2700, 1), (2700, 3000, 0), (3000, 3600, 1)]
    assert found[1].code == reports.down["root_cause"]["code"]
    # A folded row stands for its whole span.
    folded = [reports.run("ok", t0, repeats=60, last_started=t0 + 59 * 60)]
    assert [(b.state, b.start, b.end) for b in charts.bands(folded, t0, t0 + 3600, 12)] == [(1, 0, 3600)]


def test_latency_points_are_bounded(reports: Reports) -> None:
    runs = [reports.run("ok", float(i)) for i in range(5000)]
    series = charts.latency_points(runs, 0.0, 5000.0, 100)
    assert set(series) == set(runs[0].phases)
    assert all(len(points) == 100 for points in series.values())
    svg = charts.latency_svg(series, 0.0, 5000.0, [], "latency")
    assert svg.count("<polyline") == len(series)


async def test_healthz_head_and_unknown_paths(history: History) -> None:
    async with status_server(history, SentinelMetrics(), []) as server:
        ok = await http_get(server.port, "/healthz")
        head = await http_get(server.port, "/", method="HEAD")
        missing = await http_get(server.port, "/etc/passwd")
        post = await http_get(server.port, "/", method="POST")
    assert (ok.status, ok.text) == (200, "ok\n")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0
    assert missing.status == 404
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"


async def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


async def test_the_server_bounds_what_a_client_can_make_it_do(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "READ_TIMEOUT_S", 0.3)
    async with status_server(history, SentinelMetrics(), []) as server:
        huge = await _raw(server.port, b"GET / HTTP/1.1\r\nX: " + b"a" * (web.MAX_HEAD + 10) + b"\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 431 ")
        slow = await _raw(server.port, b"GET / HTTP/1.1\r\n", wait=3.0)  # the head never ends
        assert slow.startswith(b"HTTP/1.1 408 ")
        bad = await _raw(server.port, b"HELLO\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
        old = await _raw(server.port, b"GET / HTTP/2.0\r\n\r\n")
        assert old.startswith(b"HTTP/1.1 505 ")


async def test_too_many_clients_get_a_503(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "MAX_CLIENTS", 1)
    async with status_server(history, SentinelMetrics(), []) as server:
        _reader, holder = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            await asyncio.sleep(0.1)  # the first connection is being served (waiting for its head)
            second = await _raw(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
            assert second.startswith(b"HTTP/1.1 503 ")
        finally:
            holder.close()
        await asyncio.sleep(0.1)
        assert (await http_get(server.port, "/healthz")).status == 200


async def test_start_raises_oserror_on_a_taken_port_and_port_0_picks_one(history: History) -> None:
    async with status_server(history, SentinelMetrics(), []) as first:
        assert first.port > 0
        taken = web.StatusServer(history, SentinelMetrics(), [], "127.0.0.1", first.port)
        with pytest.raises(OSError):
            await taken.start()


async def test_an_unreadable_history_is_a_503_not_a_crash(tmp_path: object, reports: Reports) -> None:
    from pathlib import Path

    opened = History(Path(str(tmp_path)) / "h.sqlite3")
    stored = opened.record(reports.run("ok", now_s()))
    async with status_server(opened, SentinelMetrics(), [reports.url]) as server:
        opened.close()  # what a vanished or locked file looks like to a reader: a HistoryError
        reply = await http_get(server.port, "/")
        run = await http_get(server.port, f"/runs/{stored.id}")
        metrics = await http_get(server.port, "/metrics")
    assert reply.status == 503 and "history" in reply.text
    assert run.status == 503
    assert metrics.status == 200  # the metrics do not need the file
    assert re.match(r"^the history cannot be read: ", reply.text)
