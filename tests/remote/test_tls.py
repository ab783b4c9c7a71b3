"""``tls``: one distinct cause per certificate problem, through real TLS servers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.peers.certs import CertPair
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
    assert r.code == "tls.handshake-failed", run.explain()
    assert "TLSv1.2" in str(r.hint)
