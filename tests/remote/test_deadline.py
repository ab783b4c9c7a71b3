"""A silent or unreachable remote costs one timeout, not one per check: everything shares ctx.deadline."""

from __future__ import annotations

from typing import Any

from lokin_doctor.runner import REMOTE_CHECKS
from tests.helpers import run_cli
from tests.peers._common import scaled
from tests.remote._util import doctor

TIMEOUT = 1.0
#: One timeout plus a margin for the loop's own work; LOKIN_TEST_TIMEOUT_FACTOR widens the margin on slow machines.
BOUND = TIMEOUT + scaled(1.5)


def test_silent_ws_remote_costs_one_timeout(bad_server: Any) -> None:
    peer = bad_server("silent")
    run = doctor(peer.url, only=list(REMOTE_CHECKS), timeout=TIMEOUT, origin="https://lokin.example")
    assert run["handshake"].code == "handshake.no-response", run.explain()
    assert run.seconds < BOUND, run.seconds
    # variants started early (speculatively) and still had time to try its URLs
    assert "tried" in run["variants"].evidence, run["variants"]


def test_silent_wss_remote_costs_one_timeout(bad_server: Any) -> None:
    peer = bad_server("silent")
    run = doctor(f"wss://localhost:{peer.port}/ws", only=list(REMOTE_CHECKS), timeout=TIMEOUT)
    assert run["tls"].code == "tls.timeout", run.explain()
    assert run.seconds < BOUND, run.seconds


def test_silent_dns_server_costs_one_timeout() -> None:
    from tests.peers.fixtures import free_port

    run = doctor(
        "wss://lokin.test/ws",
        only=list(REMOTE_CHECKS),
        timeout=TIMEOUT,
        dns_server=f"127.0.0.1:{free_port(udp=True)}",
    )
    assert run.root == "dns.timeout", run.explain()
    assert run.seconds < BOUND, run.seconds


def test_probe_wss_cli_silent_remote(bad_server: Any) -> None:
    peer = bad_server("silent")
    cli = run_cli("probe-wss", f"ws://127.0.0.1:{peer.port}/ws", "--json", "--timeout", str(TIMEOUT))
    assert cli.code == 1
    assert cli.root_code == "handshake.no-response"
    # The interpreter's start-up (~0.3 s, more on a busy machine) is in this figure too.
    assert cli.seconds < BOUND + scaled(1.0), cli.seconds
