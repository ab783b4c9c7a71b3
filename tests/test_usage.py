"""Every bad option value of every command this file covers is a usage error: exit 2, one line on stderr
naming the option and the value, no traceback, and no traffic (the target is a port that would hang)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("usage")
    (d / "notpem.txt").write_text("hello, I am not a certificate\n")
    (d / "badpem.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    return {"notpem": str(d / "notpem.txt"), "badpem": str(d / "badpem.pem"), "dir": str(d)}


def _cases(files: dict[str, str]) -> list[tuple[list[str], str]]:
    url = "ws://127.0.0.1:9/"
    check_cmds = [["all", url], ["handshake", url], ["probe-wss", url]]
    cases: list[tuple[list[str], str]] = []
    for cmd in check_cmds:
        for value in ("nan", "inf", "-1", "0"):
            cases.append(([*cmd, "--timeout", value], "--timeout"))
        for value in ("nan", "inf", "-0.5"):
            cases.append(([*cmd, "--linger", value], "--linger"))
        cases.append(([*cmd, "--header", "X-Evil: a\r\nInjected: 1"], "--header"))
        cases.append(([*cmd, "--header", "X-Name: caf\u00e9"], "--header"))
        cases.append(([*cmd, "--header", "Bad Name: x"], "--header"))
        cases.append(([*cmd, "--ca-file", files["notpem"]], "--ca-file"))
        cases.append(([*cmd, "--ca-file", files["badpem"]], "--ca-file"))
        cases.append(([*cmd, "--ca-file", files["dir"]], "--ca-file"))
        cases.append(([*cmd, "--client-cert", files["notpem"]], "--client-cert"))
        cases.append(([*cmd, "--client-key", files["notpem"]], "--client-key"))
    for cmd in (["all", url], ["probe-wss", url]):
        for value in ("nan", "inf", "-3"):
            cases.append(([*cmd, "--hold", value], "--hold"))
        for value in (
            "dns.example.com",
            "garbage!",
            "[::1",
            "::1]:53",
            "[127.0.0.1]:53",
            "127.0.0.1:",
            "1.2.3.4:99999",
        ):
            cases.append(([*cmd, "--dns-server", value], "--dns-server"))
    cases.append((["all", url, "--subprotocol", "two words"], "--subprotocol"))
    cases.append((["all", url, "--origin", "https://caf\u00e9.example"], "--origin"))
    cases.append((["all", url, "--process", ""], "--process"))
    cases.append((["all", url, "--backend", ""], "--backend"))
    cases.append((["all", url, "--page-url", ""], "--page-url"))
    cases.append((["all", url, "--only", ""], "check"))
    for cmd in ("all", "handshake", "probe-wss", "check-port", "check-process", "load", "watch"):
        cases.append(([cmd, ""], "empty URL"))
    for option in ("--rate", "--duration", "--timeout", "--max-p99-ms"):
        for value in ("nan", "inf", "-1"):
            cases.append((["load", url, option, value], option))
    for option in ("--delay", "--factor", "--max-delay", "--max-time", "--timeout"):
        for value in ("nan", "inf", "-1"):
            cases.append((["watch", url, option, value], option))
    cases.append((["watch", url, "--ca-file", files["notpem"]], "--ca-file"))
    for value in ("nan", "inf", "-1", "0"):
        cases.append((["monitor", "--once", "--interval", value], "--interval"))
    return cases


def test_every_bad_value_is_a_usage_error(files: dict[str, str]) -> None:
    failures = []
    for args, option in _cases(files):
        run = run_cli(*args, "--json" if args[0] not in ("monitor",) else "--json", timeout=30)
        lines = run.stderr.strip().splitlines()
        ok = run.code == 2 and len(lines) == 1 and option in lines[0] and run.stdout == "" and run.seconds < 5
        if not ok:
            failures.append((args, run.code, run.stderr[-300:], run.stdout[:200]))
    assert not failures, "\n".join(map(repr, failures))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_dns_server_forms(value: str, expected: tuple[str, int]) -> None:
    from lokin_doctor.settings import build_settings

    assert build_settings("ws://example.test/", dns_server=value).dns_server == expected


def test_good_header_values_pass(ws_server: Any) -> None:
    run = run_cli(
        "handshake",
        ws_server.url,
        "--header",
        "Authorization: Bearer a.b-c_d~e+f/g=",
        "--header",
        "X-Empty:",
        "--json",
        "--linger",
        "0",
    )
    assert run.code == 0, run.stderr + run.stdout
    seen = ws_server.requests[-1].headers
    assert seen["authorization"] == "Bearer a.b-c_d~e+f/g="


def test_a_real_ca_file_passes(certs: Any, tls_ws_server: Any) -> None:
    peer = tls_ws_server(certs.good)
    run = run_cli("handshake", peer.url, "--ca-file", str(certs.ca_file), "--json", "--linger", "0")
    assert run.code == 0, run.stderr + run.stdout
    assert Path(str(certs.ca_file)).is_file()
