"""The doctor knows the cluster: ``session`` names the instance that answered, ``backends`` each address's."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from tests.peers._common import free_port
from tests.peers.redis import RedisPeer
from tests.remote._util import doctor
from tests.server.conftest import ServeProcess, http_get

Serve = Callable[..., ServeProcess]


def test_session_reports_the_instance_of_the_welcome(serve_process: Serve) -> None:
    port = serve_process("--port", "0").ready_port()
    instance = json.loads(asyncio.run(http_get(port, "/health")).body)["instance"]
    run = doctor(f"ws://127.0.0.1:{port}/", only=["session"])
    r = run["session"]
    assert r.status.value == "ok", run.explain()
    assert r.evidence["instance"] == instance and re.fullmatch(r"[0-9a-f]{12}", instance)
    assert f"answered by instance {instance}" in r.summary


def test_backends_reports_each_address_instance(
    serve_process: Serve, redis_server: RedisPeer, dnsmasq: Any
) -> None:
    port = free_port()
    one = serve_process("--host", "127.0.0.1", "--port", str(port), "--redis", redis_server.url)
    two = serve_process("--host", "127.0.0.2", "--port", str(port), "--redis", redis_server.url)
    assert one.ready_port() == port and two.ready_port() == port
    dns = dnsmasq({"pair.lokin.test": ["127.0.0.1", "127.0.0.2"]})
    run = doctor(f"ws://pair.lokin.test:{port}/", only=["backends"], dns_server=dns.server)
    r = run["backends"]
    assert r.status.value == "ok", run.explain()
    instances = r.evidence["instances"]
    assert set(instances) == {"127.0.0.1", "127.0.0.2"} and len(set(instances.values())) == 2
    assert "2 distinct instances" in r.summary and f"127.0.0.2 -> {instances['127.0.0.2']}" in r.summary
    assert r.evidence["addresses"]["127.0.0.1"] == f"101 (instance {instances['127.0.0.1']})"
