"""Peers only the remote tests need; the shared ones come from tests/peers/fixtures.py."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts, require_binary
from tests.peers.certs import CertPair


@pytest.fixture
def openssl_server(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """``openssl_server(cert, *args) -> port``: ``openssl s_server -www`` on 127.0.0.1 with extra options.

    With ``-alpn h2`` it answers a ClientHello offering only http/1.1 with a no_application_protocol alert:
    an edge that speaks HTTP/2 only.
    """
    started: list[ManagedProcess] = []

    def start(cert: CertPair, *args: str) -> int:
        binary = require_binary("openssl", "apt-get install -y openssl")
        for attempt in range(3):
            port = free_port()
            proc = ManagedProcess(
                [
                    binary,
                    "s_server",
                    "-accept",
                    f"{LOOPBACK}:{port}",
                    "-cert",
                    cert.certfile,
                    "-key",
                    cert.keyfile,
                    "-www",
                    "-quiet",
                    *args,
                ],
                log=tmp_path / f"openssl-{attempt}.log",
                name="openssl s_server",
            ).start()
            started.append(proc)
            if proc.wait_ready(functools.partial(port_accepts, LOOPBACK, port), timeout=10):
                return port
            if attempt == 2:
                proc.fail_start(f"port {port} not accepting")
        raise AssertionError("unreachable")

    yield start
    for proc in reversed(started):
        proc.stop()
