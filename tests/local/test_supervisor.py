"""``supervisor``: serve started from a terminal, under supervisord, under pm2, and by nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from lokin_doctor.checks.host.supervisor import ancestors, classify, systemd_unit
from tests.helpers import run_cli
from tests.local.conftest import REPO, serve_argv
from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    missing,
    port_accepts,
    require_binary,
    scaled,
)

PM2_DIR = REPO / "tests" / "peers" / "supervisors"


def _public_name() -> str:
    """This machine's own name: a name, as production URLs have (127.0.0.1 is a developer's URL)."""
    import socket

    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    return name


def _supervisor(
    port: int, pid: int, env: dict[str, str] | None = None, host: str = "127.0.0.1"
) -> dict[str, Any]:
    run = run_cli(
        "all",
        "--timeout",
        str(scaled(10)),
        f"ws://{host}:{port}/",
        "--json",
        "--only",
        "supervisor",
        "--process",
        rf"--port {port}\b",
        env=env,
    )
    r = run.check("supervisor")
    assert r["evidence"].get("pid") == pid, r
    return r


def _wait(port: int, proc: ManagedProcess | None = None, timeout: float = 15) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while not port_accepts(LOOPBACK, port):
        if time.monotonic() > deadline or (proc is not None and not proc.alive()):
            raise AssertionError(f"serve did not listen on {port}")
        time.sleep(0.05)


def _listener_pid(port: int) -> int:
    from lokin_doctor.instruments.sysinfo import listeners

    pids = {li.pid for li in listeners(port) if li.pid is not None}
    assert len(pids) == 1, pids
    return pids.pop()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(60):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_started_from_a_terminal(tmp_path: Path) -> None:
    script = require_binary("script", "apt-get install -y bsdutils")
    port = free_port()
    inner = " ".join(serve_argv(port, "--quiet"))
    # A shell on a pseudo-terminal runs serve (not exec'd: the shell stays its parent, as a person's does).
    proc = ManagedProcess(
        [script, "-qfc", f"bash -c '{inner}; echo exited'", "/dev/null"],
        log=tmp_path / "script.log",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        name="script",
    ).start()
    try:
        _wait(port, proc)
        pid = _listener_pid(port)
        # On ws://127.0.0.1 it is how a developer works: a note on an ok result, not a warning.
        dev = _supervisor(port, pid)
        assert dev["status"] == "ok" and dev["code"] is None, dev
        assert dev["evidence"]["advisory"] == "supervisor.terminal" and "development machine" in dev["note"]
        r = _supervisor(port, pid, host=_public_name())
        assert r["status"] == "warn" and r["code"] == "supervisor.terminal", r
        chain = r["evidence"]["ancestors"]
        assert chain[0]["pid"] == pid and chain[0]["tty"].startswith("/dev/pts/")
        assert chain[1]["name"] == "bash" and chain[1]["tty"] == chain[0]["tty"]
        assert f"bash pid {chain[1]['pid']} on {chain[0]['tty']}" in r["summary"]
        assert "Restart=always" in r["hint"] and f"--port {port}" in r["hint"]
        assert "deploy/lokin-ws.service" in r["hint"]
    finally:
        with contextlib.suppress(AssertionError):
            _kill(_listener_pid(port))
        proc.stop()


def test_nothing_would_restart_it(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    # Detached and orphaned, as `nohup ... &` from a shell that has gone: its parent is the machine's init.
    out = subprocess.run(
        ["sh", "-c", f"setsid {' '.join(serve_argv(port, '--quiet'))} >{log} 2>&1 </dev/null & echo $!"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    pid = int(out.stdout.strip())
    try:
        _wait(port)
        dev = _supervisor(port, pid)
        assert dev["status"] == "ok" and dev["evidence"]["advisory"] == "supervisor.none", dev
        r = _supervisor(port, pid, host=_public_name())
        assert r["status"] == "warn" and r["code"] == "supervisor.none", r
        assert r["evidence"]["ancestors"][0]["pid"] == pid
        assert "nothing would restart" in r["summary"]
        assert "ExecStart=" in r["hint"]
    finally:
        _kill(pid)


def _supervisord_conf(d: Path, port: int, autorestart: str) -> Path:
    conf = d / "supervisord.conf"
    conf.write_text(
        f"""[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}

[include]
files = conf.d/*.conf
"""
    )
    # The program in an included file, as Debian's /etc/supervisor/conf.d/ has it.
    (d / "conf.d").mkdir()
    (d / "conf.d" / "lokin.conf").write_text(
        f"""[program:lokin]
command={" ".join(serve_argv(port, "--quiet"))}
environment=PYTHONPATH="{REPO}"
autorestart={autorestart}
startsecs=0
"""
    )
    return conf


@pytest.mark.parametrize("autorestart", ["true", "false"])
def test_under_supervisord(tmp_path: Path, autorestart: str) -> None:
    binary = require_binary("supervisord", "apt-get install -y supervisor (or pip install supervisor)")
    port = free_port()
    conf = _supervisord_conf(tmp_path, port, autorestart)
    proc = ManagedProcess(
        [binary, "-n", "-c", str(conf)], log=tmp_path / "sd.log", name="supervisord"
    ).start()
    try:
        _wait(port, proc)
        pid = _listener_pid(port)
        r = _supervisor(port, pid)
        assert r["evidence"]["ancestors"][1]["pid"] == proc.pid
        assert r["evidence"]["program"] == "lokin" and r["evidence"]["config"] == str(conf)
        if autorestart == "true":
            assert r["status"] == "ok", r
            assert f"supervisord pid {proc.pid} (program lokin, autorestart=true)" in r["summary"]
        else:
            assert r["status"] == "warn" and r["code"] == "supervisor.no-restart", r
            assert "autorestart=true" in r["hint"] and str(conf) in r["hint"]
    finally:
        proc.stop()  # supervisord stops its program on SIGTERM
        with contextlib.suppress(AssertionError):
            _kill(_listener_pid(port))


@pytest.mark.parametrize("autorestart", [True, False])
def test_under_pm2(tmp_path: Path, autorestart: bool) -> None:
    pm2 = PM2_DIR / "node_modules" / "pm2" / "bin" / "pm2"
    node = shutil.which("node")
    if node is None or not pm2.exists():
        missing(f"pm2 is not installed: npm ci --prefix {PM2_DIR}")
    assert node is not None
    home = tmp_path / "pm2home"
    env = {**os.environ, "PM2_HOME": str(home), "PYTHONPATH": str(REPO)}
    port = free_port()
    argv = serve_argv(port, "--quiet")
    run = partial(subprocess.run, env=env, capture_output=True, text=True, timeout=scaled(60))
    flags = [] if autorestart else ["--no-autorestart"]
    started = run(
        [
            node,
            str(pm2),
            "start",
            argv[0],
            "--name",
            "lokin",
            "--interpreter",
            "none",
            *flags,
            "--",
            *argv[1:],
        ]
    )
    daemon_pid: int | None = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        daemon_pid = int((home / "pm2.pid").read_text())
        _wait(port)
        pid = _listener_pid(port)
        # pm2 on PATH (as after npm install -g pm2): pm2 jlist says autorestart and the restart count.
        path = f"{PM2_DIR / 'node_modules' / '.bin'}:{os.environ['PATH']}"
        r = _supervisor(port, pid, env={"PATH": path})
        if not autorestart:
            assert r["status"] == "warn" and r["code"] == "supervisor.no-restart", r
            assert "autorestart off" in r["summary"] and "pm2 restart lokin" in r["hint"]
            return
        assert r["status"] == "ok", r
        assert r["evidence"]["pm2_daemon"] == daemon_pid
        assert r["evidence"]["pm2_app"] == "lokin" and r["evidence"]["autorestart"] is True
        assert f"God Daemon pid {daemon_pid}" in r["summary"] and "0 restart(s)" in r["summary"]
        # Without pm2 on PATH, the app is still named from PM2_HOME/pids.
        bare = _supervisor(port, pid)
        assert bare["status"] == "ok" and bare["evidence"]["pm2_app"] == "lokin", bare
    finally:
        if daemon_pid is not None:
            _kill(daemon_pid)  # the God Daemon stops its apps on SIGTERM
        with contextlib.suppress(AssertionError):
            _kill(_listener_pid(port))


def test_systemd_unit_from_cgroup() -> None:
    assert systemd_unit("0::/system.slice/lokin-ws.service\n") == "lokin-ws.service"
    assert systemd_unit("12:pids:/\n1:name=systemd:/system.slice/nginx.service\n0::/\n") == "nginx.service"
    user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/lokin.service\n"
    assert systemd_unit(user) == "lokin.service"
    # A login session is a scope, not a service: started by hand.
    assert systemd_unit("0::/user.slice/user-1000.slice/session-3.scope\n") is None
    assert systemd_unit("0::/\n") is None


def test_systemd_unit_where_systemctl_does_not_work() -> None:
    # This process's own chain, as if it ran in a unit: systemctl on a machine without systemd says why.
    chain = ancestors(os.getpid())
    r = classify(chain, "0::/system.slice/lokin-ws.service\n", None, 2.0, None)
    assert r.status.value == "ok" and "systemd unit lokin-ws.service" in r.summary
    assert r.evidence["systemd_unit"] == "lokin-ws.service"
    if shutil.which("systemctl") and not os.path.isdir("/run/systemd/system"):
        assert "Restart= unknown" in r.summary
    assert (
        chain[0].pid == os.getpid() and chain[0].cmdline[0] == sys.executable or chain[0].pid == os.getpid()
    )


def test_under_nodemon(tmp_path: Path) -> None:
    nodemon = PM2_DIR / "node_modules" / "nodemon" / "bin" / "nodemon.js"
    node = shutil.which("node")
    if node is None or not nodemon.exists():
        missing(f"nodemon is not installed: npm ci --prefix {PM2_DIR}")
    assert node is not None
    port = free_port()
    command = " ".join(serve_argv(port, "--quiet"))
    proc = ManagedProcess(
        [node, str(nodemon), "--watch", str(tmp_path), "--exec", command],
        log=tmp_path / "nodemon.log",
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=tmp_path,
        name="nodemon",
    ).start()
    try:
        _wait(port, proc)
        pid = _listener_pid(port)
        r = _supervisor(port, pid)
        assert r["status"] == "warn" and r["code"] == "supervisor.nodemon", r
        assert any(a["pid"] == proc.pid for a in r["evidence"]["ancestors"])
        assert f"nodemon (pid {proc.pid})" in r["summary"] and "after a crash" in r["summary"]
    finally:
        with contextlib.suppress(AssertionError):
            _kill(_listener_pid(port))
        proc.stop()


def test_behind_nginx_the_backend_is_the_server(
    nginx_site: Any, serve_process: Any, node_server: Any
) -> None:
    # nginx holds the port; of the servers running, the one proxy_pass names is the one checked.
    backend = serve_process("--quiet")
    site = nginx_site(
        f"""server {{
    listen 127.0.0.1:{{port}};
    location / {{
        proxy_pass http://127.0.0.1:{backend.port};
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
    }}
}}
"""
    )
    run = run_cli("all", f"ws://127.0.0.1:{site.port}/", "--json", "--only", "supervisor")
    r = run.check("supervisor")
    assert r["evidence"]["pid"] == backend.pid, r
    assert r["evidence"]["ancestors"][0]["cmdline"].endswith(f"--port {backend.port} --quiet")


def test_container_init_and_shells_from_their_chain() -> None:
    from lokin_doctor.checks.host.supervisor import Ancestor

    server = Ancestor(7, "node", ("node", "server.js"), None)
    tini = Ancestor(1, "tini", ("/sbin/tini", "--", "node", "server.js"), None)
    r = classify([server, tini], "0::/\n", "docker", 1.0, None)
    assert r.status.value == "ok" and "main process of a docker container" in r.summary
    # In a container too, a server started from `docker exec -it ... bash` is started by hand.
    shell = Ancestor(40, "bash", ("bash",), "/dev/pts/0")
    r = classify(
        [Ancestor(41, "node", ("node", "server.js"), "/dev/pts/0"), shell, tini],
        "0::/\n",
        "docker",
        1.0,
        None,
    )
    assert r.code == "supervisor.terminal" and r.evidence["container"] == "docker"
