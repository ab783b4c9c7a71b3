#!/usr/bin/env python3
"""What does the sentinel cost? CPU per run and per target, memory and history size over 10,000 runs, and the
time from a failure to its webhook (issue 20, item 8). One run of this script measures everything and the
anchor, so the ratios compare like with like on the same machine load.

    python bench/sentinel_cost.py [--runs 20] [--targets 10] [--history-runs 10000] [--json out.json]

Parts:

1. **Anchor**: a bare ``lokin-doctor all URL`` against a healthy ``serve``, a fresh process each time (median
   CPU of 5 after a warm-up): what a cron job running the doctor would spend per diagnosis.
2. **CPU per run, real runs**: ``lokin-doctor sentinel`` (a subprocess, as a user runs it) against a real
   ``serve``, ``--every 1 --count R``, with 1 and with T targets (the same server under T paths), healthy;
   then T targets **flapping** (the bench kills and restarts the serve every 3 s). CPU = the sentinel's user
   + system time (``getrusage`` of the finished child) divided by its runs; per target = the T-target CPU
   per run against the 1-target one. The sentinel's peak RSS (``ru_maxrss``) is reported with it.
3. **10,000 runs through History directly** (a real report of each kind, times spaced 60 s apart as a
   sentinel ``--every 60`` would, i.e. about a week): a healthy target (identical runs fold) and a flapping
   one (a failure every third run: nothing folds), without pruning and with ``--keep 1d`` (prune by age after
   each run, as the engine does); the file's size every 1,000 runs, and this process's RSS while it writes,
   observes the metrics and renders the status page every 1,000 runs (the sentinel's in-process parts).
4. **Failure to webhook**: a sentinel ``--every 1 --confirm 1 --webhook`` against a serve; kill the serve,
   time until the webhook's POST arrives; restart, wait for the "up" POST; three times.

The ``--linger`` of every diagnosis is the default (1 s: a wait, not work). Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _net import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "LANG": "C.UTF-8"}


def lokin(*args: str) -> list[str]:
    return [sys.executable, "-m", "lokin_doctor", *args]


class Serve:
    """A ``lokin-doctor serve`` subprocess on a fixed loopback port (restartable)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            lokin("serve", "--host", "127.0.0.1", "--port", str(self.port)),
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_port(self.port, 20):
            raise SystemExit("serve did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


def child_cpu(cmd: list[str], timeout: float = 600.0) -> tuple[float, float, int]:
    """(wall s, user+sys CPU s, peak RSS KiB) of one child process run to its end."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(_status)
    wall = time.monotonic() - t0
    if proc.returncode not in (0, 1):
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err[-800:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def anchor(url: str, n: int = 5) -> dict[str, float]:
    child_cpu(lokin("all", url))  # warm-up
    cpus = [child_cpu(lokin("all", url))[1] for _ in range(n)]
    return {"cpu_s": statistics.median(cpus), "min_cpu_s": min(cpus)}


def sentinel_runs(urls: list[str], runs: int, history: Path, flap: Serve | None = None) -> dict[str, float]:
    """One ``sentinel --count runs`` over ``urls``; flapping when ``flap`` (killed/restarted every 3 s)."""
    stop = threading.Event()

    def flapper() -> None:
        assert flap is not None
        up = True
        while not stop.wait(3.0):
            if up:
                flap.kill()
            else:
                flap.start()
            up = not up

    thread = threading.Thread(target=flapper, daemon=True) if flap else None
    if thread:
        thread.start()
    cmd = lokin(
        "sentinel",
        *urls,
        "--every",
        "1",
        "--jitter",
        "0",
        "--count",
        str(runs),
        "--history",
        str(history),
        "-q",
    )
    try:
        wall, cpu, rss = child_cpu(cmd)
    finally:
        stop.set()
        if thread:
            thread.join(10)
        if flap is not None and flap.proc is None:
            flap.start()
    total = runs * len(urls)
    return {
        "targets": len(urls),
        "runs": total,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_per_run_ms": cpu / total * 1000,
        "max_rss_mib": rss / 1024,
    }


def real_reports(url: str, serve: Serve) -> tuple[dict[str, Any], dict[str, Any]]:
    def one() -> dict[str, Any]:
        out = subprocess.run(
            lokin("all", url, "--format", "json"), env=ENV, capture_output=True, text=True, timeout=60
        )
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    ok = one()
    serve.kill()
    down = one()
    serve.start()
    return ok, down


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def history_growth(
    kind: str, n: int, keep_s: float | None, ok: dict[str, Any], down: dict[str, Any]
) -> dict[str, Any]:
    from lokin_doctor.tools.sentinel.history import History
    from lokin_doctor.tools.sentinel.metrics import SentinelMetrics
    from lokin_doctor.tools.sentinel.records import PHASES, Run
    from lokin_doctor.tools.sentinel.web import StatusServer

    def run_of(report: dict[str, Any], at: float, target: str) -> Run:
        rc = report["root_cause"]
        phases = {
            PHASES[c["id"]]: c["duration_ms"] / 1000
            for c in report["checks"]
            if c["id"] in PHASES and c["status"] != "skip"
        }
        return Run(target, at, report["duration_ms"] / 1000, report["status"], rc and rc["code"], rc and rc["check"],
                   rc["summary"] if rc else "healthy", rc and rc["hint"], phases, report=report,
                   state="down" if report["status"] == "fail" else "up")  # fmt: skip

    target = "ws://127.0.0.1:8080/"
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite"
        history = History(path)
        metrics = SentinelMetrics()
        server = StatusServer(history, metrics, [target], "127.0.0.1", 0)
        start = time.time() - n * 60
        rss0 = rss_mib()
        t0 = time.process_time()
        for i in range(n):
            report = down if kind == "flapping" and i % 3 == 0 else ok
            stored = history.record(run_of(report, start + i * 60, target))
            metrics.observe(stored)
            if keep_s is not None:
                # The engine prunes after each run against the wall clock; here the clock is the runs'.
                cutoff_age = time.time() - (start + i * 60) + keep_s
                history.prune(older_than=cutoff_age)
            if (i + 1) % 1000 == 0:
                page_t = time.monotonic()
                html = server.respond("/", {}).body
                points.append(
                    {
                        "runs": i + 1,
                        "rows": history.count(),
                        "file_kib": round(path.stat().st_size / 1024, 1),
                        "used_kib": round(history.size() / 1024, 1),
                        "rss_mib": round(rss_mib(), 1),
                        "page_ms": round((time.monotonic() - page_t) * 1000, 1),
                        "page_kib": round(len(html) / 1024, 1),
                    }
                )
        cpu = time.process_time() - t0
        history.close()
    return {
        "kind": kind,
        "keep": "1d" if keep_s else "all",
        "runs": n,
        "cpu_per_record_ms": round(cpu / n * 1000, 3),
        "rss_start_mib": round(rss0, 1),
        "points": points,
    }


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[float, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.events.append((time.monotonic(), json.loads(body).get("state", "?")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, state: str, after: int, timeout: float = 30.0) -> float | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, got in self.events[after:]:
                if got == state:
                    return at
            time.sleep(0.01)
        return None


def failure_to_webhook(url: str, serve: Serve, history: Path, linger: str, rounds: int = 3) -> dict[str, Any]:
    sink = Sink()
    proc = subprocess.Popen(
        lokin("sentinel", url, "--every", "1", "--jitter", "0", "--confirm", "1", "--history", str(history), "--webhook", sink.url, "--linger", linger, "-q"),
        env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    delays = []
    try:
        time.sleep(3)
        for _ in range(rounds):
            seen = len(sink.events)
            t0 = time.monotonic()
            serve.kill()
            at = sink.wait("down", seen)
            if at is not None:
                delays.append(at - t0)
            seen = len(sink.events)
            serve.start()
            sink.wait("up", seen)
            time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        sink.server.shutdown()
    return {
        "linger": linger,
        "rounds": rounds,
        "delays_s": [round(d, 2) for d in delays],
        "median_s": round(statistics.median(delays), 2) if delays else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each target per sentinel (real runs)")
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--history-runs", type=int, default=10000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    port = free_port()
    serve = Serve(port)
    serve.start()
    url = f"ws://127.0.0.1:{port}/"
    urls = [f"ws://127.0.0.1:{port}/t{i}" for i in range(args.targets)]
    out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out["anchor_all"] = anchor(url)
            print(f"anchor: a bare `all` process: {out['anchor_all']['cpu_s'] * 1000:.0f} ms CPU", flush=True)
            startup = sentinel_runs([url], 1, Path(tmp) / "start.sqlite")
            out["sentinel_one_run"] = startup
            print(
                f"a sentinel process with one run: {startup['cpu_s'] * 1000:.0f} ms CPU (start-up included)",
                flush=True,
            )
            real = []
            for label, targets, flap in (
                ("healthy, 1 target", [url], None),
                (f"healthy, {len(urls)} targets", urls, None),
                (f"flapping, {len(urls)} targets", urls, serve),
            ):
                res = sentinel_runs(targets, args.runs, Path(tmp) / f"h{len(real)}.sqlite", flap)
                res["label"] = label
                # The marginal cost: what the runs after the first add, start-up (one run) set aside.
                res["marginal_cpu_per_run_ms"] = round(
                    (res["cpu_s"] - startup["cpu_s"]) / (res["runs"] - 1) * 1000, 1
                )
                res["vs_anchor"] = round(
                    res["marginal_cpu_per_run_ms"] / 1000 / out["anchor_all"]["cpu_s"], 3
                )
                real.append(res)
                print(
                    f"{label}: {res['runs']} runs, {res['cpu_per_run_ms']:.1f} ms CPU/run overall, "
                    f"{res['marginal_cpu_per_run_ms']:.1f} ms marginal ({res['vs_anchor']:.2f}x a bare all), "
                    f"peak RSS {res['max_rss_mib']:.0f} MiB",
                    flush=True,
                )
            out["real_runs"] = real
            ok, down = real_reports(url, serve)
            growth = []
            for kind in ("healthy", "flapping"):
                for keep in (None, 86400.0):
                    res = history_growth(kind, args.history_runs, keep, ok, down)
                    growth.append(res)
                    last = res["points"][-1]
                    print(
                        f"history {kind}, keep {res['keep']}: {last['rows']} rows, {last['file_kib']} KiB after {res['runs']} runs; RSS {res['rss_start_mib']} -> {last['rss_mib']} MiB; page {last['page_ms']} ms",
                        flush=True,
                    )
            out["history"] = growth
            # With the default linger a run is connected most of the time: the kill is seen by the run in
            # flight. With --linger 0 a run is short: the kill is seen by the next one (<= --every later).
            out["failure_to_webhook"] = [
                failure_to_webhook(url, serve, Path(tmp) / f"hook{linger}.sqlite", linger)
                for linger in ("1", "0")
            ]
            for res in out["failure_to_webhook"]:
                print(f"failure to webhook, --linger {res['linger']}: {res}", flush=True)
    finally:
        serve.kill()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
