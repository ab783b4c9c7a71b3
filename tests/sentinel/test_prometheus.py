"""The shipped Prometheus files checked by Debian's ``promtool``, and Debian's ``prometheus`` scraping a real
status server on loopback: ``probe_success`` and the root cause reach its query API, the alert rule fires."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from lokin_doctor.tools.sentinel.history import History
from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
from tests.peers._common import free_port, scaled
from tests.sentinel.viewkit import Reports, history_fixture, reports_fixture, status_server  # noqa: F401
from tests.server.conftest import http_get

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIG = DEPLOY / "prometheus-sentinel.yml"
RULES = DEPLOY / "sentinel-alerts.yml"
RULES_TEST = DEPLOY / "sentinel-alerts.test.yml"


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        reason = f"{binary} not found (apt-get install -y prometheus)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_need("promtool"), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def test_promtool_accepts_the_scrape_config_and_the_rules() -> None:
    config = _promtool("check", "config", str(CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr
    rules = _promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "5 rules found" in rules.stdout + rules.stderr


def test_the_alert_rules_pass_their_unit_tests() -> None:
    run = _promtool("test", "rules", str(RULES_TEST))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    # The check is not a rubber stamp: a typo in an expression is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text().replace("lokin_doctor_down == 1", "lokin_doctor_down == == 1"))
    assert _promtool("check", "rules", str(broken)).returncode != 0


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    """``start(scrape_port) -> api_port``: Debian's prometheus with the shipped config pointed at
    127.0.0.1:scrape_port, scraping and evaluating every second; stopped by its PID."""
    binary = _need("prometheus")
    procs: list[subprocess.Popen[bytes]] = []

    def start(scrape_port: int) -> int:
        text = CONFIG.read_text()
        for old, new in (
            ("127.0.0.1:9464", f"127.0.0.1:{scrape_port}"),
            ("scrape_interval: 30s", "scrape_interval: 1s"),
            ("evaluation_interval: 30s", "evaluation_interval: 1s"),
            ("- sentinel-alerts.yml", f"- {RULES}"),
        ):
            assert old in text, old
            text = text.replace(old, new)
        config = tmp_path / "prometheus.yml"
        config.write_text(text)
        for _attempt in range(3):  # a free port can be taken before prometheus binds it
            api_port = free_port()
            log = open(tmp_path / f"prometheus-{api_port}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{api_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
            procs.append(proc)
            time.sleep(0.3)
            if proc.poll() is None:
                return api_port
        pytest.fail(
            "prometheus did not start: " + (tmp_path / f"prometheus-{api_port}.log").read_text()[-2000:]
        )

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def _api(port: int, path: str) -> dict[str, Any]:
    reply = await http_get(port, path)
    if reply.status != 200:
        return {}
    return json.loads(reply.text)  # type: ignore[no-any-return]


async def _until(port: int, path: str, ok: Any, what: str, timeout: float = 40.0) -> dict[str, Any]:
    """Poll prometheus's API (async: the status server it scrapes runs in this loop) until ``ok(answer)``."""
    deadline = time.monotonic() + scaled(timeout)
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            answer = await _api(port, path)
        except (OSError, TimeoutError, ValueError):
            answer = {}
        if answer and ok(answer):
            return answer
        await asyncio.sleep(0.5)
    pytest.fail(f"prometheus: no {what} within {timeout} s; last answer {answer}")


async def test_prometheus_scrapes_the_sentinel_and_the_alert_fires(
    reports: Reports, history: History, prometheus_factory: Any
) -> None:
    metrics = SentinelMetrics()
    target = reports.url
    metrics.observe(reports.run("ok", time.time() - 120, state="up"))
    down = reports.run("down", time.time() - 60, state="down")
    metrics.observe(down)
    async with status_server(history, metrics, [target]) as server:
        api = prometheus_factory(server.port)
        query = "/api/v1/query?query=" + quote(f'probe_success{{target="{target}"}}')
        found = await _until(api, query, lambda a: a["data"]["result"], "probe_success")
        (series,) = found["data"]["result"]
        assert series["metric"]["job"] == "lokin-sentinel"
        assert series["metric"]["instance"] == f"127.0.0.1:{server.port}"
        assert series["value"][1] == "0"
        cause = await _api(api, "/api/v1/query?query=lokin_doctor_root_cause")
        assert [r["metric"]["code"] for r in cause["data"]["result"]] == [down.root_cause]
        # The shipped rule, evaluated by prometheus: the target is down, with its root cause.
        alerts = await _until(
            api,
            "/api/v1/alerts",
            lambda a: any(x["labels"]["alertname"] == "LokinTargetDown" for x in a["data"]["alerts"]),
            "LokinTargetDown alert",
        )
        (alert,) = [x for x in alerts["data"]["alerts"] if x["labels"]["alertname"] == "LokinTargetDown"]
        assert alert["labels"]["target"] == target
        assert f"root cause {down.root_cause}" in alert["annotations"]["description"]
        # Recovery: the next scrape sees it, the series of the root cause goes.
        metrics.observe(reports.run("ok", time.time(), state="up"))
        await _until(
            api,
            query,
            lambda a: a["data"]["result"] and a["data"]["result"][0]["value"][1] == "1",
            "recovery",
        )
        await _until(
            api, "/api/v1/query?query=lokin_doctor_root_cause", lambda a: not a["data"]["result"], "no cause"
        )
