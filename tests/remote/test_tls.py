"""``tls``: one distinct cause per certificate problem, through real TLS servers."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.helpers import run_cli
from tests.peers.certs import CertPair
from tests.peers.wsserver import server_ssl_context, start_ws_server
from tests.remote._util import doctor


def test_good_certificate_with_ca_file(tls_ws_server: Any, certs: Any) -> None:
    peer = tls_ws_server(certs.good)
    run = doctor(peer.url, only=["tls", "handshake"], ca_file=certs.ca_file)
    tls = run["tls"]
    assert tls.status.value == "ok", run.explain()
    assert tls.evidence["version"].startswith("TLS")
    assert "alpn" in tls.evidence  # the websockets peer does not negotiate ALPN
    assert "localhost" in tls.evidence["sans"]
    assert tls.evidence["days_left"] > 14
    assert run["handshake"].status.value == "ok"
    assert run.root is None


def test_unknown_ca_without_ca_file(tls_ws_server: Any, certs: Any) -> None:
    peer = tls_ws_server(certs.good)
    run = doctor(peer.url, only=["tls"])
    assert run["tls"].code == "tls.unknown-ca", run.explain()
    assert run.root == "tls.unknown-ca"


def test_expired(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.expired).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.expired", run.explain()


def test_not_yet_valid(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.not_yet_valid).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.not-yet-valid", run.explain()


def test_hostname_mismatch(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.wrong_host).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.hostname-mismatch", run.explain()
    assert "wrong.example" in run["tls"].summary


def test_self_signed(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.self_signed).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.self-signed", run.explain()


def test_missing_intermediate(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.missing_intermediate).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.incomplete-chain", run.explain()
    assert len(run["tls"].evidence["served_chain"]) == 1


def test_full_chain_is_fine(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.full_chain).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].status.value == "ok", run.explain()
    assert len(run["tls"].evidence["served_chain"]) == 2


def test_not_tls(ws_server: Any) -> None:
    url = ws_server.url.replace("ws://", "wss://")
    run = doctor(url, only=["tls"])
    assert run["tls"].code == "tls.not-tls", run.explain()
    assert "ws://" in str(run["tls"].hint)


def test_h2_only_edge(openssl_server: Any, certs: Any) -> None:
    port = openssl_server(certs.good, "-alpn", "h2")
    run = doctor(f"wss://localhost:{port}/ws", only=["tls"], ca_file=certs.ca_file)
    r = run["tls"]
    assert r.code == "tls.h2-only", run.explain()
    assert r.evidence["alpn_with_h2_offered"] == "h2"


def test_alpn_http11_is_reported(openssl_server: Any, certs: Any) -> None:
    port = openssl_server(certs.good, "-alpn", "h2,http/1.1")
    run = doctor(f"wss://localhost:{port}/ws", only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].status.value == "ok", run.explain()
    assert run["tls"].evidence["alpn"] == "http/1.1"


def test_expires_soon(tls_ws_server: Any, certs: Any, tmp_path: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = certs.ca.issue_cert(
        "localhost", not_before=now - dt.timedelta(days=80), not_after=now + dt.timedelta(days=5)
    )
    certfile, keyfile = tmp_path / "soon.crt", tmp_path / "soon.key"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    pair = CertPair("soon", str(certfile), str(keyfile), ("localhost",), now, now)
    run = doctor(tls_ws_server(pair).url, only=["tls", "session"], ca_file=certs.ca_file)
    r = run["tls"]
    assert r.code == "tls.expires-soon", run.explain()
    assert r.status.value == "warn"
    assert 4 <= r.evidence["days_left"] <= 5
    assert run["session"].status.value == "ok"  # a warning does not stop the chain
    assert run.root is None


def test_insecure_goes_on_past_a_bad_certificate(tls_ws_server: Any, certs: Any) -> None:
    run = doctor(tls_ws_server(certs.self_signed).url, only=["tls", "session"], insecure=True)
    assert run["tls"].code == "tls.self-signed", run.explain()
    assert run["session"].status.value == "ok"
    assert run.root == "tls.self-signed"


def test_old_protocol_only_server(openssl_server: Any, certs: Any) -> None:
    port = openssl_server(certs.good, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    run = doctor(f"wss://localhost:{port}/ws", only=["tls"], ca_file=certs.ca_file)
    r = run["tls"]
    assert r.code == "tls.protocol-version", run.explain()
    # Both sides named: what the server speaks, what this client offers.
    assert "only TLSv1.1" in r.summary and "TLSv1.2-TLSv1.3" in r.summary
    assert r.evidence["server_speaks"]["version"] == "TLSv1.1"
    assert "TLSv1.2" in str(r.hint)


def test_cipher_mismatch(openssl_server: Any, certs: Any) -> None:
    # TLS 1.2 only, one legacy CBC-SHA1 suite that Python's default client list leaves out.
    port = openssl_server(certs.good, "-no_tls1_3", "-cipher", "ECDHE-ECDSA-AES128-SHA")
    run = doctor(f"wss://localhost:{port}/ws", only=["tls"], ca_file=certs.ca_file)
    r = run["tls"]
    assert r.code == "tls.cipher-mismatch", run.explain()
    assert "ECDHE-ECDSA-AES128-SHA" in r.summary
    assert r.evidence["server_speaks"]["version"] == "TLSv1.2"


# --- mutual TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def client_pem(certs: Any, tmp_path: Path) -> str:
    """A client certificate (and its key, one PEM file) issued by the test CA the servers trust."""
    leaf = certs.ca.issue_cert("client.lokin.test")
    path = tmp_path / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def stranger_pem(tmp_path: Path) -> tuple[str, str]:
    """A client certificate from a CA no server here trusts, as separate cert and key files."""
    leaf = trustme.CA().issue_cert("stranger.lokin.test")
    cert, key = tmp_path / "stranger.crt", tmp_path / "stranger.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


@pytest.fixture
def mtls_server(certs: Any) -> Iterator[Callable[..., Any]]:
    """``mtls_server(max_version=None)``: a wss:// websockets server that requires a client certificate."""
    peers: list[Any] = []

    def start(max_version: ssl.TLSVersion | None = None) -> Any:
        ctx = server_ssl_context(certs.good.certfile, certs.good.keyfile)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca_file)
        if max_version is not None:
            ctx.maximum_version = max_version
        peer = start_ws_server(ssl_context=ctx, kind="mtls-ws", url_hostname="localhost")
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


def test_mtls_tls13_without_a_certificate(mtls_server: Any, certs: Any) -> None:
    # TLS 1.3: the client's handshake completes; the refusal comes at the first read.
    run = doctor(mtls_server().url, only=["tls", "handshake"], ca_file=certs.ca_file)
    assert run["tls"].status.value == "ok", run.explain()
    assert run["tls"].evidence["client_certificate_requested"] is True
    assert run.root == "tls.client-cert-required", run.explain()
    assert "--client-cert" in str(run.report.root_cause.hint if run.report.root_cause else "")
    whole = doctor(mtls_server().url, ca_file=certs.ca_file)
    assert whole.root == "tls.client-cert-required", whole.explain()


def test_mtls_tls12_without_a_certificate(mtls_server: Any, certs: Any) -> None:
    # TLS 1.2: the alert (handshake_failure) comes during the handshake; the CertificateRequest names it.
    run = doctor(mtls_server(ssl.TLSVersion.TLSv1_2).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.client-cert-required", run.explain()
    assert run["tls"].evidence["client_certificate_requested"] is True


def test_mtls_handshake_command_alone(mtls_server: Any, certs: Any) -> None:
    run = doctor(mtls_server().url, only=["handshake"], ca_file=certs.ca_file)
    assert run.root == "tls.client-cert-required", run.explain()


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2])
def test_mtls_with_a_client_certificate(
    mtls_server: Any, certs: Any, client_pem: str, max_version: ssl.TLSVersion | None
) -> None:
    run = doctor(
        mtls_server(max_version).url,
        only=["tls", "session"],
        ca_file=certs.ca_file,
        client_cert=client_pem,
        linger=0,
    )
    assert run.root is None, run.explain()
    assert run["session"].status.value == "ok"


def test_mtls_with_an_untrusted_certificate(
    mtls_server: Any, certs: Any, stranger_pem: tuple[str, str]
) -> None:
    cert, key = stranger_pem
    run = doctor(
        mtls_server(ssl.TLSVersion.TLSv1_2).url,
        only=["tls"],
        ca_file=certs.ca_file,
        client_cert=cert,
        client_key=key,
    )
    assert run["tls"].code == "tls.client-cert-rejected", run.explain()


def test_nginx_requires_a_client_certificate(
    nginx_proxy: Any, ws_server: Any, certs: Any, client_pem: str
) -> None:
    conf = f"ssl_verify_client on;\n        ssl_client_certificate {certs.ca_file};"
    proxy = nginx_proxy("tls", ws_server.port, extra_server_conf=conf)
    run = doctor(proxy.url, only=["tls", "handshake"], ca_file=certs.ca_file)
    assert run.root == "tls.client-cert-required", run.explain()
    assert "nginx" in run["handshake"].summary
    assert run["handshake"].evidence["status_line"].startswith("HTTP/1.1 400")
    good = doctor(proxy.url, only=["tls", "session"], ca_file=certs.ca_file, client_cert=client_pem, linger=0)
    assert good.root is None, good.explain()
    # The whole chain (proxy comparison, variants...) still names mutual TLS as the root cause.
    whole = doctor(proxy.url, ca_file=certs.ca_file, backend=ws_server.url)
    assert whole.root == "tls.client-cert-required", whole.explain()


def test_client_cert_options_on_the_cli(mtls_server: Any, certs: Any, client_pem: str) -> None:
    peer = mtls_server()
    run = run_cli(
        "handshake",
        peer.url,
        "--ca-file",
        certs.ca_file,
        "--client-cert",
        client_pem,
        "--json",
        "--linger",
        "0",
    )
    assert run.code == 0, run.stdout
    bad = run_cli("handshake", peer.url, "--ca-file", certs.ca_file, "--json", "--linger", "0")
    assert bad.root_code == "tls.client-cert-required"


def test_client_cert_required_is_not_blamed_on_proxy_pass(
    nginx_proxy: Any, ws_server: Any, certs: Any
) -> None:
    # A lokin-doctor serve elsewhere on the machine makes the backend look like "another program's port"
    # to the nginx check. Mutual TLS is decided by nginx itself before any proxy_pass: it stays the root cause.
    from tests.server.conftest import ServeProcess

    other = ServeProcess("--host", "127.0.0.1", "--port", "0")
    try:
        assert other.ready_port()
        conf = f"ssl_verify_client on;\n        ssl_client_certificate {certs.ca_file};"
        proxy = nginx_proxy("tls", ws_server.port, extra_server_conf=conf)
        run = doctor(proxy.url, ca_file=certs.ca_file)
        assert run.root == "tls.client-cert-required", run.explain()
        assert run["nginx"].status.value != "fail", run.explain()
    finally:
        other.stop()
