"""``tls``: one distinct cause per certificate problem, through real TLS servers."""

from __future__ import annotations

from tests.remote._util import doctor


def test_good_certificate_with_ca_file(tls_ws_server, certs):
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


def test_unknown_ca_without_ca_file(tls_ws_server, certs):
    peer = tls_ws_server(certs.good)
    run = doctor(peer.url, only=["tls"])
    assert run["tls"].code == "tls.unknown-ca", run.explain()
    assert run.root == "tls.unknown-ca"


def test_expired(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.expired).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.expired", run.explain()


def test_not_yet_valid(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.not_yet_valid).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.not-yet-valid", run.explain()


def test_hostname_mismatch(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.wrong_host).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.hostname-mismatch", run.explain()
    assert "wrong.example" in run["tls"].summary


def test_self_signed(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.self_signed).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.self-signed", run.explain()


def test_missing_intermediate(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.missing_intermediate).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].code == "tls.incomplete-chain", run.explain()
    assert len(run["tls"].evidence["served_chain"]) == 1


def test_full_chain_is_fine(tls_ws_server, certs):
    run = doctor(tls_ws_server(certs.full_chain).url, only=["tls"], ca_file=certs.ca_file)
    assert run["tls"].status.value == "ok", run.explain()
    assert len(run["tls"].evidence["served_chain"]) == 2


def test_not_tls(ws_server):
    url = ws_server.url.replace("ws://", "wss://")
    run = doctor(url, only=["tls"])
    assert run["tls"].code == "tls.not-tls", run.explain()
    assert "ws://" in run["tls"].hint

