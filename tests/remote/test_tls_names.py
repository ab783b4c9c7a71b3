"""TLS names: a server that refuses the handshake for the server name sent (SNI), told apart.

Real nginx with ``ssl_reject_handshake on`` in its default server and a named server (``lokin.test``,
a trustme certificate) proxying to a websockets backend: the URL by IP sends no SNI (``tls.no-sni``),
a name nginx does not know reaches it through ``--resolve`` (``tls.unknown-name``), the right name
through ``--resolve`` works. A Python TLS peer that answers a ClientHello without SNI with a
handshake_failure (as some CDNs do) is told apart from a server that resets every connection.
"""

from __future__ import annotations

import asyncio
import ssl
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.peers._common import LOOPBACK, LoopThread, ManagedProcess, free_port, port_accepts, require_binary


def _nginx(tmp_path: Path, cert: Any, backend_port: int) -> tuple[ManagedProcess, int]:
    binary = require_binary("nginx", "apt-get install -y nginx")
    port = free_port()
    for sub in ("logs", "temp"):
        (tmp_path / sub).mkdir(exist_ok=True)
    d = tmp_path
    conf = d / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen {LOOPBACK}:{port} ssl default_server;
        ssl_reject_handshake on;
    }}
    server {{
        listen {LOOPBACK}:{port} ssl;
        server_name lokin.test;
        ssl_certificate {cert.certfile};
        ssl_certificate_key {cert.keyfile};
        location /ws {{
            proxy_pass http://{LOOPBACK}:{backend_port}/;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
"""
    )
    proc = ManagedProcess(
        [binary, "-p", str(d), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        log=d / "nginx.log",
        cwd=d,
        name="nginx (ssl_reject_handshake)",
    ).start()
    if not proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=10):
        proc.fail_start(f"port {port} not accepting")
    return proc, port


@pytest.fixture
def reject_nginx(tmp_path: Path, certs: Any, ws_server: Any) -> Any:
    proc, port = _nginx(tmp_path, certs.good, ws_server.port)
    yield port
    proc.stop()


def test_ip_url_sends_no_sni_and_is_told_so(reject_nginx: int, certs: Any) -> None:
    url = f"wss://{LOOPBACK}:{reject_nginx}/ws"
    run = run_cli("all", url, "--json", "--ca-file", certs.ca_file, "--no-variants")
    assert run.code == 1
    tls = run.check("tls")
    assert tls["code"] == "tls.no-sni", tls
    assert tls["evidence"]["sni_sent"] is None
    assert f"names the IP address {LOOPBACK}" in tls["summary"] and "unrecognized_name" in tls["summary"]
    assert f"--resolve NAME:{reject_nginx}:{LOOPBACK}" in tls["hint"]
    # The TLS refusal is the root cause, not the default server block's missing proxy_pass.
    assert run.root_code == "tls.no-sni", run.report["root_cause"]
    assert run.check("nginx")["status"] in ("skip", "ok"), run.check("nginx")
    assert run.check("handshake")["status"] == "skip"


def test_a_name_nginx_does_not_know_is_named(reject_nginx: int, certs: Any) -> None:
    url = f"wss://other.test:{reject_nginx}/ws"
    run = run_cli(
        "all",
        url,
        "--json",
        "--ca-file",
        certs.ca_file,
        "--resolve",
        f"other.test:{reject_nginx}:{LOOPBACK}",
        "--no-variants",
    )
    assert run.code == 1
    assert run.check("dns")["evidence"]["addresses"] == [LOOPBACK]
    tls = run.check("tls")
    assert tls["code"] == "tls.unknown-name", tls
    assert tls["evidence"]["sni_sent"] == "other.test"
    assert "'other.test'" in tls["summary"] and "--resolve" in tls["summary"]
    assert "server_name other.test" in tls["hint"]
    assert run.root_code == "tls.unknown-name"


def test_the_right_name_through_resolve_works(reject_nginx: int, certs: Any) -> None:
    url = f"wss://lokin.test:{reject_nginx}/ws"
    run = run_cli(
        "all", url, "--json", "--ca-file", certs.ca_file, "--resolve", f"lokin.test:{reject_nginx}:{LOOPBACK}"
    )
    assert run.check("tls")["status"] == "ok", run.check("tls")
    assert run.check("handshake")["status"] == "ok", run.check("handshake")
    assert run.check("dns-records")["status"] == "skip"
    assert run.code == 0, run.report["root_cause"]


def test_handshake_command_takes_resolve(reject_nginx: int, certs: Any) -> None:
    url = f"wss://lokin.test:{reject_nginx}/ws"
    run = run_cli(
        "handshake",
        url,
        "--json",
        "--ca-file",
        certs.ca_file,
        "--resolve",
        f"lokin.test:{reject_nginx}:{LOOPBACK}",
    )
    assert run.code == 0, run.stdout


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("lokin.test:443", "HOST:PORT:ADDR"),
        ("lokin.test:99999:127.0.0.1", "from 1 to 65535"),
        ("lokin.test:443:not-an-ip", "is not an IP address"),
        (":443:127.0.0.1", "HOST:PORT:ADDR"),
    ],
)
def test_bad_resolve_values_are_usage_errors(value: str, words: str) -> None:
    run = run_cli("all", "wss://lokin.test/", "--resolve", value)
    assert run.code == 2 and words in run.stderr, run.stderr


# -- a peer that refuses a ClientHello without SNI with handshake_failure ----------------------------------


@pytest.fixture
def sni_only_peer(certs: Any) -> Any:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.good.certfile, certs.good.keyfile)

    def callback(sock: Any, name: str | None, context: Any) -> int | None:
        return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE if name is None else None

    ctx.sni_callback = callback
    thread = LoopThread("peer-sni-only")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                await reader.read(1024)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(on_connect, LOOPBACK, 0, ssl=ctx)

    server = thread.run(start())
    yield server.sockets[0].getsockname()[1]

    async def close() -> None:
        server.close()

    thread.run(close(), timeout=5)
    thread.stop()


def test_handshake_failure_without_sni_is_confirmed_by_a_named_probe(sni_only_peer: int, certs: Any) -> None:
    run = run_cli(
        "all", f"wss://{LOOPBACK}:{sni_only_peer}/", "--json", "--ca-file", certs.ca_file, "--no-variants"
    )
    tls = run.check("tls")
    assert tls["code"] == "tls.no-sni", tls
    assert tls["evidence"]["with_a_name"]["result"] == "a certificate"
    assert (
        "ended the handshake" in tls["summary"]
        and "lokin-doctor.invalid gets a certificate" in tls["summary"]
    )


def test_a_server_that_resets_everything_is_not_called_an_sni_problem(bad_server: Any) -> None:
    url = bad_server("reset-at-accept").url.replace("ws://", "wss://")
    run = run_cli("all", url, "--json", "--no-variants", "-t", "2")
    assert run.root_code == "tls.reset", run.report["root_cause"]
