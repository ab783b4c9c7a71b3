"""The host checks' causes, each produced for real: a server bound to loopback only while the clients
use another address of the machine (a network namespace of the test's own: ``unshare -n``, a second
address on its lo), a server process that runs but listens on no port, and a port whose owner the doctor
cannot see (the doctor in its own PID namespace, as in a container sharing the host's network).

Other helpers run servers on this machine: the processes here are found by patterns naming their own
token, on ports the OS gave.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import run_cli
from tests.local.conftest import REPO, serve_argv
from tests.peers._common import ManagedProcess, free_port, missing, port_accepts, require_binary, scaled
from tests.peers.netns import report_in_netns

#: A second address of the namespace's machine (TEST-NET-2: routed nowhere, only inside the namespace).
OTHER_ADDRESS = "198.51.100.7"


def _check(report: dict[str, Any], check_id: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["id"] == check_id)


def _doctor(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "lokin_doctor", *args])


def _in_namespace(tmp_path: Path, host: str, url_host: str) -> dict[str, Any]:
    """serve bound to ``host`` and the doctor on ``ws://url_host:PORT/``, both in a new network namespace
    whose lo also carries :data:`OTHER_ADDRESS`; the doctor's JSON report."""
    if os.geteuid() != 0:
        missing("a network namespace with a second address needs root (unshare -n)")
    unshare = require_binary("unshare", "apt-get install -y util-linux")
    ip = require_binary("ip", "apt-get install -y iproute2")
    port = free_port()
    serve = " ".join(shlex.quote(a) for a in serve_argv(port, "--quiet")).replace(
        "--host 127.0.0.1", f"--host {host}"
    )
    report = tmp_path / f"report-{host}.json"
    return report_in_netns(
        unshare,
        [
            "set -e",
            f"{ip} link set lo up",
            f"{ip} addr add {OTHER_ADDRESS}/32 dev lo",
            f"{serve} > {tmp_path}/serve.log 2>&1 &",
            "SERVE=$!",
            f"for i in $(seq 200); do grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp && break; sleep 0.05; done",
            "set +e",
            f"{_doctor('all', f'ws://{url_host}:{port}/', '--json', '--no-variants', '--timeout', '3')} > {report}",
            "rc=$?",
            "kill $SERVE; wait $SERVE",
            "exit $rc",
        ],
        report,
        tmp_path / "serve.log",
    )


def test_server_on_loopback_only_reached_on_another_address(tmp_path: Path) -> None:
    report = _in_namespace(tmp_path, "127.0.0.1", OTHER_ADDRESS)
    port = _check(report, "port")
    assert port["status"] == "fail" and port["code"] == "port.loopback-only", port
    assert port["summary"].startswith("the server listens on 127.0.0.1:")
    assert f"(loopback only), so {OTHER_ADDRESS} cannot reach it" in port["summary"]
    assert port["evidence"]["bound"][0].startswith("127.0.0.1:")
    assert "0.0.0.0" in port["hint"]
    assert _check(report, "tcp")["code"] == "tcp.refused"
    assert report["root_cause"]["code"] == "port.loopback-only"
    # the same server bound to all interfaces: the same URL works
    fixed = _in_namespace(tmp_path, "0.0.0.0", OTHER_ADDRESS)
    assert _check(fixed, "port")["status"] == "ok", _check(fixed, "port")
    assert fixed["root_cause"] is None, fixed["root_cause"]


def test_server_process_that_listens_on_no_port(tmp_path: Path) -> None:
    # a node server.js still waiting for its database before it listens: its process runs, its port is shut
    token = secrets.token_hex(4)
    script = tmp_path / "server.js"
    script.write_text(
        "// waits for a database that never answers before listening\n"
        "console.log('connecting to the database');\n"
        "setInterval(() => {}, 1000);\n"
    )
    port = free_port()
    node = require_binary("node", "apt-get install -y nodejs")
    server = ManagedProcess(
        [node, str(script), str(port), f"--instance={token}"],
        log=tmp_path / "server.log",
        name="idle server.js",
    ).start()
    try:
        pattern = rf"server\.js .*--instance={token}"
        ready = server.wait_ready(lambda: (tmp_path / "server.log").read_text() != "", timeout=10)
        assert ready, (tmp_path / "server.log").read_text()
        run = run_cli("all", f"ws://127.0.0.1:{port}/", "--json", "--no-variants", "--process", pattern)
        process = run.check("process")
        assert process["status"] == "fail" and process["code"] == "process.not-listening", process
        # the summary shortens the command line; the evidence keeps it whole
        assert process["summary"].startswith(f"pid {server.pid} (node {script}")
        assert process["summary"].endswith(") runs but listens on no port")
        assert process["evidence"]["processes"][0]["cmdline"] == f"{node} {script} {port} --instance={token}"
        assert [p["pid"] for p in process["evidence"]["processes"]] == [server.pid]
        assert process["evidence"]["processes"][0]["listening_ports"] == []
        assert f"restart it on port {port}" in process["hint"]
        assert run.check("tcp")["code"] == "tcp.refused"
        assert run.root_code == "process.not-listening"
    finally:
        server.stop()
    # the process gone: nothing matches, the same run says it is not running
    gone = run_cli("all", f"ws://127.0.0.1:{port}/", "--json", "--no-variants", "--process", pattern)
    assert gone.check("process")["code"] == "process.not-running"


def test_port_owner_hidden_in_another_pid_namespace(tmp_path: Path, serve_process: Any) -> None:
    # The doctor in its own PID namespace (a container with the host's network): the LISTEN socket is in
    # its /proc/net/tcp, the process holding it is in no /proc/PID/fd it can read.
    if os.geteuid() != 0:
        missing("a PID namespace needs root (unshare --pid)")
    unshare = require_binary("unshare", "apt-get install -y util-linux")
    served = serve_process("--quiet")
    assert port_accepts("127.0.0.1", served.port)
    url = f"ws://127.0.0.1:{served.port}/"
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    proc = subprocess.run(
        [
            unshare,
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-m",
            "lokin_doctor",
            "all",
            url,
            "--json",
            "--no-variants",
            "--timeout",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    process = _check(report, "process")
    assert process["status"] == "warn" and process["code"] == "process.owner-unknown", process
    assert process["summary"] == (
        f"something listens on port {served.port}, but no process matching 'node server.js' or "
        "'lokin-doctor serve' is visible"
    )
    assert "sudo lokin-doctor check-process" in process["hint"]
    port = _check(report, "port")
    assert port["code"] == "port.owner-unknown" and "owners" not in port["evidence"], port
    # the server answers all the same: a warning, not the root cause
    assert _check(report, "handshake")["status"] == "ok"
    assert report["root_cause"] is None
    # from the same PID namespace as the server, its owner is named
    seen = run_cli("all", url, "--json", "--no-variants", "--only", "process")
    assert seen.check("process")["status"] == "ok"
    assert str(served.pid) in seen.check("process")["summary"]
