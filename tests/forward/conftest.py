"""The forward proxy peers: real tinyproxy (tests/peers/tinyproxy.py) and nginx used as a plain forward proxy."""

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts, require_binary
from tests.peers.tinyproxy import tinyproxy  # noqa: F401

NGINX_FORWARD = """worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
    uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
    server {{
        listen {host}:{port};
        # nginx used as a forward proxy: it relays absolute-form requests, it cannot CONNECT.
        location / {{ proxy_pass http://$http_host; }}
    }}
}}
"""


@pytest.fixture
def nginx_forward_proxy(_peer_stack: Any, tmp_path: Path) -> Callable[[], int]:
    """Real nginx configured as a (plain-HTTP) forward proxy on 127.0.0.1; returns its port."""

    def start() -> int:
        binary = require_binary("nginx", "apt-get install -y nginx")
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_FORWARD.format(d=tmp_path, host=LOOPBACK, port=port))
        proc = ManagedProcess(
            [binary, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
            log=tmp_path / "nginx.log",
            name="nginx forward proxy",
        ).start()
        _peer_stack.push(proc.stop)
        if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
            proc.fail_start(f"port {port} not accepting")
        return port

    return start
