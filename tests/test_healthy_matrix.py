"""The healthy matrix (issue 18, items 5 and 6): on setups that work, `all` ends with exit 0 and no warning.

Real servers (Python ``websockets``, Node ``ws`` server.js, ``lokin-doctor serve``), direct and behind real
nginx, ws and wss (trustme certificates), IPv4 and IPv6 (::1), started by hand, under supervisord, under
``timeout`` / ``/usr/bin/time`` / ``sh -c`` / ``npm start``; and the doctor itself under the same wrappers.
Peers are shared per module; each case is one doctor run. Only true advisories (notes, skips) may appear.

Production rows (a proxy in front, wss://) run their server under supervisord: there, "nothing restarts
it" is a true warning (see tests/local/test_supervisor.py), not a false alarm.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CliRun, run_cli
from tests.peers._common import free_port, port_accepts, require_binary, scaled
from tests.peers.certs import Certs, make_certs
from tests.peers.wsserver import server_ssl_context, start_ws_server

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "tests" / "peers" / "node"
NPM_DIR = REPO / "tests" / "peers" / "npmrun"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}


def _node_ready() -> None:
    require_binary("node", "install Node.js 20 (Debian: apt-get install -y nodejs npm)")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        from tests.peers._common import missing

        missing("the ws package is not installed: run `npm ci --prefix tests/peers/node`")


@dataclass
class Group:
    """Processes this module started, each in its own session: stopped by their process group id."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
        log = open(os.devnull, "wb")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**ENV, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc.pid

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # the group this module created (wrapper + server)
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _wait(host: str, port: int) -> None:
    deadline = time.monotonic() + scaled(15)
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on {host}:{port}", pytrace=False)


def _serve(port: int, host: str = "127.0.0.1", *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lokin_doctor",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--quiet",
        *extra,
    ]


def _node(port: int) -> list[str]:
    return ["node", "server.js", str(port)]


NGINX_CONF = """worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
{servers}
}}
"""
NGINX_SERVER = """    server {{
        listen {listen};
        server_name localhost;
{tls}        location /ws {{
            proxy_pass http://{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
"""


@dataclass
class Peers:
    urls: dict[str, str]
    certs: Certs


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    """Every healthy server of the matrix, started once for the module."""
    _node_ready()
    nginx = require_binary("nginx", "apt-get install -y nginx")
    supervisord = require_binary("supervisord", "apt-get install -y supervisor")
    timeout = require_binary("timeout", "apt-get install -y coreutils")
    npm = require_binary("npm", "apt-get install -y npm")
    if not os.access("/usr/bin/time", os.X_OK):
        from tests.peers._common import missing

        missing("/usr/bin/time is not installed: apt-get install -y time")
    d = tmp_path_factory.mktemp("matrix")
    certs = make_certs(d / "certs")
    group = Group()
    urls: dict[str, str] = {}
    stops: list[Any] = []
    try:
        # Python websockets servers inside this process (the doctor sees `python -m pytest` own the port).
        py4 = start_ws_server(host="127.0.0.1")
        py6 = start_ws_server(host="::1")
        pys = start_ws_server(
            host="127.0.0.1",
            ssl_context=server_ssl_context(certs.good.certfile, certs.good.keyfile),
            url_hostname="localhost",
        )
        stops += [py4.stop, py6.stop, pys.stop]
        urls["python"] = f"ws://127.0.0.1:{py4.port}/"
        urls["python-ipv6"] = f"ws://[::1]:{py6.port}/"
        urls["python-wss"] = f"wss://localhost:{pys.port}/"
        waits: list[tuple[str, int]] = []

        def by_hand(name: str, argv: list[str], port: int, host: str = "127.0.0.1", **kw: Any) -> None:
            group.start(argv, **kw)
            waits.append((host, port))
            urls[name] = f"ws://{'[::1]' if host == '::1' else host}:{port}/"

        p = free_port()
        by_hand("node", _node(p), p, cwd=NODE_DIR, env={"HOST": "127.0.0.1"})
        p = free_port()
        by_hand("serve", _serve(p), p)
        p = free_port("::1")
        by_hand("serve-ipv6", _serve(p, "::1"), p, host="::1")
        p = free_port()
        by_hand("node-timeout", [timeout, "600", *_node(p)], p, cwd=NODE_DIR, env={"HOST": "127.0.0.1"})
        p = free_port()
        by_hand(
            "node-time",
            ["/usr/bin/time", "-o", os.devnull, *_node(p)],
            p,
            cwd=NODE_DIR,
            env={"HOST": "127.0.0.1"},
        )
        p = free_port()
        # "; exit $?" keeps the shell as the parent (a lone command would be exec'd by some shells).
        by_hand(
            "node-sh",
            ["sh", "-c", f"node server.js {p}; exit $?"],
            p,
            cwd=NODE_DIR,
            env={"HOST": "127.0.0.1"},
        )
        p = free_port()
        by_hand(
            "node-npm", [npm, "start", "--silent"], p, cwd=NODE_DIR, env={"HOST": "127.0.0.1", "PORT": str(p)}
        )
        p = free_port()
        by_hand("serve-timeout", [timeout, "600", *_serve(p)], p)

        # supervisord runs the production servers: node (behind nginx), serve wss (direct), serve on ::1.
        sup_node, sup_wss, sup6, sup_origin = free_port(), free_port(), free_port("::1"), free_port()
        n4, n6, ns = free_port(), free_port("::1"), free_port()
        # A production (wss://) server accepts only its page's Origin: any Origin is a true warning there.
        only = ("--allow-origin", f"https://localhost:{sup_wss}", "--allow-origin", f"https://localhost:{ns}")
        programs = {
            "node": (" ".join(_node(sup_node)), f'HOST="127.0.0.1",PYTHONPATH="{REPO}"', NODE_DIR),
            "wss": (
                " ".join(
                    _serve(
                        sup_wss,
                        "127.0.0.1",
                        "--certfile",
                        certs.good.certfile,
                        "--keyfile",
                        certs.good.keyfile,
                        *only,
                    )
                ),
                f'PYTHONPATH="{REPO}"',
                REPO,
            ),
            "serve6": (" ".join(_serve(sup6, "::1")), f'PYTHONPATH="{REPO}"', REPO),
            "origin": (" ".join(_serve(sup_origin, "127.0.0.1", *only)), f'PYTHONPATH="{REPO}"', REPO),
        }
        conf = d / "supervisord.conf"
        conf.write_text(
            f"[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n"
            f"childlogdir={d}\n\n"
            + "".join(
                f"[program:{name}]\ncommand={cmd}\nenvironment={env}\ndirectory={cwd}\nautorestart=true\n"
                "startsecs=0\nstopasgroup=true\n\n"
                for name, (cmd, env, cwd) in programs.items()
            )
        )
        group.start([supervisord, "-n", "-c", str(conf)])
        waits += [("127.0.0.1", sup_node), ("127.0.0.1", sup_wss), ("::1", sup6), ("127.0.0.1", sup_origin)]
        urls["node-supervisord"] = f"ws://127.0.0.1:{sup_node}/"
        urls["serve-wss-supervisord"] = f"wss://localhost:{sup_wss}/"
        urls["serve-ipv6-supervisord"] = f"ws://[::1]:{sup6}/"

        # nginx in front: ws on 127.0.0.1 and on [::1], wss on 127.0.0.1, all toward node (wss: serve) under supervisord.
        nd = d / "nginx"
        (nd / "tmp").mkdir(parents=True)
        tls = f"        ssl_certificate {certs.good.certfile};\n        ssl_certificate_key {certs.good.keyfile};\n"
        backend = f"127.0.0.1:{sup_node}"
        servers = (
            NGINX_SERVER.format(listen=f"127.0.0.1:{n4}", tls="", backend=backend)
            + NGINX_SERVER.format(listen=f"[::1]:{n6}", tls="", backend=backend)
            + NGINX_SERVER.format(listen=f"127.0.0.1:{ns} ssl", tls=tls, backend=f"127.0.0.1:{sup_origin}")
        )
        (nd / "nginx.conf").write_text(NGINX_CONF.format(d=nd, servers=servers))
        group.start([nginx, "-p", str(nd), "-c", str(nd / "nginx.conf"), "-g", "daemon off;"])
        waits += [("127.0.0.1", n4), ("::1", n6), ("127.0.0.1", ns)]
        urls["nginx"] = f"ws://127.0.0.1:{n4}/ws"
        urls["nginx-ipv6"] = f"ws://[::1]:{n6}/ws"
        urls["nginx-wss"] = f"wss://localhost:{ns}/ws"
        for host, port in waits:
            _wait(host, port)
        yield Peers(urls, certs)
    finally:
        group.stop()
        for stop in stops:
            stop()


def _doctor(peers: Peers, url: str, *extra: str, wrap: tuple[str, ...] = ()) -> CliRun:
    fmt = ["--json"] if "--format" not in extra else []
    args = ["all", url, *fmt, "--lang", "en", "--linger", "0", "--timeout", str(scaled(10)), *extra]
    if url.startswith("wss://"):
        args += ["--ca-file", peers.certs.ca_file]
    if not wrap:
        return run_cli(*args, env={"LANG": "C.UTF-8"})
    proc = subprocess.run(
        [*wrap, sys.executable, "-m", "lokin_doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ENV, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return CliRun(proc.returncode, proc.stdout, proc.stderr, 0.0)


def _healthy(run: CliRun) -> dict[str, dict[str, Any]]:
    """Exit 0, no warning, no failure: only ok (maybe with a note) and skip."""
    checks = {c["id"]: c for c in run.report["checks"]}
    bad = {i: (c["code"], c["summary"]) for i, c in checks.items() if c["status"] in ("warn", "fail")}
    assert not bad, bad
    assert run.code == 0, run.stdout
    assert checks["handshake"]["status"] == "ok" and checks["session"]["status"] == "ok"
    return checks


CASES = [
    "python", "python-ipv6", "node", "serve", "serve-ipv6",
    "node-timeout", "node-time", "node-sh", "node-npm", "serve-timeout",
    "node-supervisord", "serve-wss-supervisord", "serve-ipv6-supervisord",
    "nginx", "nginx-ipv6", "nginx-wss",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_healthy_setup_has_no_warning(peers: Peers, case: str) -> None:
    checks = _healthy(_doctor(peers, peers.urls[case]))
    port = checks["port"]
    if case.startswith("nginx"):
        assert port["evidence"]["proxy_in_front"] == "nginx", port
        assert "the reverse proxy in front" in port["summary"]
        assert checks["nginx"]["status"] == "ok", checks["nginx"]
    elif case.startswith("python"):
        # The owner is `python -m pytest`: no --process pattern names it, the handshake does.
        assert "completed the WebSocket handshake" in port["summary"], port
    if case in ("node", "serve", "serve-ipv6", "node-timeout", "node-sh", "node-npm"):
        # Started by hand behind ws:// on this machine: a developer's setup, said as a note.
        sup = checks["supervisor"]
        assert sup["evidence"].get("advisory") in ("supervisor.none", "supervisor.terminal"), sup
        assert "development machine" in sup["note"]
    if case.endswith("supervisord") or case.startswith("nginx"):
        assert "supervisord" in checks["supervisor"]["summary"], checks["supervisor"]


@pytest.mark.parametrize(
    "wrap",
    [("timeout", "20"), ("/usr/bin/time", "-o", os.devnull), ("sh", "-c", '"$0" "$@"; exit $?')],
    ids=["timeout", "time", "sh-c"],
)
def test_doctor_under_a_wrapper_counts_no_second_server(peers: Peers, wrap: tuple[str, ...]) -> None:
    # How CI runs it: `timeout 20 lokin-doctor all --embedded`: its wrapper matches the --embedded pattern.
    run = _doctor(peers, "--embedded", wrap=wrap)
    checks = _healthy(run)
    assert checks["process"]["status"] == "ok" and "other_instances" not in checks["process"]["evidence"]
    junit = _doctor(peers, "--embedded", "--format", "junit", wrap=wrap)
    assert junit.code == 0 and "<failure" not in junit.stdout, junit.stdout


def test_doctor_under_npm_run(peers: Peers) -> None:
    npm = shutil.which("npm")
    assert npm is not None
    proc = subprocess.run(
        [npm, "run", "--silent", "doctor", "--", "all", "--embedded", "--json", "--linger", "0"],
        cwd=NPM_DIR, capture_output=True, text=True, timeout=60,
        env={**ENV, "LOKIN_PY": sys.executable, "NO_COLOR": "1"}, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    checks = _healthy(CliRun(proc.returncode, proc.stdout, proc.stderr, 0.0))
    assert "other_instances" not in checks["process"]["evidence"]


def test_a_second_instance_is_still_found(peers: Peers, tmp_path: Path) -> None:
    """The generalisation has not blinded the check: a second, unrelated serve not listening warns."""
    port = int(peers.urls["serve"].rsplit(":", 1)[1].strip("/"))
    group = Group()
    # Same port, taken: this one fails to listen and stays (serve exits, so a python sleeper plays it).
    group.start(
        [sys.executable, "-c", "import time; time.sleep(30)", "lokin-doctor", "serve", "--port", str(port)]
    )
    try:
        time.sleep(0.3)
        run = run_cli(
            "all", peers.urls["serve"], "--json", "--lang", "en", "--linger", "0", "--only", "process"
        )
        assert run.check("process")["code"] == "process.multiple", run.stdout
    finally:
        group.stop()


def test_a_note_is_no_failure_in_any_format(peers: Peers) -> None:
    # A server started by hand behind ws://127.0.0.1: the supervisor's advisory is shown, never a failure.
    url = peers.urls["serve"]
    junit = _doctor(peers, url, "--format", "junit")
    assert junit.code == 0 and "<failure" not in junit.stdout, junit.stdout
    case = junit.stdout.split('name="supervisor"', 1)[1].split("</testcase>", 1)[0]
    assert "<system-out>note: normal for a server started by hand" in case, case
    text = _doctor(peers, url, "--format", "text")
    assert text.code == 0 and "note: normal for a server started by hand" in text.stdout, text.stdout
    markdown = _doctor(peers, url, "--format", "markdown")
    assert "**Note** (supervisor): normal for a server started by hand" in markdown.stdout, markdown.stdout
