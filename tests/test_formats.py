"""Report formats (JUnit, Markdown, JSON schema 2), --redact and several targets, against real peers."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lokin_doctor.formats.redact import Redactor
from tests.helpers import run_cli
from tests.peers.fixtures import free_port

SSO_HOST = "login.corp.example.com"
SSO_TOKEN = "s3cr3tT0ken"


class SsoRedirect:
    """An SSO gateway in front of the WebSocket path: every request gets a 302 to a login page on another
    host, with a token in the query string (what a report pasted into an issue must not give away)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    (
                        "HTTP/1.1 302 Found\r\n"
                        f"Location: https://{SSO_HOST}/sso?token={SSO_TOKEN}&next=/ws\r\n"
                        "Set-Cookie: SESSION=abcdef123456; Path=/\r\n"
                        "Content-Length: 0\r\n\r\n"
                    ).encode()
                )
                await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> SsoRedirect:
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)


@pytest.fixture
def sso() -> Iterator[SsoRedirect]:
    with SsoRedirect() as peer:
        yield peer


# Checks that do not look at the machine's other processes (other servers may run on a shared box).
NET_ONLY = ("--only", "handshake,session", "--no-variants")


def test_junit_one_suite_per_target_with_failure_types(ws_server: Any) -> None:
    refused = f"ws://127.0.0.1:{free_port()}/"
    run = run_cli("all", ws_server.url, refused, *NET_ONLY, "--format", "junit")
    assert run.code == 1, run.stdout + run.stderr
    root = ET.fromstring(run.stdout)
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [ws_server.url, refused]
    healthy, broken = suites
    names = [c.get("name") for c in healthy.findall("testcase")]
    # the forward-proxy check is a link of the chain (a skip when no proxy applies)
    assert names[:4] == ["dns", "forward", "tcp", "tls"] and "handshake" in names and "session" in names
    assert healthy.findall("testcase/failure") == []
    assert healthy.get("failures") == "0"
    failures = {
        c.get("name"): c.find("failure") for c in broken.findall("testcase") if c.find("failure") is not None
    }
    assert failures["tcp"] is not None and failures["tcp"].get("type") == "tcp.refused"
    assert "Fix:" in (failures["tcp"].get("message") or "")
    skipped = broken.findall("testcase/skipped")
    assert int(broken.get("skipped") or -1) == len(skipped) >= 2  # handshake and session after tcp failed
    assert int(broken.get("tests") or -1) == len(broken.findall("testcase"))
    assert int(root.get("failures") or -1) == len(failures)
    for case in root.iter("testcase"):
        assert float(case.get("time") or "x") >= 0


@pytest.mark.parametrize("fmt", ["text", "json", "junit", "markdown"])
def test_exit_code_is_the_same_in_every_format(ws_server: Any, fmt: str) -> None:
    refused = f"ws://127.0.0.1:{free_port()}/"
    assert run_cli("all", refused, *NET_ONLY, "--format", fmt).code == 1
    assert run_cli("handshake", ws_server.url, "--format", fmt).code == 0


def test_markdown_sections(ws_server: Any) -> None:
    refused = f"ws://127.0.0.1:{free_port()}/"
    run = run_cli("all", refused, *NET_ONLY, "-f", "markdown")
    assert run.code == 1
    md = run.stdout
    assert md.startswith("## lokin-doctor report: " + refused)
    for row in ("| lokin-doctor |", "| Python |", "| websockets |", "| OS |"):
        assert row in md
    assert f"### Target `{refused}`" in md
    assert "| check | status | summary | code |" in md
    assert re.search(r"^\| tcp \| ❌ fail \| .* \| `tcp.refused` \|$", md, re.M)
    assert "**Root cause** (tcp, `tcp.refused`)" in md and "**Fix:**" in md
    assert "<details><summary>Evidence</summary>" in md and md.rstrip().endswith("</details>")
    assert re.search(r"1 of 2 passed, 1 failed, 2 skipped", md)


def test_redact_hides_hosts_and_tokens_consistently(dnsmasq: Any, sso: SsoRedirect) -> None:
    dns = dnsmasq({"app.lokin.test": "127.0.0.1"})
    target = f"ws://app.lokin.test:{sso.port}/ws"
    args = ("all", target, "--dns-server", dns.server, "--only", "handshake", "--no-variants")
    plain = run_cli(*args, "-f", "markdown")
    assert SSO_HOST in plain.stdout and SSO_TOKEN in plain.stdout  # the report does carry them ...
    run = run_cli(*args, "-f", "markdown", "--redact")
    assert run.code == plain.code == 1
    md = run.stdout
    for secret in ("app.lokin.test", "lokin.test", SSO_HOST, "example.com", SSO_TOKEN):
        assert secret not in md, secret  # ... --redact hides them
    assert f"ws://HOST-1:{sso.port}/ws" in md  # the target's host, ports and paths kept
    assert "https://HOST-2/sso?token=TOKEN-1&next=" in md
    # the same placeholder in the table, the root cause, the fix and the evidence
    assert md.count("HOST-2") >= 4
    assert "`handshake.redirect`" in md  # codes untouched
    data = run_cli(*args, "--json", "--redact").report
    assert data["target"] == f"ws://HOST-1:{sso.port}/ws"
    assert SSO_TOKEN not in json.dumps(data) and "TOKEN-1" in data["root_cause"]["summary"]


def test_redactor_addresses_cookies_and_loopback() -> None:
    r = Redactor()
    r.collect("ws://db.internal.example.org:5432/")
    out = r.text(
        "Cookie: sid=abc123; theme=dark from 10.1.2.3 and 2001:db8::7 via db.internal.example.org, "
        "Authorization: Bearer eyJhbGciOi.x, local 127.0.0.1 ::1 0.0.0.0 localhost at 12:30:45"
    )
    assert "abc123" not in out and "Cookie: COOKIE-1" in out
    assert "10.1.2.3" not in out and "IP-1" in out and "2001:db8::7" not in out and "IP-2" in out
    assert "db.internal.example.org" not in out and "HOST-1" in out
    assert "eyJhbGciOi" not in out and "TOKEN-1" in out
    assert "127.0.0.1 ::1 0.0.0.0 localhost at 12:30:45" in out  # same on every machine: kept
    assert r.text("again 10.1.2.3") == "again IP-1"  # consistent


def test_several_targets_json_schema_2_one_failing(ws_server: Any, tmp_path: Path) -> None:
    refused = f"ws://127.0.0.1:{free_port()}/"
    listed = tmp_path / "targets.txt"
    listed.write_text(f"# staging and prod\n{ws_server.url}\n\n{refused}\n")
    run = run_cli("all", "--targets", str(listed), *NET_ONLY, "--json")
    assert run.code == 1
    doc = run.report
    assert doc["schema"] == 2 and doc["status"] == "fail"
    assert [t["target"] for t in doc["targets"]] == [ws_server.url, refused]
    assert [t["status"] for t in doc["targets"]] == ["ok", "fail"]
    assert doc["targets"][1]["root_cause"]["code"] == "tcp.refused"
    assert "checks" in doc["targets"][0] and "schema" not in doc["targets"][0]
    ok = run_cli("all", ws_server.url, ws_server.url, *NET_ONLY)
    assert ok.code == 0
    assert ok.stdout.count("lokin-doctor ") >= 2 and "2 targets, 2 healthy" in ok.stdout
    single = run_cli("all", ws_server.url, *NET_ONLY, "--json")
    assert single.report["schema"] == 1  # one URL on the command line: the schema of old


def test_several_targets_share_one_deadline(bad_server: Any) -> None:
    silent = [bad_server("silent").url for _ in range(3)]
    run = run_cli("all", *silent, "--only", "handshake", "--no-variants", "--timeout", "2", "--json")
    assert run.code == 1
    assert [t["root_cause"]["code"] for t in run.report["targets"]] == ["handshake.no-response"] * 3
    assert run.seconds < 2 + 2.5  # at the same time: one timeout, not three


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["all", "--format", "xml"], "--format"),
        (["all", "--json", "--format", "junit"], "--json"),
        (["all", "--targets", "/nonexistent/targets.txt"], "--targets"),
        (["all", "ws://127.0.0.1:1/", "ftp://x/"], "ftp://x/"),
    ],
)
def test_format_and_targets_usage_errors(args: list[str], needle: str) -> None:
    run = run_cli(*args)
    assert run.code == 2 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], run.stderr


def test_summary_line_counts_failures() -> None:
    run = run_cli("all", f"ws://127.0.0.1:{free_port()}/", *NET_ONLY)
    assert run.code == 1
    assert "1 of 2 passed, 1 failed, 2 skipped in" in run.stdout
