"""``variants``: when the target fails, the nearby URL that works is named with the client fix."""

from __future__ import annotations

from typing import Any

from tests.peers.fixtures import free_port
from tests.remote._util import doctor


def test_ws_to_a_tls_server_finds_wss(tls_ws_server: Any, certs: Any) -> None:
    peer = tls_ws_server(certs.good)
    plain = f"ws://127.0.0.1:{peer.port}/"
    run = doctor(plain, ca_file=certs.ca_file)
    r = run["variants"]
    assert r.code == "variants.url-mismatch", run.explain()
    assert r.evidence["works"] == f"wss://127.0.0.1:{peer.port}/"
    assert f"use wss://127.0.0.1:{peer.port}/ in the client" in str(r.hint)
    assert run.root == "variants.url-mismatch"


def test_wrong_path_finds_ws(ws_server_factory: Any) -> None:
    peer = ws_server_factory(paths=["/ws"])
    run = doctor(f"ws://127.0.0.1:{peer.port}/socket", only=["variants"])
    r = run["variants"]
    assert run["handshake"].code == "handshake.not-found"
    assert r.code == "variants.url-mismatch", run.explain()
    assert r.evidence["works"] == f"ws://127.0.0.1:{peer.port}/ws"
    assert run.root == "variants.url-mismatch"


def test_wss_to_a_plain_server_finds_ws(ws_server: Any) -> None:
    run = doctor(f"wss://127.0.0.1:{ws_server.port}/", only=["tls", "variants"])
    assert run["tls"].code == "tls.not-tls", run.explain()
    r = run["variants"]
    assert r.code == "variants.url-mismatch"
    assert r.evidence["works"] == f"ws://127.0.0.1:{ws_server.port}/"


def test_nothing_nearby_is_not_a_failure() -> None:
    run = doctor(f"ws://127.0.0.9:{free_port()}/ws", only=["variants"], timeout=2.0)
    r = run["variants"]
    assert r.status.value == "skip", run.explain()
    assert "no nearby variant answers either" in r.summary
    assert 1 <= len(r.evidence["tried"]) <= 12
    assert all(url.startswith(("ws://127.0.0.9", "wss://127.0.0.9")) for url in r.evidence["tried"])
    assert run.root_check != "variants"  # the refused port (port/tcp) stays the root cause


def test_working_target_costs_no_probe(ws_server: Any) -> None:
    run = doctor(ws_server.url, only=["variants"])
    assert run["variants"].status.value == "skip"
    assert run["variants"].evidence["applicable"] is False
    assert len(ws_server.requests) == 1  # the handshake check's, nothing from variants


def test_no_variants_option(ws_server_factory: Any) -> None:
    peer = ws_server_factory(paths=["/ws"])
    run = doctor(f"ws://127.0.0.1:{peer.port}/", only=["variants"], variants=False)
    assert run["variants"].status.value == "skip"
    assert run.root == "handshake.not-found"


def test_a_server_that_answers_specifically_gets_no_probes(bad_server: Any) -> None:
    peer = bad_server("unauthorized")
    run = doctor(peer.url, only=["variants"])
    assert run["variants"].status.value == "skip"
    assert "another URL would not fix it" in run["variants"].summary
    assert run.root == "handshake.forbidden"
