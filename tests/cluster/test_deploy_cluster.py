"""The shipped cluster deployment works: deploy/nginx-lokin-cluster.conf in a real nginx in front of two
``serve --redis`` instances, and deploy/lokin-ws@.service's command line as systemd would run it."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from lokin_doctor.server import ServerConfig, running_server
from tests.peers._common import LOOPBACK, ManagedProcess, free_port, port_accepts, require_binary
from tests.peers.nginx import NginxOptions, render_config
from tests.peers.redis import RedisPeer
from tests.server.conftest import ServeProcess

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_EXAMPLE = DEPLOY / "nginx-lokin-cluster.conf"
UNIT = DEPLOY / "lokin-ws@.service"


def _between(text: str, what: str) -> str:
    return text.split(f"# BEGIN lokin {what}", 1)[1].split(f"# END lokin {what}", 1)[0]


@pytest.fixture
def nginx_cluster(tmp_path: Path) -> Iterator[Callable[[list[int]], int]]:
    """``nginx_cluster([port_a, port_b]) -> nginx port``: the example's upstream and location, for real."""
    binary = require_binary("nginx", "apt-get install -y nginx")
    procs: list[ManagedProcess] = []

    def start(backends: list[int]) -> int:
        example = NGINX_EXAMPLE.read_text()
        upstream = _between(example, "upstream")
        servers = iter(backends)
        upstream = re.sub(
            r"server 127\.0\.0\.1:808\d", lambda m: f"server 127.0.0.1:{next(servers)}", upstream
        )
        location = _between(example, "location").replace("location /ws {", "location /cluster-ws {")
        directory = tmp_path / "nginx"
        for sub in ("logs", "temp", "html"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "html" / "page.html").write_text("<p>page</p>")
        port = free_port()
        conf = render_config(
            directory, "correct", port, backends[0], NginxOptions(extra_server_conf=location)
        )
        conf = conf.replace("\n    server {", "\n" + upstream + "\n    server {", 1)
        (directory / "nginx.conf").write_text(conf)
        proc = ManagedProcess(
            [
                binary,
                "-p",
                str(directory),
                "-c",
                str(directory / "nginx.conf"),
                "-e",
                "stderr",
                "-g",
                "daemon off;",
            ],
            log=directory / "nginx.log",
            cwd=directory,
            name="nginx (cluster)",
        ).start()
        procs.append(proc)
        if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
            proc.fail_start(f"port {port} not accepting")
        return port

    yield start
    for proc in procs:
        proc.stop()


async def test_nginx_upstream_spreads_clients_over_two_instances_in_one_room(
    nginx_cluster: Callable[[list[int]], int], redis_server: RedisPeer
) -> None:
    config = ServerConfig(port=0, quiet=True, redis=redis_server.url, max_per_ip=0)
    async with running_server(config) as a, running_server(config) as b:
        for s in (a, b):
            for _ in range(200):
                if s.health()["status"] == "ok":
                    break
                await asyncio.sleep(0.05)
        port = nginx_cluster([a.port, b.port])
        url = f"ws://127.0.0.1:{port}/cluster-ws"
        clients = []
        for _ in range(6):
            ws = await connect(url)
            clients.append((ws, json.loads(await ws.recv())))
        # least_conn alternates between two equally loaded instances: both get clients.
        instances = {w["instance"] for _, w in clients}
        assert instances == {a.health()["instance"], b.health()["instance"]}
        assert a.connections + b.connections == 6 and min(a.connections, b.connections) >= 2
        sender, hello = clients[0]
        await sender.send(json.dumps({"type": "broadcast", "text": "à tous"}))
        for ws, _ in clients:
            message = json.loads(await asyncio.wait_for(ws.recv(), 3))
            assert message["text"] == "à tous" and message["from"] == hello["clientId"]
            with pytest.raises(TimeoutError):  # exactly once
                await asyncio.wait_for(ws.recv(), 0.3)
        for ws, _ in clients:
            await ws.close()
        # One instance stops: new clients still get in, through the other.
        await a.close()
        for _ in range(3):
            async with connect(url) as ws:
                assert json.loads(await ws.recv())["instance"] == b.health()["instance"]


def _unit_command(port: int, redis_url: str) -> list[str]:
    exec_start = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart=").replace("%i", str(port)))
    assert argv[0] == "/usr/local/bin/lokin-doctor" and argv[1] == "serve"
    return [
        arg.replace("redis://127.0.0.1:6379/0", redis_url) for arg in argv[2:]
    ]  # ServeProcess adds "serve"


async def test_systemd_template_command_line_runs(
    serve_process: Callable[..., ServeProcess], redis_server: RedisPeer
) -> None:
    port = free_port()
    args = _unit_command(port, redis_server.url)
    assert f"--port {port}" in " ".join(args) and "--redis" in args
    proc = serve_process(*args)
    assert proc.ready_port() == port
    proc.wait_for(r"Redis broker up", timeout=10)
    async with connect(f"ws://127.0.0.1:{port}/", origin="https://your-domain.example") as ws:  # type: ignore[arg-type]
        welcome: dict[str, Any] = json.loads(await ws.recv())
        assert welcome["instance"] and welcome["clientId"].endswith(welcome["instance"])
