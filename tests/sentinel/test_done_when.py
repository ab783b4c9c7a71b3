"""Issue 20's "Done when", end to end, as a user runs it: one ``lokin-doctor sentinel`` command against a real
``serve``; killing the server is a failure with its root cause in the history, the metrics, one webhook call
and the status page; the server back is a recovery, recorded; the sentinel restarted keeps the history;
Debian's Prometheus scrapes it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from lokin_doctor.tools.sentinel.history import History
from tests.helpers import run_cli
from tests.peers._common import free_port
from tests.sentinel.e2ekit import (  # noqa: F401
    SentinelProcess,
    WebhookSink,
    fetch,
    sentinel_process_fixture,
    serve_process_fixture,
    until,
    webhook_fixture,
)
from tests.sentinel.test_prometheus import prometheus_factory  # noqa: F401
from tests.server.conftest import ServeProcess


def metric(page: str, name: str, **labels: str) -> float | None:
    status, text = fetch(page + "metrics")
    assert status == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def root_causes(page: str) -> list[str]:
    _status, text = fetch(page + "metrics")
    return [
        s.labels["code"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "lokin_doctor_root_cause"
    ]


def incident_rows(page: str) -> list[tuple[str, str]]:
    """(class, code) of the status page's incident rows, newest first."""
    status, html = fetch(page)
    assert status == 200
    return re.findall(r'<tr class="(ongoing|ended)" data-code="([^"]*)"', html)


def test_done_when(
    tmp_path: Path,
    serve_process: Callable[..., ServeProcess],
    sentinel_process: Callable[..., SentinelProcess],
    webhook: WebhookSink,
    prometheus_factory: Any,  # noqa: F811
) -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    history_file = tmp_path / "history.sqlite"
    serve = serve_process("--host", "127.0.0.1", "--port", str(port))
    serve.ready_port()
    # --process: this serve only, so another server on the machine does not read as "on another port".
    own = ("--process", rf"serve .*--port {port}\b")
    command = (url, *own, "--every", "1", "--jitter", "0", "--confirm", "2", "--history", str(history_file))
    sentinel = sentinel_process(*command, "--metrics-port", "0", "--webhook", webhook.url)
    page = sentinel.page_url()

    until(lambda: metric(page, "probe_success", target=url) == 1.0, "a healthy run")
    assert metric(page, "lokin_doctor_down", target=url) == 0.0

    # The server dies: a failure, confirmed, with its root cause everywhere.
    serve.stop()
    until(lambda: "down" in webhook.states(), "the webhook's down call")
    (down,) = [b for b in webhook.bodies if b["state"] == "down"]
    code = down["root_cause"]
    assert down["target"] == url and code == "process.not-running"
    assert down["fix"] and down["report_url"].startswith(page + "runs/")
    assert until(lambda: metric(page, "lokin_doctor_down", target=url) == 1.0, "down in the metrics")
    assert root_causes(page) == [code]
    # The incident opens at the first failing run: the kill may have cut a run in the middle
    # (session.dropped-soon) before the runs that find no server; the page names both.
    ((state, first_code),) = until(lambda: incident_rows(page), "the ongoing incident on the page")
    assert state == "ongoing"
    assert first_code == code or code in fetch(page)[1]
    status, report = fetch(down["report_url"] + ".json")
    assert status == 200 and json.loads(report)["root_cause"]["code"] == code

    # The server back: the recovery, one webhook call each way.
    serve = serve_process("--host", "127.0.0.1", "--port", str(port))
    serve.ready_port()
    until(lambda: "up" in webhook.states(), "the webhook's up call")
    assert webhook.states() == ["down", "up"]
    until(lambda: incident_rows(page) == [("ended", first_code)], "the ended incident on the page")
    assert until(lambda: metric(page, "lokin_doctor_down", target=url) == 0.0, "up in the metrics")
    assert root_causes(page) == []
    assert metric(page, "lokin_doctor_incidents_total", target=url) == 1.0

    # A clean stop, then the sentinel again on the same history: the incident is still there.
    assert sentinel.terminate() == 0
    with History(history_file) as history:
        (incident,) = history.incidents(target=url)
        assert incident.root_cause == first_code and code in incident.causes and incident.end is not None
        kept = history.count()
    listed = run_cli("history", "--history", str(history_file), "--json")
    assert listed.code == 0 and code in listed.stdout

    metrics_port = free_port()
    again = sentinel_process(*command, "--metrics-port", str(metrics_port))
    page = again.page_url()
    assert page == f"http://127.0.0.1:{metrics_port}/"
    assert incident_rows(page) == [("ended", first_code)]
    until(lambda: metric(page, "probe_success", target=url) == 1.0, "a healthy run after the restart")

    # Prometheus scrapes it (the shipped config, pointed at this sentinel).
    api = prometheus_factory(metrics_port)
    query = f"http://127.0.0.1:{api}/api/v1/query?query=probe_success"
    found = until(lambda: json.loads(fetch(query)[1])["data"]["result"], "probe_success in Prometheus", 40)
    assert found[0]["metric"]["target"] == url and found[0]["value"][1] == "1"
    assert again.terminate() == 0
    with History(history_file) as history:
        assert history.count() >= kept
        assert len(history.incidents(target=url)) == 1
    assert webhook.states() == ["down", "up"]  # the restart alerted nothing
