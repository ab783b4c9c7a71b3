"""Production safety: Origin allow-list, connection caps, message size, handshake timeout, TLS."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import resource
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus

from lokin_doctor.server import ServerConfig, ServerStartError, running_server
from lokin_doctor.server.origins import OriginPolicy, origin_problem

from .conftest import http_get, wait_until


async def refused_status(url: str, **kwargs: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with asyncio.timeout(5), connect(url, **kwargs):
            pass
    return info.value


async def opened(url: str, **kwargs: Any) -> ClientConnection:
    async with asyncio.timeout(5):
        ws = await connect(url, **kwargs)
        assert json.loads(await ws.recv())["type"] == "welcome"
    return ws


# -- Origin ------------------------------------------------------------------------------------


async def test_foreign_origin_gets_403_and_a_log_line(
    make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_server(allow_origins=("https://lokin.app",), quiet=False) as srv:
        refused = await refused_status(srv.url, origin="https://evil.example")
        assert refused.response.status_code == 403
        assert b"https://evil.example is not allowed" in refused.response.body
        assert srv.health()["rejections"]["origin"] == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "reject" in line)
    assert "403" in line and "reason=origin" in line and "origin=https://evil.example" in line


async def test_allowed_origin_gets_101(make_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    async with make_server(allow_origins=("https://lokin.app", "https://*.lokin.dev"), quiet=False) as srv:
        for origin in ("https://lokin.app", "https://beta.lokin.dev"):
            ws = await opened(srv.url, origin=origin)
            assert ws.response is not None and ws.response.status_code == 101
            await ws.close()
        ws = await opened(srv.url)  # no Origin header: not a browser, cannot be hijacked
        await ws.close()
    err = capsys.readouterr().err
    assert "origin=https://beta.lokin.dev" in err and "client=user_" in err


def test_origin_policy_rules() -> None:
    policy = OriginPolicy(("https://lokin.app/", "https://*.lokin.dev", "null"))
    assert policy.allows("https://LOKIN.app")
    assert policy.allows("https://a.b.lokin.dev")
    assert policy.allows("null")
    assert policy.allows(None)
    assert not policy.allows("https://lokin.dev")
    assert not policy.allows("https://lokin.dev.evil.com")
    assert not policy.allows("http://lokin.app")
    assert OriginPolicy(()).allows("https://anything") and OriginPolicy(("*",)).any
    assert origin_problem("lokin.app") is not None
    assert origin_problem("https://lokin.app/path") is not None
    assert origin_problem("https://lokin.app:8443") is None


# -- connection caps -----------------------------------------------------------------------------


async def test_per_ip_cap_gets_429(make_server: Any) -> None:
    async with make_server(max_per_ip=2) as srv:
        first = await opened(srv.url)
        second = await opened(srv.url)
        refused = await refused_status(srv.url)
        assert refused.response.status_code == 429
        assert b"--max-per-ip 2" in refused.response.body
        assert refused.response.headers["Retry-After"]
        # Another loopback address is another client IP: not capped.
        other = await opened(srv.url, local_addr=("127.0.0.2", 0))
        # Closing one frees its slot.
        await first.close()
        await wait_until(lambda: srv.connections == 2, what="the slot to be released")
        third = await opened(srv.url)
        for ws in (second, other, third):
            await ws.close()
        assert srv.health()["rejections"]["max_per_ip"] == 1


async def test_max_connections_gets_503(make_server: Any) -> None:
    async with make_server(max_connections=2, max_per_ip=0) as srv:
        clients = [await opened(srv.url), await opened(srv.url, local_addr=("127.0.0.2", 0))]
        refused = await refused_status(srv.url, local_addr=("127.0.0.3", 0))
        assert refused.response.status_code == 503
        assert b"Server full" in refused.response.body and b"--max-connections 2" in refused.response.body
        for ws in clients:
            await ws.close()


# -- messages ----------------------------------------------------------------------------------


async def test_oversized_message_closes_with_1009(make_server: Any) -> None:
    async with make_server(max_message_size=1024) as srv:
        ws = await opened(srv.url)
        await ws.send("x" * 1024)  # at the limit: echoed
        async with asyncio.timeout(5):
            assert await ws.recv() == "x" * 1024
        await ws.send("x" * 1025)
        with pytest.raises(ConnectionClosedError) as info:
            async with asyncio.timeout(5):
                await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


# -- half-open connections -----------------------------------------------------------------------


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """Both ends of 1,000 sockets live in this process: raise the soft RLIMIT_NOFILE if needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < 2500:
        pytest.skip(f"the hard open-files limit ({hard}) is too low for 1,000 half-open connections")
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("enough_file_descriptors")
async def test_half_open_connections_do_not_block_real_clients(make_server: Any) -> None:
    count = 1000
    async with make_server(open_timeout=1.5) as srv:
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                err = sock.connect_ex(("127.0.0.1", srv.port))
                assert err in (0, errno.EINPROGRESS)
                socks.append(sock)
            await wait_until(
                lambda: srv.health()["handshaking"] >= count, timeout=8, what="1000 accepted sockets"
            )
            started = time.monotonic()
            ws = await opened(srv.url)  # a real client still gets its welcome, quickly
            assert time.monotonic() - started < 1.0
            # ... and the open timeout cuts every half-open connection.
            await wait_until(
                lambda: srv.health()["handshaking"] == 0, timeout=6, what="half-open sockets to be cut"
            )
            assert srv.connections == 1
            await ws.close()
            metrics = (await http_get(srv.port, "/metrics")).text
            assert f"lokin_handshakes_incomplete_total {float(count)}" in metrics
            sample = socks[0]
            sample.setblocking(True)
            sample.settimeout(2)
            try:
                assert sample.recv(1) == b""
            except ConnectionResetError:
                pass  # aborted: RST
        finally:
            for sock in socks:
                sock.close()


# -- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cert_files(ca: trustme.CA, tmp_path: Path) -> tuple[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    return str(certfile), str(keyfile)


async def test_native_wss(make_server: Any, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    certfile, keyfile = cert_files
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with make_server(certfile=certfile, keyfile=keyfile) as srv:
        assert srv.url == f"wss://127.0.0.1:{srv.port}/"
        ws = await opened(srv.url, ssl=client_ctx)
        await ws.send("over tls")
        async with asyncio.timeout(5):
            assert await ws.recv() == "over tls"
        await ws.close()


async def test_wss_client_on_plain_port_is_named(server: Any) -> None:
    client_ctx = ssl.create_default_context()
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    with pytest.raises((ssl.SSLError, OSError, InvalidMessage)):
        async with asyncio.timeout(5), connect(f"wss://127.0.0.1:{server.port}/", ssl=client_ctx):
            pass
    assert time.monotonic() - started < 2  # cut at once, not after the open timeout
    assert server.health()["rejections"]["tls_on_plain_port"] == 1


async def test_bad_certificate_files(tmp_path: Path, ca: trustme.CA, cert_files: tuple[str, str]) -> None:
    certfile, keyfile = cert_files
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello\n")
    other_key = tmp_path / "other-key.pem"
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(other_key))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"certfile": str(tmp_path / "missing.pem")}, "TLS certificate file not found"),
        ({"certfile": str(garbage), "keyfile": keyfile}, "is not a PEM certificate"),
        ({"certfile": certfile}, "no PEM private key"),
        ({"certfile": certfile, "keyfile": str(other_key)}, "does not match the certificate"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ServerStartError, match=message) as info:
            async with running_server(ServerConfig(port=0, quiet=True, **kwargs)):
                pass
        assert "\n" not in str(info.value)


# -- start errors --------------------------------------------------------------------------------


async def test_port_in_use_names_the_holder() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ServerStartError) as info:
            async with running_server(ServerConfig(port=port, quiet=True)):
                pass
    message = str(info.value)
    assert f"port {port} is already in use" in message
    assert f"pid {os.getpid()}" in message


async def test_address_not_on_this_machine() -> None:
    with pytest.raises(ServerStartError, match="is not an address of this machine"):
        async with running_server(ServerConfig(host="192.0.2.1", port=0, quiet=True)):
            pass


async def test_bind_error_messages() -> None:
    from lokin_doctor.server.bind import bind_error

    config = ServerConfig(port=80, quiet=True)
    message = await bind_error(config, PermissionError(errno.EACCES, "Permission denied"))
    assert "permission denied" in message and "below 1024" in message
    message = await bind_error(config, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert message.startswith("cannot listen on --host") and "Name or service not known" in message


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="port"):
        ServerConfig(port=70000)
    with pytest.raises(ValueError, match="keyfile needs certfile"):
        ServerConfig(keyfile="k.pem")
