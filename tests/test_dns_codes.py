"""``dns.error`` and ``dns.no-config`` for real: a DNS server of our own answering YXDOMAIN (``--dns-server``
on 127.0.0.1), and, in a namespace of the test's own (tests/peers/netns.py: only loopback, our files
bind-mounted over /etc), an nsswitch.conf naming a module that is not installed (getaddrinfo's EAI_SYSTEM)
and an empty resolv.conf. No real DNS server is ever asked."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli
from tests.peers.netns import YXDOMAIN, RcodeResponder, isolated_cli

NAME = "app.lokin.invalid"


def test_a_dns_server_answering_yxdomain(tmp_path: Path) -> None:
    server = RcodeResponder(YXDOMAIN).start()
    try:
        run = run_cli(
            "all",
            f"ws://{NAME}:8080/",
            "--dns-server",
            f"127.0.0.1:{server.port}",
            "--json",
            "--timeout",
            "3",
            "--lang",
            "en",
        )
    finally:
        server.stop()
    assert server.queries >= 1  # it was asked, and answered
    dns = run.check("dns")
    assert dns["code"] == "dns.error"
    assert run.root_code == "dns.error"
    assert dns["summary"].endswith(f"(asked 127.0.0.1:{server.port})")
    assert "DNAME" in dns["summary"]  # dnspython's words for YXDOMAIN
    assert dns["hint"] == f"check the DNS server 127.0.0.1:{server.port}"
    records = run.check("dns-records")
    assert records["code"] == "dns.error"
    assert records["evidence"]["records"] == {"A": "error", "AAAA": "error"}
    assert run.check("tcp")["status"] == "skip"


def test_a_system_resolver_that_cannot_look_anything_up(tmp_path: Path) -> None:
    # The hosts line names only a module that is not installed: getaddrinfo fails with EAI_SYSTEM.
    run = isolated_cli(
        ["all", f"ws://{NAME}:8080/", "--only", "dns", "--json", "--timeout", "3", "--lang", "en"],
        tmp_path,
        etc={"nsswitch.conf": "hosts: lokinnosuchmodule\n", "resolv.conf": "nameserver 127.0.0.1\n"},
    )
    dns = run.check("dns")
    assert dns["code"] == "dns.error", dns
    assert dns["summary"].startswith(f"the system resolver failed for {NAME}: ")
    assert "(getaddrinfo: system error)" in dns["summary"]
    assert "nsswitch.conf" in dns["hint"]
    assert dns["evidence"]["errno"] not in (-2, -3)  # not EAI_NONAME / EAI_AGAIN


def test_no_name_server_configured(tmp_path: Path) -> None:
    # An empty resolv.conf: glibc asks 127.0.0.1 (nothing there), dnspython finds no configuration.
    run = isolated_cli(
        ["all", f"ws://{NAME}:8080/", "--json", "--no-variants", "--timeout", "3", "--lang", "en"],
        tmp_path,
        etc={"resolv.conf": "# no nameserver\nsearch lokin.invalid\n"},
    )
    dns = run.check("dns")
    assert dns["code"] == "dns.no-config", dns
    assert run.root_code == "dns.no-config"
    assert "/etc/resolv.conf names no name server" in dns["summary"]
    assert "add a nameserver line to /etc/resolv.conf" in dns["hint"]
    records = run.check("dns-records")
    assert records["code"] == "dns.no-config"
    assert records["evidence"]["server"] == "/etc/resolv.conf"
    assert "no name server is configured in /etc/resolv.conf" in records["summary"]
    assert run.check("tcp")["status"] == "skip"


def test_a_name_server_line_is_not_no_config(tmp_path: Path) -> None:
    # The same silence with a nameserver line is a resolver that does not answer, not a missing setting.
    run = isolated_cli(
        ["all", f"ws://{NAME}:8080/", "--only", "dns", "--json", "--timeout", "3", "--lang", "en"],
        tmp_path,
        etc={"resolv.conf": "nameserver 127.0.0.1\n"},
    )
    assert run.check("dns")["code"] == "dns.temporary-failure"
