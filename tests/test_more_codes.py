"""Codes of the chain and the tools produced for real: ``tcp.error`` (a connect that fails with an errno
that is neither refused, timeout nor unreachable), ``session.no-greeting`` (``load`` against a server that
upgrades and never greets), ``hold.no-connection`` (``serve --max-per-ip 1``: the hold check's own
connection is one too many) and ``load.client-limit`` (``load`` in a process whose file descriptors run
out)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts, scaled
from tests.peers.netns import isolated_cli

ROOT = Path(__file__).resolve().parent.parent


def test_a_link_local_address_without_its_interface(tmp_path: Path) -> None:
    # connect() to fe80::/10 without a zone is EINVAL: the kernel refuses before any packet (and the
    # namespace has no interface but loopback anyway).
    run = isolated_cli(
        ["all", "ws://[fe80::1]:8080/", "--json", "--no-variants", "--timeout", "3", "--lang", "en"], tmp_path
    )
    tcp = run.check("tcp")
    assert tcp["code"] == "tcp.error", tcp
    assert run.root_code == "tcp.error"
    assert tcp["summary"] == "cannot connect to [fe80::1]:8080: Invalid argument"
    assert "link-local" in tcp["hint"] and "fe80::1%eth0" in tcp["hint"]
    assert run.check("handshake")["status"] == "skip"


def _load(url: str, *args: str) -> dict[str, object]:
    run = run_cli("load", url, "--duration", "0", "--json", *args, subprocess=True)
    assert run.code == 1, run.stdout + run.stderr
    return run.report


def test_a_server_that_upgrades_and_never_greets(ws_server_factory) -> None:
    peer = ws_server_factory(greeting=False)
    doc = _load(peer.url, "-n", "3", "--timeout", "1")
    failures = doc["failures"]
    assert failures["by_code"] == {"session.no-greeting": 3}  # type: ignore[index]
    example = failures["examples"]["session.no-greeting"]  # type: ignore[index]
    assert example["summary"] == "no first message (greeting) from the server within 1 s of the upgrade"
    assert '{"type":"welcome",...}' in example["hint"]
    assert doc["handshake_ms"]["count"] == 3  # type: ignore[index]  # the upgrades did succeed
    assert len(peer.requests) == 3


@pytest.fixture
def serve_one_per_ip(tmp_path: Path) -> Iterator[int]:
    """``lokin-doctor serve --max-per-ip 1`` on 127.0.0.1: a second connection from 127.0.0.1 gets 429."""
    port = free_port()
    proc = ManagedProcess(
        [
            sys.executable,
            "-m",
            "lokin_doctor",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--max-per-ip",
            "1",
        ],
        log=tmp_path / "serve.log",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        name="lokin-doctor serve --max-per-ip 1",
    ).start()
    try:
        if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=15):
            proc.fail_start(f"port {port} not accepting")
        yield port
    finally:
        proc.stop()


def test_hold_cannot_get_its_own_connection(serve_one_per_ip: int) -> None:
    port = serve_one_per_ip
    # Without session, the handshake's connection stays open while hold opens its own: the second one.
    run = run_cli("all", f"ws://127.0.0.1:{port}/", "--only", "hold", "--hold", "1", "--json", "--lang", "en")
    assert run.check("handshake")["status"] == "ok"
    hold = run.check("hold")
    assert hold["code"] == "hold.no-connection", hold
    assert run.root_code == "hold.no-connection"
    assert hold["summary"].startswith("could not open the connection to hold: HTTP 429 Too Many Requests")
    assert "limit --max-per-ip 1" in hold["summary"]


def test_load_runs_out_of_file_descriptors(ws_server, tmp_path: Path) -> None:
    # 200 connections fit the hard limit (300 >= 200 + the 64 kept), but the process inherits 200 open
    # files: it runs out of descriptors half-way, which is this machine's limit, not the server's.
    limit, inherited, connections = 300, 200, 200
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(inherited)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lokin_doctor", "load", ws_server.url, "-n", str(connections)]
            + ["--duration", "0", "--timeout", "5", "--json"],
            capture_output=True,
            text=True,
            timeout=scaled(60),
            env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)},
            pass_fds=spare,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        for fd in spare:
            os.close(fd)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    by_code = doc["failures"]["by_code"]
    assert set(by_code) == {"load.client-limit"}, by_code
    assert 0 < by_code["load.client-limit"] < connections
    assert doc["connections"]["opened"] + by_code["load.client-limit"] == connections
    example = doc["failures"]["examples"]["load.client-limit"]
    assert "Too many open files" in example["summary"]
    assert "ulimit -n" in example["hint"]
