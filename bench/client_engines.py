#!/usr/bin/env python3
"""Which load-client engine is cheaper? CPU and memory of the client per connection and per round trip.

    python bench/client_engines.py [-n 5000] [--messages 10]

The server is the Node ``ws`` echo server (bench/node/echo_server.js) pinned to core 0; this process,
pinned to core 1, runs the same load with each engine and event loop:

* ``sansio``: asyncio.Protocol + websockets' sans-I/O ClientProtocol, callbacks only (the default);
* ``websockets``: the websockets asyncio client (``connect``, one task per connection).

Reported: client CPU µs per connection during the ramp (connect + handshake + greeting), client CPU µs
per echo round trip, client RSS per open connection, and the rates reached.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from _net import free_port, wait_port  # noqa: E402
from capacity import CAN_PIN, CLIENT_CORE, SERVER_CORE, ensure_node  # noqa: E402

from lokin_doctor.target import parse_target  # noqa: E402
from lokin_doctor.tools.common import raise_fd_limit  # noqa: E402
from lokin_doctor.tools.load.engine import LoadConfig, LoadRun, run_load  # noqa: E402


async def measure(engine: str, port: int, n: int, messages: int) -> dict[str, Any]:
    target = parse_target(f"ws://127.0.0.1:{port}/")
    me = psutil.Process()
    gc.collect()
    rss0 = me.memory_info().rss
    held: list[int] = []

    def on_phase(phase: str, run: LoadRun) -> None:
        if phase == "hold":
            held.append(me.memory_info().rss)

    cfg = LoadConfig(
        target=target,
        address="127.0.0.1",
        connections=n,
        rate=0,
        concurrency=100,
        duration=1.0,
        messages=messages,
        timeout=15.0,
        engine=engine,
    )
    run = await run_load(cfg, on_phase=on_phase)
    doc = run.to_dict()
    opened = doc["connections"]["opened"]
    received = doc["echo"]["received"]
    return {
        "engine": engine,
        "loop": doc["config"]["loop"],
        "opened": opened,
        "failed": doc["failures"]["total"],
        "cpu_us_per_conn": round(run.phase_cpu_s["ramp"] / max(1, opened) * 1e6, 1),
        "cpu_us_per_rt": round(run.phase_cpu_s.get("echo", 0) / max(1, received) * 1e6, 1),
        "kb_per_conn": round((held[0] - rss0) / max(1, opened) / 1024, 1) if held else None,
        "hs_per_s": doc["ramp"]["handshakes_per_s"],
        "msgs_per_s": doc["echo"]["messages_per_s"],
    }


def one(engine: str, loop_name: str, n: int, messages: int) -> dict[str, Any]:
    """One measurement in this (fresh) process, so that RSS starts clean."""
    node = ensure_node()
    port = free_port()

    def pin() -> None:
        if CAN_PIN:
            os.sched_setaffinity(0, {SERVER_CORE})

    server = subprocess.Popen(
        [node, str(ROOT / "bench" / "node" / "echo_server.js"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pin,
        env={**os.environ, "HOST": "127.0.0.1"},
    )
    if CAN_PIN:
        os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        if not wait_port(port):
            raise SystemExit("node echo server did not start")
        factory = None
        if loop_name == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(measure(engine, port, n, messages))
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("ENGINE", "LOOP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    raise_fd_limit(args.n + 1000)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.n, args.messages)))
        return 0
    rows = []
    for _ in range(args.repeat):
        for loop_name in ("uvloop", "asyncio"):
            for engine in ("sansio", "websockets"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        engine,
                        loop_name,
                        "-n",
                        str(args.n),
                        "--messages",
                        str(args.messages),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-2000:])
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
                time.sleep(0.5)
    print(
        f"\n{args.n} connections, {args.messages} echo round trips each, against node ws echo (server core "
        f"{SERVER_CORE}, client core {CLIENT_CORE}); median of {args.repeat} (fresh process each)\n"
    )
    print(
        "| engine | loop | client CPU µs/connection | client CPU µs/round trip | client KB/connection | "
        "hs/s | msg/s | failed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted(
        {(r["engine"], r["loop"]) for r in rows}, key=lambda k: (k[1] != "uvloop", k[0] != "sansio")
    )
    for key in keys:
        runs = [r for r in rows if (r["engine"], r["loop"]) == key]

        def med(field: str, runs: list[dict[str, Any]] = runs) -> float:
            values = sorted(r[field] for r in runs if r[field] is not None)
            return values[len(values) // 2] if values else float("nan")

        print(
            f"| {key[0]} | {key[1]} | {med('cpu_us_per_conn'):.0f} | {med('cpu_us_per_rt'):.1f} | "
            f"{med('kb_per_conn'):.1f} | {med('hs_per_s'):.0f} | {med('msgs_per_s'):.0f} | "
            f"{sum(r['failed'] for r in runs)} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
