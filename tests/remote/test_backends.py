"""``backends``: every address of a round-robin name gets TCP, TLS and the handshake; the bad one is named."""

from __future__ import annotations

from typing import Any

from tests.remote._util import doctor


def test_one_of_three_addresses_refuses(dns_server: Any, ws_server_factory: Any) -> None:
    first = ws_server_factory()
    ws_server_factory(host="127.0.0.2", port=first.port)  # 127.0.0.3 has nothing on the port
    run = doctor(f"ws://multi.lokin.test:{first.port}/", dns_server=dns_server.server)
    r = run["backends"]
    assert r.code == "backends.some-fail", run.explain()
    assert r.summary.startswith("1 of 3 addresses refuses: 127.0.0.3"), r.summary
    assert r.evidence["causes"] == {"127.0.0.3": "handshake.refused"}
    assert run["tcp"].code == "tcp.some-addresses-fail"
    assert run.root == "backends.some-fail"


def test_each_backend_certificate_is_verified(dnsmasq: Any, tls_ws_server: Any, certs: Any) -> None:
    good = tls_ws_server(certs.good)
    tls_ws_server(certs.expired, host="127.0.0.2", port=good.port)
    dns = dnsmasq({"lb.lokin.test": ["127.0.0.1", "127.0.0.2"]})
    run = doctor(
        f"wss://lb.lokin.test:{good.port}/", only=["backends"], dns_server=dns.server, ca_file=certs.ca_file
    )
    r = run["backends"]
    assert r.code == "backends.some-fail", run.explain()
    assert "127.0.0.2" in r.summary and "127.0.0.1" not in r.summary
    assert r.evidence["causes"] == {"127.0.0.2": "handshake.tls-error"}
    assert "expired" in r.evidence["addresses"]["127.0.0.2"]


def test_all_backends_answer(dns_server: Any, ws_server_factory: Any) -> None:
    first = ws_server_factory()
    ws_server_factory(host="127.0.0.2", port=first.port)
    ws_server_factory(host="127.0.0.3", port=first.port)
    run = doctor(f"ws://multi.lokin.test:{first.port}/", only=["backends"], dns_server=dns_server.server)
    assert run["backends"].status.value == "ok", run.explain()


def test_single_address_is_not_applicable(ws_server: Any) -> None:
    run = doctor(ws_server.url, only=["backends"])
    assert run["backends"].status.value == "skip"
    assert run["backends"].evidence["applicable"] is False


def test_every_address_failing_differently(dnsmasq: Any, tls_ws_server: Any, certs: Any) -> None:
    expired = tls_ws_server(certs.expired)  # 127.0.0.1; 127.0.0.2 has nothing on the port
    dns = dnsmasq({"lb.lokin.test": ["127.0.0.1", "127.0.0.2"]})
    run = doctor(
        f"wss://lb.lokin.test:{expired.port}/",
        only=["backends"],
        dns_server=dns.server,
        ca_file=certs.ca_file,
    )
    r = run["backends"]
    assert r.code == "backends.all-fail", run.explain()
    assert r.evidence["causes"] == {"127.0.0.1": "handshake.tls-error", "127.0.0.2": "handshake.refused"}
