"""A real forward proxy: Debian's ``tinyproxy`` (1.11), started in the foreground with its own
configuration in the test's tmp dir, on 127.0.0.1 and a free port.

Fixture ``tinyproxy(connect_ports=(), basic_auth=None, allow="127.0.0.1") -> ProxyPeer``:
``connect_ports`` become ``ConnectPort`` lines (none: CONNECT to every port; ``(443,)``: to 443 only, as
squid's ``SSL_ports`` does by default), ``basic_auth=("user", "secret")`` a ``BasicAuth`` line (then
CONNECT without credentials gets ``407`` with ``Proxy-Authenticate: Basic realm="Tinyproxy"``, wrong ones
``401``), ``filter_hosts=("127.0.0.1",)`` a ``Filter`` file of those host names (then tinyproxy answers
``403 Filtered`` to CONNECT to them, any port). ``ProxyPeer.url`` is ``http://127.0.0.1:PORT``; ``.stop()`` stops it early (SIGTERM by PID).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    port_accepts,
    require_binary,
)


@dataclass
class ProxyPeer:
    host: str
    port: int
    pid: int | None
    config: str
    proc: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


def config_text(
    port: int,
    connect_ports: Sequence[int],
    basic_auth: tuple[str, str] | None,
    allow: str,
    filter_file: str | None = None,
) -> str:
    lines = [
        f"Port {port}",
        f"Listen {LOOPBACK}",
        "Timeout 10",
        f"Allow {allow}",
        "MaxClients 20",
        "LogLevel Info",
        *(f"ConnectPort {p}" for p in connect_ports),
    ]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    if filter_file is not None:
        lines += [f'Filter "{filter_file}"', "FilterType fnmatch"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tinyproxy(_peer_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ProxyPeer]:
    """Start tinyproxy: ``tinyproxy(connect_ports=(), basic_auth=None, allow="127.0.0.1", filter_hosts=())
    -> ProxyPeer``."""

    def start(
        connect_ports: Sequence[int] = (),
        basic_auth: tuple[str, str] | None = None,
        allow: str = LOOPBACK,
        filter_hosts: Sequence[str] = (),
    ) -> ProxyPeer:
        binary = require_binary("tinyproxy", "apt-get install -y tinyproxy")
        directory = tmp_path_factory.mktemp("tinyproxy")
        proc: ManagedProcess | None = None
        port = 0
        conf = directory / "tinyproxy.conf"
        filter_file: str | None = None
        if filter_hosts:
            (directory / "filter").write_text("".join(f"{h}\n" for h in filter_hosts))
            filter_file = str(directory / "filter")
        for attempt in range(3):
            port = free_port()
            conf.write_text(config_text(port, connect_ports, basic_auth, allow, filter_file))
            proc = ManagedProcess(
                [binary, "-d", "-c", str(conf)], log=directory / f"tinyproxy-{attempt}.log", name="tinyproxy"
            ).start()
            _peer_stack.push(proc.stop)
            if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
                break
            if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
                continue
            proc.fail_start(f"port {port} not accepting")
        assert proc is not None
        return ProxyPeer(LOOPBACK, port, proc.pid, str(conf), proc)

    return start
