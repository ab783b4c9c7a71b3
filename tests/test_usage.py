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


#: Bad values for every option of the table (lokin_doctor/options.py); a new option must add its own here.
#: A flag takes no value: ``--flag=value`` is Click's usage error naming the flag.
BAD: dict[str, tuple[str, ...]] = {
    "timeout": ("nan", "-1", "0", "abc", "1e9"),
    "origin": ("https://caf\u00e9.example", "not an origin"),
    "header": ("X-Evil: a\r\nB: 1", "NoColon"),
    "subprotocol": ("two words", ""),
    "process": ("", "(unclosed"),
    "send": (),  # any text is a message to send (the empty one too)
    "expect": ("(unclosed",),
    "dns_server": ("garbage!", "1.2.3.4:99999"),
    "resolve": ("example.com:443", "example.com:x:127.0.0.1", "example.com:443:not-an-ip"),
    "ca_file": ("{notpem}", "{dir}", "/nonexistent.pem"),
    "insecure": ("=yes",),
    "proxy": ("ftp://proxy:21", "http://", "not a url"),
    "no_proxy": ("=1",),
    "backend": ("", "http://"),
    "hold": ("nan", "-3", "x"),
    "page_url": ("", "ftp://x"),
    "variants": ("=no",),
    "linger": ("nan", "-0.5"),
    "client_cert": ("{notpem}", "/nonexistent.pem"),
    "client_key": ("{notpem}",),
    "nginx_config": ("/nonexistent.conf", "{notpem}"),
    "proxy_config": ("/nonexistent.cfg", "{notpem}", "{dir}"),
    "browser": ("=1",),
    "browser_path": ("/nonexistent/chromium",),
    "browser_arg": ("",),
    "json_out": ("=1",),
    "fmt": ("xml", ""),
    "redact": ("=1",),
    "strict": ("=1",),
    "fail_on": ("never", ""),
    "verbose": ("=1",),
    "debug": ("=1",),
}


def _flag(annotation: Any) -> str:
    meta = annotation.__metadata__[0]  # in Annotated, Typer keeps the first name as ``default``
    return next(d for d in (meta.default, *meta.param_decls) if isinstance(d, str) and d.startswith("--"))


def test_the_sweep_covers_every_option_of_the_table() -> None:
    from lokin_doctor.options import OUTPUT_OPTIONS, SETTING_OPTIONS

    assert {s.param for s in (*SETTING_OPTIONS, *OUTPUT_OPTIONS)} == set(BAD)


def test_every_option_of_every_check_command_refuses_its_bad_values(files: dict[str, str]) -> None:
    """The sweep: each command x each of its options x each bad value -> exit 2, one line naming the
    option, nothing on stdout, before any traffic (the target, port 9 of a TEST-NET address, would hang)."""
    from lokin_doctor.options import COMMAND_OPTIONS, OUTPUT_OPTIONS, SETTING_BY_PARAM

    url = "ws://127.0.0.1:9/"
    output = {s.param: s for s in OUTPUT_OPTIONS}
    failures = []
    count = 0
    for command, params in COMMAND_OPTIONS.items():
        for param in (*params, *output):
            spec = SETTING_BY_PARAM.get(param) or output[param]
            flag = _flag(spec.annotation)
            for raw in BAD[param]:
                value = raw.format(**files)
                args = (
                    [command, url, f"{flag}{value}"] if value.startswith("=") else [command, url, flag, value]
                )
                if param == "expect":
                    args += ["--send", "hello"]
                if param == "client_key":
                    args += ["--client-cert", files["notpem"]]
                run = run_cli(*args, timeout=30)
                count += 1
                lines = run.stderr.strip().splitlines()
                named = flag in run.stderr or (param == "fmt" and "--format" in run.stderr)
                if not (run.code == 2 and len(lines) == 1 and named and run.stdout == "" and run.seconds < 5):
                    failures.append((args, run.code, run.stderr[-200:]))
    assert count >= 140
    assert not failures, "\n".join(map(repr, failures))
