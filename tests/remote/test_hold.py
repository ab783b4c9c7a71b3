"""``hold``: an idle connection through real nginx; its idle timeout is named, server pings keep it alive."""

from __future__ import annotations

import threading
from typing import Any

from tests.peers._common import scaled
from tests.remote._util import doctor


def test_proxy_idle_timeout(nginx_proxy: Any, ws_server_factory: Any) -> None:
    backend = ws_server_factory(ping_interval=None)
    proxy = nginx_proxy("read-timeout", backend.port)  # proxy_read_timeout 2s
    run = doctor(proxy.url, only=["hold"], hold=3.5, timeout=2.0)
    r = run["hold"]
    assert r.code == "hold.idle-timeout", run.explain()
    assert r.evidence["close_code"] == 1006
    assert 1.5 <= r.evidence["elapsed_s"] <= 3.0
    assert r.evidence["server_pings_at_s"] == []
    assert "proxy_read_timeout" in str(r.hint)
    assert run.root == "hold.idle-timeout"


def test_server_pings_keep_it_alive(nginx_proxy: Any, ws_server_factory: Any) -> None:
    backend = ws_server_factory(ping_interval=0.5, ping_timeout=5)
    proxy = nginx_proxy("read-timeout", backend.port)
    run = doctor(proxy.url, only=["hold"], hold=3.0, timeout=2.0)
    r = run["hold"]
    assert r.status.value == "ok", run.explain()
    assert len(r.evidence["server_pings_at_s"]) >= 3
    assert "keeps it alive" in r.summary


def test_server_closes_idle_connection(bad_server: Any) -> None:
    run = doctor(bad_server("close-after-101").url, only=["hold"], hold=2.0, timeout=2.0)
    r = run["hold"]
    assert r.code == "hold.closed-by-server", run.explain()
    assert r.evidence["close_code"] == 1011


def test_hold_runs_past_the_deadline_by_hold_seconds(ws_server_factory: Any) -> None:
    peer = ws_server_factory(ping_interval=None)
    run = doctor(peer.url, only=["hold"], hold=1.5, timeout=1.0)
    assert run["hold"].status.value == "ok", run.explain()
    assert "no server pings" in run["hold"].summary
    assert 1.4 <= run.seconds < 1.0 + 1.5 + scaled(1.0)


def test_culprit_by_idle_time() -> None:
    from lokin_doctor.checks.chain.hold import culprit

    assert culprit(60.2) is not None and "nginx" in culprit(60.2)  # type: ignore[operator]
    assert culprit(101) is not None and "Cloudflare" in culprit(101)  # type: ignore[operator]
    assert culprit(2.0) is None


def test_dropped_despite_server_pings(nginx_proxy: Any, ws_server_factory: Any) -> None:
    backend = ws_server_factory(ping_interval=0.3, ping_timeout=5)
    proxy = nginx_proxy("correct", backend.port)
    stopper = threading.Timer(1.2, proxy.stop)  # the proxy goes away under the idle connection
    stopper.start()
    try:
        run = doctor(proxy.url, only=["hold"], hold=4.0, timeout=2.0)
    finally:
        stopper.cancel()
    r = run["hold"]
    assert r.code == "hold.dropped", run.explain()
    assert len(r.evidence["server_pings_at_s"]) >= 2
