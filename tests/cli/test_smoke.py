"""A few real processes: the entry points, signals and streams that only a process has."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import run_cli

ENV = {**os.environ, "LANG": "C.UTF-8", "NO_COLOR": "1"}


def test_python_dash_m_and_exit_codes() -> None:
    run = run_cli("--version", subprocess=True)
    assert run.code == 0 and run.stdout.startswith("lokin-doctor ")
    run = run_cli("all", "ws://127.0.0.1:9/", "--timeout", "inf", subprocess=True)
    assert run.code == 2 and run.stderr.count("\n") == 1 and "--timeout" in run.stderr


@pytest.mark.skipif(shutil.which("lokin-doctor") is None, reason="the console script is not installed")
def test_console_script_entry_point() -> None:
    proc = subprocess.run(
        ["lokin-doctor", "explain", "tcp.refused"], capture_output=True, text=True, env=ENV, timeout=30
    )
    assert proc.returncode == 0 and proc.stdout.startswith("tcp.refused\n"), proc.stderr


def test_json_only_on_stdout_no_colour() -> None:
    run = run_cli("all", "ws://127.0.0.1:9/", "--json", "--no-variants", "--timeout", "2", subprocess=True)
    assert run.code == 1
    assert json.loads(run.stdout)["root_cause"]["code"] == "process.not-running"
    assert run.stderr == ""
    text = run_cli("all", "ws://127.0.0.1:9/", "--no-variants", "--timeout", "2", subprocess=True)
    assert "\x1b[" not in text.stdout and "process.not-running" in text.stdout


def test_sigint_is_130_and_said_once() -> None:
    # A port that accepts TCP and never answers: the run waits, Ctrl-C ends it.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "lokin_doctor", "handshake", f"ws://127.0.0.1:{port}/", "--timeout", "30"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.count("lokin-doctor: interrupted") == 1 and "Traceback" not in err, err
