"""``firewall``: nftables rules inside a network namespace of the test's own (``unshare -n``).

serve, the rules and the doctor all run inside that namespace; the host's rules are never touched.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from lokin_doctor.checks.host.firewall import iptables_verdict
from tests.local.conftest import REPO, serve_argv
from tests.peers._common import free_port, missing, require_binary, scaled


def _in_namespace(
    tmp_path: Path,
    rules: list[str],
    *doctor_args: str,
    pre: tuple[str, ...] | list[str] = (),
    raw: tuple[str, ...] | list[str] = (),
) -> tuple[int, dict[str, Any]]:
    if os.geteuid() != 0:
        missing("nftables rules in a network namespace need root (unshare -n)")
    unshare = require_binary("unshare", "apt-get install -y util-linux")
    nft = require_binary("nft", "apt-get install -y nftables")
    ip = require_binary("ip", "apt-get install -y iproute2")
    port = free_port()
    setup = [
        f"{ip} link set lo up",
        f"{nft} add table inet t",
        f"{nft} add chain inet t input '{{ type filter hook input priority 0; policy accept; }}'",
        *(f"{nft} {p}" for p in pre),
        *(f"{nft} add rule inet t input {r.format(port=port)}" for r in rules),
        *(r.format(port=port) for r in raw),
    ]
    serve = " ".join(shlex.quote(a) for a in serve_argv(port, "--quiet"))
    doctor = " ".join(
        shlex.quote(a)
        for a in [
            sys.executable,
            "-m",
            "lokin_doctor",
            "all",
            f"ws://127.0.0.1:{port}/",
            "--json",
            *doctor_args,
        ]
    )
    # serve listens before the doctor runs (checked from inside, where the rules may drop connects:
    # /proc/net/tcp shows the LISTEN socket whatever the rules say).
    script = "\n".join(
        [
            "set -e",
            *setup,
            f"{serve} > {tmp_path}/serve.log 2>&1 &",
            "SERVE=$!",
            f"for i in $(seq 100); do grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp && break; sleep 0.05; done",
            "set +e",
            f"{doctor} > {tmp_path}/report.json",
            "rc=$?",
            "kill $SERVE; wait $SERVE",
            "exit $rc",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    proc = subprocess.run(
        [unshare, "-n", "bash", "-c", script], env=env, capture_output=True, text=True, timeout=scaled(60)
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    text = (tmp_path / "report.json").read_text()
    assert text, proc.stderr
    return proc.returncode, json.loads(text)


def _check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


def test_drop_rule_is_named_and_explains_the_timeout(tmp_path: Path) -> None:
    code, report = _in_namespace(tmp_path, ["tcp dport {port} drop"], "--no-variants", "--timeout", "1.5")
    assert code == 1
    fw = _check(report, "firewall")
    assert fw["status"] == "fail" and fw["code"] == "firewall.drops-port", fw
    assert "table inet t, chain input, rule handle 2" in fw["summary"]
    assert "tcp dport" in fw["summary"] and "every client, loopback included" in fw["summary"]
    assert _check(report, "tcp")["code"] == "tcp.timeout"
    assert "(the tcp.timeout above)" in fw["summary"]
    assert report["root_cause"]["check"] == "firewall"
    assert "nft delete rule inet t input handle 2" in fw["hint"]


def test_reject_rule_explains_the_refusal(tmp_path: Path) -> None:
    code, report = _in_namespace(tmp_path, ["tcp dport {port} reject with tcp reset"], "--no-variants")
    fw = _check(report, "firewall")
    assert fw["code"] == "firewall.rejects-port", fw
    assert "reject with tcp reset" in fw["summary"]
    assert _check(report, "tcp")["code"] == "tcp.refused"
    assert report["root_cause"]["code"] == "firewall.rejects-port"


def test_loopback_allowed_other_machines_dropped(tmp_path: Path) -> None:
    code, report = _in_namespace(
        tmp_path, ["iif lo accept", "tcp dport {port} ct state new drop"], "--no-variants"
    )
    fw = _check(report, "firewall")
    assert fw["status"] == "warn" and fw["code"] == "firewall.drops-port", fw
    assert "clients on other machines" in fw["summary"] and "rule handle 3" in fw["summary"]
    assert fw["evidence"]["loopback"]["action"] == "accept"
    assert _check(report, "tcp")["status"] == "ok"
    assert code == 0


def test_rules_for_other_ports_are_fine(tmp_path: Path) -> None:
    code, report = _in_namespace(
        tmp_path,
        ["tcp dport 1 drop", "udp dport {port} drop", "ip saddr 192.0.2.0/24 tcp dport {port} drop"],
        "--only",
        "firewall",
    )
    fw = _check(report, "firewall")
    assert fw["status"] == "ok", fw
    assert "nft -j list ruleset" in fw["summary"]
    # A drop that depends on the source cannot be decided here: named, not counted.
    assert "may, depending on the source" in fw["summary"] and "rule handle 4" in fw["summary"]


def test_jump_to_a_chain_with_a_drop_policy(tmp_path: Path) -> None:
    # The rule sits in a user chain reached by a jump; the table's name and chain are the user's.
    rules = ["tcp dport {port} jump blocked"]
    code, report = _in_namespace(
        tmp_path,
        rules,
        "--only",
        "firewall",
        pre=["add chain inet t blocked", "add rule inet t blocked drop"],
    )
    fw = _check(report, "firewall")
    assert fw["code"] == "firewall.drops-port", fw
    assert "chain blocked, rule handle" in fw["summary"]


def test_iptables_save_text() -> None:
    text = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m multiport --dports 8000:8100,9000 -j DROP
COMMIT
"""
    v = iptables_verdict(text, 8080, loopback=False)
    assert v is not None and v.action == "drop" and v.chain == "INPUT" and v.handle == 3
    assert iptables_verdict(text, 8080, loopback=True) is None
    assert iptables_verdict(text, 22, loopback=False) is None
    policy = iptables_verdict(
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n", 8080, False
    )
    assert policy is not None and policy.action == "drop" and policy.handle is None


def _iptables_rules(tmp_path: Path, rules: list[str], *doctor_args: str) -> dict[str, Any]:
    iptables = require_binary("iptables", "apt-get install -y iptables")
    return _in_namespace(tmp_path, [], *doctor_args, pre=(), raw=[f"{iptables} {r}" for r in rules])[1]


def test_iptables_rules_seen_through_nft(tmp_path: Path) -> None:
    # iptables (nft backend, Debian's default) puts a plain --dport DROP into nftables as native expressions.
    report = _iptables_rules(tmp_path, ["-A INPUT -p tcp --dport {port} -j DROP"], "--only", "firewall")
    fw = _check(report, "firewall")
    assert fw["code"] == "firewall.drops-port", fw
    assert "table ip filter, chain INPUT, rule handle 2" in fw["summary"]


def test_iptables_extension_read_with_iptables_save(tmp_path: Path) -> None:
    # multiport and REJECT stay iptables extensions ("xt") that nft cannot show: iptables-save names the rule.
    rules = ["-A INPUT -p tcp -m multiport --dports 1,{port} -j REJECT --reject-with tcp-reset"]
    report = _iptables_rules(tmp_path, rules, "--only", "firewall")
    fw = _check(report, "firewall")
    assert fw["code"] == "firewall.rejects-port", fw
    assert "iptables table filter, chain INPUT, rule 1 (-A INPUT -p tcp -m multiport" in fw["summary"]
    assert "iptables-save" in fw["evidence"]["source"]
    assert "iptables -D INPUT 1" in fw["hint"]


def test_legacy_iptables_rules(tmp_path: Path) -> None:
    legacy = require_binary("iptables-legacy", "apt-get install -y iptables")
    code, report = _in_namespace(
        tmp_path, [], "--only", "firewall", raw=[f"{legacy} -A INPUT -p tcp --dport {{port}} -j DROP"]
    )
    fw = _check(report, "firewall")
    assert fw["code"] == "firewall.drops-port", fw
    assert "iptables-legacy table filter, chain INPUT, rule 1" in fw["summary"]
    assert "iptables-legacy-save" in fw["evidence"]["source"]
