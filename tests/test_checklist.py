"""`all` against real peers on loopback: each broken link is named by its cause code, with a fix."""

from __future__ import annotations

# Imported before the fork: an unprivileged child may not be able to read the interpreter's files.
import concurrent.futures.thread  # noqa: F401  (asyncio.to_thread in the child)
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

import lokin_doctor.checks.chain.dns
import lokin_doctor.checks.host.port
import lokin_doctor.checks.host.process  # noqa: F401
from lokin_doctor import render
from lokin_doctor.runner import run_report
from lokin_doctor.settings import build_settings
from tests.helpers import run_cli
from tests.peers.fixtures import free_port


def test_node_server_is_healthy(node_server: Any) -> None:
    run = run_cli("all", node_server.url, "--json")
    assert run.code == 0, run.stdout
    report = run.report
    assert report["schema"] == 1 and report["tool"] == "lokin-doctor"
    assert report["status"] in ("ok", "warn") and report["root_cause"] is None
    process = run.check("process")
    assert process["status"] == "ok"
    assert process["evidence"]["processes"][0]["pid"] == node_server.pid
    assert "server.js" in process["evidence"]["processes"][0]["cmdline"]
    session = run.check("session")
    assert session["evidence"]["client_id"].startswith("user_")
    assert session["evidence"]["close_code"] == 1000


def test_check_process_finds_node_server_js(node_server: Any) -> None:
    run = run_cli("check-process", node_server.url, "--json")
    assert run.code == 0
    assert run.check("process")["evidence"]["processes"][0]["pid"] == node_server.pid
    # check-process runs its check, the supervision check and what they need, not the handshake
    ids = {c["id"] for c in run.report["checks"]}
    assert {"dns", "process", "supervisor"} <= ids
    assert not ids & {"tcp", "handshake", "session", "hold"}, ids


def test_send_expect_against_node_echo(node_server: Any) -> None:
    ok_run = run_cli("handshake", node_server.url, "--send", "hello", "--expect", "^hello$", "--json")
    assert ok_run.code == 0
    assert ok_run.check("session")["evidence"]["reply"] == "hello"
    bad = run_cli(
        "handshake", node_server.url, "--send", "hello", "--expect", "^bonjour$", "--json", "-t", "1"
    )
    assert bad.code == 1
    assert bad.root_code == "session.expect-mismatch"


def test_nothing_listening_names_the_missing_server() -> None:
    port = free_port()
    run = run_cli("all", f"ws://127.0.0.1:{port}/", "--json", "--process", r"no-such-server-\d+")
    assert run.code == 1
    rc = run.report["root_cause"]
    assert rc["code"] == "process.not-running"
    assert "nothing listens" in rc["summary"]
    assert "start" in rc["hint"]
    assert run.check("port")["code"] == "port.not-listening"
    assert run.check("tcp")["code"] == "tcp.refused"
    assert run.check("handshake")["status"] == "skip"


def test_default_target_with_nothing_running_is_humane() -> None:
    # The default target is ws://localhost:8080/: with nothing there, the verdict says so and how to start it.
    import socket

    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as probe:
            probe.settimeout(1)
            if probe.connect_ex((address, 8080)) == 0:
                pytest.skip(f"something listens on {address}:8080 on this machine")
    run = run_cli("all", "-t", "2", "--process", r"no-such-server-\d+", "--json")
    assert run.code == 1, run.stdout
    assert run.report["target"] == "ws://localhost:8080/"
    assert run.root_code == "process.not-running", run.report["root_cause"]
    assert "8080" in run.report["root_cause"]["hint"]
    human = run_cli("all", "-t", "2", "--process", r"no-such-server-\d+")
    assert human.code == 1
    assert "Root cause" in human.stdout and "Fix:" in human.stdout


def test_server_on_another_port_is_named(node_server: Any) -> None:
    port = free_port()
    run = run_cli("all", f"ws://127.0.0.1:{port}/", "--json")
    assert run.code == 1
    assert run.root_code == "process.wrong-port"
    assert str(node_server.port) in run.report["root_cause"]["summary"]
    assert f":{node_server.port}" in run.report["root_cause"]["hint"]


def test_static_site_on_the_port(static_server: Any) -> None:
    run = run_cli("all", f"ws://127.0.0.1:{static_server.port}/", "--json")
    assert run.code == 1
    assert run.root_code == "handshake.web-page"
    assert run.check("port")["code"] == "port.unexpected-owner"
    assert "http.server" in run.report["root_cause"]["hint"]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("garbage", "handshake.not-http"),
        ("bad-accept", "handshake.bad-accept"),
        ("not-found", "handshake.not-found"),
        ("redirect", "handshake.redirect"),
        ("close-no-reply", "handshake.closed"),
        ("web-page", "handshake.web-page"),
        ("unauthorized", "handshake.forbidden"),
        ("http-no-length", "handshake.not-websocket"),
        ("close-after-101", "session.closed-at-once"),
    ],
)
def test_misbehaving_servers(bad_server: Any, kind: str, code: str) -> None:
    peer = bad_server(kind)
    run = run_cli("all", peer.url, "--json", "-t", "3")
    assert run.code == 1, run.stdout
    assert run.root_code == code, run.report["root_cause"]
    assert run.report["root_cause"]["hint"]


def test_redirect_names_the_location(bad_server: Any) -> None:
    run = run_cli("all", bad_server("redirect").url, "--json")
    assert "https://example.invalid/ws" in run.report["root_cause"]["summary"]
    assert "wss://" in run.report["root_cause"]["hint"]


def test_close_after_101_reports_code_and_reason(bad_server: Any) -> None:
    run = run_cli("all", bad_server("close-after-101").url, "--json")
    session = run.check("session")
    assert session["evidence"]["close_code"] == 1011
    assert session["evidence"]["close_reason"] == "bye"


@pytest.mark.parametrize("kind", ["reset", "reset-at-accept"])
def test_reset_gets_one_verdict_every_time(bad_server: Any, kind: str) -> None:
    # A reset after the request, or right at accept (racing the client's connect): the same verdict each run.
    peer = bad_server(kind)
    codes = []
    for _ in range(6):
        run = run_cli("all", peer.url, "--json", "--no-variants", "-t", "2")
        codes.append(run.root_code)
        assert run.check("tcp")["status"] == "ok", run.check("tcp")
    assert codes == ["handshake.reset"] * 6, codes


def test_reset_at_accept_over_tls_gets_one_verdict(bad_server: Any) -> None:
    url = bad_server("reset-at-accept").url.replace("ws://", "wss://")
    runs = [run_cli("all", url, "--json", "--no-variants", "-t", "2") for _ in range(5)]
    assert [r.root_code for r in runs] == ["tls.reset"] * 5, [r.report["root_cause"] for r in runs]
    assert len({r.report["root_cause"]["summary"] for r in runs}) == 1


def test_silent_server_costs_one_timeout(bad_server: Any) -> None:
    run = run_cli("all", bad_server("silent").url, "--json", "--timeout", "1")
    assert run.code == 1
    assert run.root_code == "handshake.no-response"
    # One deadline for the whole run: not one timeout per check (generous bound for slow CI).
    assert run.seconds < 1 + 2.5


def test_no_pong(bad_server: Any) -> None:
    run = run_cli("all", bad_server("no-pong").url, "--json", "--timeout", "1")
    assert run.root_code == "session.no-pong"
    assert run.check("handshake")["status"] == "ok"


def test_slow_server_within_deadline_passes(bad_server: Any) -> None:
    run = run_cli("handshake", bad_server("slow", delay=0.5).url, "--json", "--timeout", "3")
    assert run.check("handshake")["status"] == "ok"


def test_wrong_bind_address(ws_server: Any) -> None:
    # Bound to 127.0.0.1; the client uses 127.0.0.2: the port check says where it listens instead.
    run = run_cli("all", f"ws://127.0.0.2:{ws_server.port}/", "--json")
    assert run.code == 1
    assert run.root_code == "port.wrong-address"
    assert "127.0.0.1" in run.report["root_cause"]["summary"]


def test_localhost_family_mismatch(dnsmasq: Any, ws_server: Any) -> None:
    dns = dnsmasq({"dual.lokin.test": ["127.0.0.1", "::1"]})
    run = run_cli(
        "all",
        f"ws://dual.lokin.test:{ws_server.port}/",
        "--dns-server",
        dns.server,
        "--json",
        "--no-variants",
        "--only",
        "dns,tcp,handshake",
    )
    tcp = run.check("tcp")
    assert tcp["status"] == "warn"
    assert tcp["code"] == "tcp.localhost-family"
    assert "::1" in tcp["summary"]
    assert run.code == 0  # a warning, not a failure ...
    strict = run_cli(
        "all",
        f"ws://dual.lokin.test:{ws_server.port}/",
        "--dns-server",
        dns.server,
        "--json",
        "--strict",
        "--only",
        "tcp",
    )
    assert strict.code == 1  # ... unless --strict


def test_unknown_host() -> None:
    run = run_cli("all", "ws://no-such-host.invalid:8080/", "--json", "-t", "3")
    assert run.code == 1
    assert run.root_code in ("dns.unknown-host", "dns.temporary-failure", "dns.no-address")


# --- through a real nginx ------------------------------------------------------------------------------


def test_nginx_correct(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("correct", ws_server.port)
    run = run_cli("all", proxy.url, "--json")
    assert run.code == 0, run.stdout


def test_nginx_without_upgrade_names_proxy_and_lines(nginx_proxy: Any, ws_server: Any) -> None:
    proxy = nginx_proxy("no-upgrade", ws_server.port)
    run = run_cli("all", proxy.url, "--json")
    assert run.code == 1
    rc = run.report["root_cause"]
    # This nginx runs on this machine: its configuration file and line are the root cause.
    assert rc["code"] == "nginx.upgrade-header-missing", rc
    assert "nginx" in rc["summary"]
    assert "proxy_set_header Upgrade $http_upgrade;" in rc["hint"]
    assert (
        'proxy_set_header Connection "upgrade";' in rc["hint"]
        or "Connection $connection_upgrade;" in rc["hint"]
    )


def test_nginx_without_upgrade_in_front_of_node(nginx_proxy: Any, node_server: Any) -> None:
    proxy = nginx_proxy("no-upgrade", node_server.port)
    run = run_cli("all", proxy.url, "--json")
    assert run.code == 1
    assert "proxy_http_version 1.1;" in run.report["root_cause"]["hint"]


def test_nginx_http10_upstream(nginx_proxy: Any, ws_server: Any) -> None:
    run = run_cli("all", nginx_proxy("http10", ws_server.port).url, "--json")
    assert run.root_code == "nginx.http10-upstream", run.stdout
    assert "proxy_http_version 1.1;" in run.report["root_cause"]["hint"]


def test_nginx_upstream_down(nginx_proxy: Any) -> None:
    run = run_cli("all", nginx_proxy("upstream-down").url, "--json")
    assert run.root_code == "nginx.proxy-pass-nothing-listens", run.stdout
    assert "nginx" in run.report["root_cause"]["summary"]


# --- CLI contract -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["all", "ws://[::1"],
        ["all", "ftp://example.com/"],
        ["all", "localhost:70000"],
        ["all", "--timeout", "-1"],
        ["all", "--only", "nosuchcheck"],
        ["handshake", "--header", "broken"],
        ["all", "--no-such-option"],
        ["serve-nothing"],
    ],
)
def test_usage_errors_exit_2_without_traceback(args: list[str]) -> None:
    run = run_cli(*args)
    assert run.code == 2
    assert run.stdout == "" or "Usage" in run.stdout
    assert run.stderr.strip()


def test_version_and_list_checks() -> None:
    from lokin_doctor import __version__

    assert run_cli("--version").stdout.strip() == f"lokin-doctor {__version__}"
    listing = run_cli("all", "--list-checks")
    assert listing.code == 0
    for check_id in ("dns", "tcp", "port", "process", "handshake", "session"):
        assert f"\n{check_id} " in "\n" + listing.stdout


def test_lokin_url_env_is_the_default_target(ws_server: Any) -> None:
    run = run_cli("handshake", "--json", env={"LOKIN_URL": ws_server.url})
    assert run.code == 0
    assert run.report["target"] == ws_server.url


def test_human_report_names_root_cause_and_fix() -> None:
    port = free_port()
    run = run_cli("all", f"ws://127.0.0.1:{port}/")
    assert run.code == 1
    assert "Root cause" in run.stdout and "Fix:" in run.stdout


def test_no_escape_codes_when_not_a_terminal() -> None:
    # No NO_COLOR here (run_cli always sets it) and a colour terminal type: only the pipe says "no colour".
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.run(
        [sys.executable, "-m", "lokin_doctor", "all", f"ws://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert "Root cause" in proc.stdout
    assert "\x1b[" not in proc.stdout and "\x1b[" not in proc.stderr


def test_python_dash_m_and_interrupt(bad_server: Any) -> None:
    peer = bad_server("silent")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lokin_doctor", "all", peer.url, "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err


def _run_as_nobody(args: list[str], write_fd: int) -> None:
    """Child of a fork: drop to an unprivileged user, run the report in-process, send its JSON back."""
    try:
        user = pwd.getpwnam("nobody")
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        report = run_report(build_settings(args[0]), only=args[1:])
        os.write(write_fd, render.to_json(report).encode())
    except BaseException as exc:  # report it to the parent instead of dying silently
        os.write(write_fd, json.dumps({"child_error": repr(exc)}).encode())
    finally:
        os._exit(0)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_unprivileged_user_sees_owner_unknown(node_server: Any) -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_as_nobody([node_server.url, "port", "process"], write_fd)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert "child_error" not in report, report
    port = next(c for c in report["checks"] if c["id"] == "port")
    assert port["status"] == "warn", report
    assert port["code"] == "port.owner-unknown"
    assert "run as root" in port["hint"]
    process = next(c for c in report["checks"] if c["id"] == "process")
    assert process["status"] in ("ok", "warn")  # never a crash, never a false "not running"


def test_embedded_server_all_green() -> None:
    run = run_cli("all", "--embedded", "--json")
    assert run.code == 0, run.stdout
    assert run.report["status"] == "ok", run.stdout
    assert run.check("session")["evidence"]["client_id"].startswith("user_")
    assert run.check("process")["status"] == "ok"
    human = run_cli("all", "--embedded")
    assert human.code == 0 and "All good" in human.stdout


def test_dropped_syns_read_as_a_firewall() -> None:
    # A listen(0) socket whose one backlog slot is taken drops further SYNs, as a firewall's DROP does.
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        run = run_cli("all", f"ws://127.0.0.1:{port}/", "--json", "--timeout", "1")
    finally:
        filler.close()
        srv.close()
    assert run.code == 1
    assert run.root_code == "tcp.timeout"
    assert "firewall" in run.report["root_cause"]["hint"]
    assert run.seconds < 1 + 2.5  # one timeout for the whole run


def test_check_port_and_process_say_only_what_they_saw(tmp_path: Any) -> None:
    # A port that accepts TCP and never answers, held by a program whose command line has newlines.
    import socket

    port = free_port()
    code = (
        "import socket, sys, time\n"
        "# a comment line that makes this command line long and multi-line " + "x" * 120 + "\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        port_run = run_cli("check-port", f"ws://127.0.0.1:{port}/", "--json")
        process_run = run_cli(
            "check-process", f"ws://127.0.0.1:{port}/", "--json", "--process", r"import socket, sys"
        )
        process_text = run_cli("check-process", f"ws://127.0.0.1:{port}/", "--process", r"import socket, sys")
    finally:
        proc.kill()
        proc.wait()
    port_check = port_run.check("port")
    assert port_check["status"] == "warn"  # not the expected server: said, not "answers"
    process_check = process_run.check("process")
    assert process_check["status"] == "ok", process_check
    for summary in (port_check["summary"], process_check["summary"]):
        assert f"pid {proc.pid}" in summary
        assert "\n" not in summary
        assert "answer" not in summary
        assert "…" in summary and len(summary) < 260
    assert process_check["summary"].startswith(f"port {port} is held by python")
    # The verdict line says what was checked, never that the server answers: no handshake was made.
    assert process_text.code == 0
    last = process_text.stdout.strip().splitlines()[-1]
    # check-process runs the supervisor check too (issue 18): a server started by hand on loopback is a note.
    assert last.startswith(
        "✓ All good for what was checked (dns, process, port, supervisor); no WebSocket handshake"
    ), last
    assert "answers" not in process_text.stdout
    # The evidence keeps the whole command line.
    assert "\n" in process_check["evidence"]["processes"][0]["cmdline"]
