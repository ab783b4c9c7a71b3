#!/usr/bin/env python3
"""Where ``lokin-doctor serve`` spends its CPU under the capacity benchmark's load: py-spy samples.

    python bench/profile_serve.py [-n 10000] [--messages 10] [--out bench/results/profile_serve]

Starts ``lokin-doctor serve -q --max-per-ip 0`` pinned to core 0 under ``py-spy record`` (100 Hz,
``--native`` unless ``--no-native``), drives it from this process pinned to core 1 with the load
client of bench/capacity.py (sans-I/O engine: ramp N connections, hold 1 s, ``--messages`` echoes
each, close), then writes the collapsed stacks (``<out>.txt``) and a summary (``<out>.md``):
the share of samples per function (self time) and, for a few hand-picked frames, inclusive.
Loopback only; the server and py-spy are stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _net import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lokin_doctor.target import parse_target  # noqa: E402
from lokin_doctor.tools.common import raise_fd_limit, uvloop_factory  # noqa: E402
from lokin_doctor.tools.load.engine import LoadConfig, run_load  # noqa: E402

INCLUSIVE = (
    "data_received",
    "on_request",
    "ServerProtocol.accept",
    "_policy",
    "_opened",
    "send_response",
    "_message",
    "flush",
    "connection_made",
    "connection_lost",
    "connection_lost_by",
    "receive_data",
    "events_received",
    "ServerProtocol.__init__",
    "gc_collect",
)


def summarize(raw: Path, out: Path, n: int, messages: int) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        self_time[frames[-1]] += count
        seen = set()
        for frame in frames:
            for key in INCLUSIVE:
                if key in frame and key not in seen:
                    seen.add(key)
                    inclusive[key] += count
    lines = [
        f"# py-spy profile of serve: {n} connections, {messages} echoes each",
        "",
        f"{total} samples (100 Hz, idle time excluded).",
        "",
        "| self % | function |",
        "|---|---|",
    ]
    for frame, count in self_time.most_common(40):
        lines.append(f"| {100 * count / total:.1f} | `{frame}` |")
    lines += ["", "| inclusive % | frame |", "|---|---|"]
    for key in INCLUSIVE:
        lines.append(f"| {100 * inclusive[key] / total:.1f} | `{key}` |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile_serve"))
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--serve-args", default="")
    args = ap.parse_args()
    raise_fd_limit(args.n + 200)
    port = free_port()
    script = Path(sys.executable).with_name("lokin-doctor")
    serve = [str(script)] if script.exists() else [sys.executable, "-m", "lokin_doctor"]
    cmd = [
        *serve,
        "serve",
        "--port",
        str(port),
        "-q",
        "--max-per-ip",
        "0",
        "--max-connections",
        str(2 * args.n + 2000),
    ]
    cmd += args.serve_args.split()
    server = subprocess.Popen(["taskset", "-c", "0", *cmd], stdin=subprocess.DEVNULL)
    raw = Path(args.out + ".txt")
    spy = None
    try:
        if not wait_port(port):
            raise SystemExit(f"serve did not listen on {port} within 15 s")
        os.sched_setaffinity(0, {1})
        target = parse_target(f"ws://127.0.0.1:{port}/")

        def cfg(connections: int, messages: int) -> LoadConfig:
            return LoadConfig(
                target=target,
                address="127.0.0.1",
                connections=connections,
                rate=0,
                concurrency=100,
                duration=1.0,
                messages=messages,
                message_size=32,
                timeout=15.0,
            )

        with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
            runner.run(run_load(cfg(100, 2)))  # warm-up
            spy_cmd = [
                "py-spy",
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                "100",
                "--format",
                "raw",
                "-o",
                str(raw),
            ]
            if not args.no_native:
                spy_cmd.append("--native")
            spy = subprocess.Popen(spy_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            run = runner.run(run_load(cfg(args.n, args.messages)))
            print(f"opened {run.to_dict()['connections']['opened']} of {args.n}", file=sys.stderr)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    summarize(raw, Path(args.out + ".md"), args.n, args.messages)


if __name__ == "__main__":
    main()
