"""``dns-records``: A/AAAA, the CNAME chain, the classic failures, and disagreement with the system resolver."""

from __future__ import annotations

from typing import Any

import pytest

from tests.peers.fixtures import free_port
from tests.remote._util import doctor


def test_records_and_cname_chain(dns_server: Any, ws_server: Any) -> None:
    run = doctor(
        f"ws://alias.lokin.test:{ws_server.port}/", only=["dns-records"], dns_server=dns_server.server
    )
    r = run["dns-records"]
    assert r.evidence["cname_chain"] == ["alias.lokin.test", "lokin.test"], run.explain()
    assert r.evidence["records"]["A"] == "127.0.0.1"
    # The system resolver of this machine does not know the .test zone: split horizon.
    assert r.code == "dns.resolvers-disagree"
    assert "does not resolve" in r.summary


def test_several_addresses(dns_server: Any) -> None:
    run = doctor("ws://multi.lokin.test:9/", only=["dns-records"], dns_server=dns_server.server)
    r = run["dns-records"]
    assert sorted(r.evidence["records"]["A"].split(", ")) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


def test_nxdomain(dns_server: Any) -> None:
    run = doctor("ws://www.nx.test/", only=["dns-records"], dns_server=dns_server.server)
    assert run["dns-records"].code == "dns.nxdomain", run.explain()
    assert run.root == "dns.nxdomain"


def test_no_answer(dnsmasq: Any) -> None:
    # The name exists (it has a TXT record) but has neither A nor AAAA.
    peer = dnsmasq(["--local=/lokin.test/", '--txt-record=txt.lokin.test,"hello"'])
    run = doctor("ws://txt.lokin.test/", only=["dns-records"], dns_server=peer.server)
    assert run["dns-records"].code == "dns.no-answer", run.explain()


def test_refused(dns_server: Any) -> None:
    run = doctor("ws://lokin.example/", only=["dns-records"], dns_server=dns_server.server)
    r = run["dns-records"]
    assert r.code == "dns.refused", run.explain()
    assert "REFUSED" in r.summary


def test_timeout_costs_one_deadline() -> None:
    port = free_port(udp=True)
    run = doctor("ws://lokin.test/", only=["dns", "dns-records"], dns_server=f"127.0.0.1:{port}", timeout=1.0)
    assert run["dns-records"].code == "dns.timeout", run.explain()
    assert run["dns"].code == "dns.timeout"
    assert run.seconds < 1.0 + 1.5


def test_not_applicable_to_ip_and_localhost() -> None:
    for url in ("ws://127.0.0.1:9/", "ws://localhost:9/"):
        run = doctor(url, only=["dns-records"])
        assert run["dns-records"].status.value == "skip"
        assert run["dns-records"].evidence.get("applicable") is False


def test_hosts_file_entry_reported(tmp_path: Any) -> None:
    from lokin_doctor.checks.production.dnsrecords import hosts_entries

    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.9 lokin.example www.lokin.example # staging\n")
    assert hosts_entries("lokin.example", str(hosts)) == ["10.0.0.9 lokin.example www.lokin.example"]
    assert hosts_entries("other.example", str(hosts)) == []


def _this_host() -> tuple[str, list[str]]:
    import socket

    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve here")
    return name, sorted({str(i[4][0]) for i in infos})


def test_system_resolver_agrees(dnsmasq: Any) -> None:
    name, addresses = _this_host()
    dns = dnsmasq({name: addresses})
    run = doctor(f"ws://{name}:9/", only=["dns-records"], dns_server=dns.server)
    r = run["dns-records"]
    assert r.status.value == "ok", run.explain()
    assert "agrees" in r.summary


def test_hosts_file_override_disagrees(dnsmasq: Any) -> None:
    name, addresses = _this_host()
    dns = dnsmasq({name: "127.0.0.7"})  # DNS says .7, this machine says otherwise
    run = doctor(f"ws://{name}:9/", only=["dns-records"], dns_server=dns.server)
    r = run["dns-records"]
    assert r.code == "dns.resolvers-disagree", run.explain()
    assert r.evidence["system_resolver"] == addresses or sorted(r.evidence["system_resolver"]) == addresses
    if r.evidence.get("hosts_file"):
        assert "/etc/hosts" in r.summary
