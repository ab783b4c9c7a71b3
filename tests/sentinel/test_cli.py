"""``lokin-doctor sentinel`` and ``history`` as a user runs them: a subprocess against a real ``serve`` killed
by its PID and restarted on the same port, a webhook receiver, SIGTERM, and every bad value refused first."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import run_cli
from tests.sentinel.conftest import REPO, Receiver, Served, wait_for


def _sentinel(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lokin_doctor", "sentinel", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _history(path: Path, *args: str) -> Any:
    run = run_cli("history", "--history", str(path), *args)
    assert run.code == 0, run.stderr
    return run


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT id, status, root_cause, state FROM runs ORDER BY id").fetchall()


def test_a_killed_server_is_recorded_with_its_cause_alerted_once_and_its_recovery_too(
    served: Served, receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "h.sqlite"
    common = ["--history", str(path), "--every", "1", "--jitter", "0", "--linger", "0", "--timeout", "3"]
    common += ["--process", served.pattern, "--confirm", "2", "--webhook", receiver.url, "--seed", "1"]
    proc = _sentinel(served.url, *common)
    try:
        assert wait_for(lambda: path.exists() and any(r[1] == "ok" for r in _rows(path)))
        served.kill()
        assert wait_for(lambda: any(r[3] == "down" for r in _rows(path)))
        posts = receiver.wait(1)
        assert [p["state"] for p in posts] == ["down"], posts
        down = posts[0]
        assert down["target"] == served.url and down["previous_state"] == "up"
        assert down["root_cause"] == "process.not-running" and down["fix"] and down["run_id"]
        served.start()  # the same port
        assert wait_for(lambda: _rows(path)[-1][3] == "up" and _rows(path)[-1][1] == "ok")
        posts = receiver.wait(2)
        assert [p["state"] for p in posts] == ["down", "up"]
        assert posts[1]["outage"]["root_cause"] == "process.not-running"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "DOWN (was up)" in out and "UP (was down)" in out
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    listing = _history(path, "--json").report
    (incident,) = listing["incidents"]
    assert incident["root_cause"] == "process.not-running" and incident["end"] is not None
    assert incident["failing_check"] == "process" and incident["runs"] >= 2
    stored = _history(path, "--run", str(incident["first_run"]), "--json").report
    tcp = next(c for c in stored["checks"] if c["id"] == "tcp")
    assert tcp["code"] == "tcp.refused"  # the chain's own finding under the root cause
    for fmt, marker in (("text", "Root cause"), ("markdown", "process.not-running"), ("junit", "<testsuite")):
        shown = _history(path, "--run", str(incident["first_run"]), "--format", fmt).stdout
        assert marker in shown, shown
    text = _history(path).stdout
    assert "process.not-running" in text and "Incidents" in text

    # Restarting the probe keeps the history and its state: no second "up" alert, the rows go on.
    before = len(_rows(path))
    again = _sentinel(served.url, *common, "--count", "2")
    out, err = again.communicate(timeout=30)
    assert again.returncode == 0, err
    assert len(_rows(path)) >= before and _rows(path)[-1][3] == "up"
    assert len(receiver.posts) == 2


def test_a_corrupt_history_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"garbage" * 1000)
    run = run_cli("sentinel", "ws://127.0.0.1:9/", "--history", str(path), "--count", "1")
    assert run.code == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "not a readable SQLite database" in run.stderr
    assert path.read_bytes() == b"garbage" * 1000
    missing = run_cli("history", "--history", str(tmp_path / "none.sqlite"))
    assert missing.code == 1 and "no history" in missing.stderr


def test_every_bad_value_is_refused_before_any_traffic_or_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    url = "ws://127.0.0.1:9/"
    cases = [
        (["--every", "0.5"], "--every"),
        (["--every", "nan"], "--every"),
        (["--jitter", "0.9"], "--jitter"),
        (["--jitter", "x"], "--jitter"),
        (["--count", "0"], "--count"),
        (["--confirm", "0"], "--confirm"),
        (["--keep", "soon"], "--keep"),
        (["--keep", "1KB"], "--keep"),
        (["--keep", "10s"], "--keep"),
        (["--webhook", "ftp://x/"], "--webhook"),
        (["--webhook", "not a url"], "--webhook"),
        (["--webhook-format", "xml"], "--webhook-format"),
        (["--on-change", ""], "--on-change"),
        (["--on-change", "/nonexistent/prog --x"], "--on-change"),
        (["--on-change", "'unclosed"], "--on-change"),
        (["--metrics-port", "70000"], "--metrics-port"),
        (["--metrics-host", "not an address"], "--metrics-host"),
        (["--history", str(tmp_path)], "--history"),
        (["--timeout", "-1"], "--timeout"),
        (["--header", "Bad Name: x"], "--header"),
        (["--only", "nosuch"], "unknown check"),  # as all --only says it
    ]
    failures = []
    for extra, option in cases:
        run = (
            run_cli("sentinel", url, "--history", str(path), *extra)
            if "--history" not in extra
            else run_cli("sentinel", url, *extra)
        )
        lines = run.stderr.strip().splitlines()
        if not (run.code == 2 and len(lines) == 1 and option in lines[0] and run.seconds < 5):
            failures.append((extra, run.code, run.stderr[-300:]))
    for extra, option in (
        (["--since", "yesterday-ish"], "--since"),
        (["--format", "junit"], "--format"),
        (["--run", "0"], "--run"),
        (["--code", "Not A Code"], "--code"),
    ):
        run = run_cli("history", "--history", str(path), *extra)
        lines = run.stderr.strip().splitlines()
        if not (run.code == 2 and len(lines) == 1 and option in lines[0]):
            failures.append((extra, run.code, run.stderr[-300:]))
    assert not failures, "\n".join(map(repr, failures))
    assert not path.exists()


def test_on_change_gets_the_report_on_stdin(served: Served, tmp_path: Path) -> None:
    path, out = tmp_path / "h.sqlite", tmp_path / "stdin.json"
    served.kill()
    script = f"sh -c 'cat > {out}; echo $LOKIN_STATE $LOKIN_CODE > {out}.env'"
    run = run_cli(
        "sentinel",
        served.url,
        "--history",
        str(path),
        "--every",
        "1",
        "--count",
        "1",
        "--confirm",
        "1",
        "--process",
        served.pattern,
        "--linger",
        "0",
        "--on-change",
        script,
    )
    assert run.code == 1, run.stderr  # --count: the last run failed
    report = json.loads(out.read_text())
    assert report["root_cause"]["code"] == "process.not-running"
    assert (tmp_path / "stdin.json.env").read_text().split() == ["down", "process.not-running"]
