#!/usr/bin/env python3
"""Where does ``lokin-doctor serve`` spend memory per connection? tracemalloc, by allocation site.

    python bench/serve_memory.py [-n 2000] [--ping-interval 20] [--server serve|proto] [--top 25]

Starts the server in this process (``running_server`` from lokin_doctor.server, or the prototype of
bench/proto_server.py with ``--server proto``) with tracemalloc on, drives N idle connections from a
``lokin-doctor load`` subprocess, and prints the allocation sites that grew, in bytes per connection.
tracemalloc only sees Python allocations (not the transports' C structures nor kernel buffers): the
RSS figures of bench/capacity.py are the ground truth, this says where the Python part goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def main_async(args: argparse.Namespace) -> None:
    if args.server == "proto":
        sys.path.insert(0, str(ROOT / "bench"))
        from proto_server import ProtoConfig, running_proto_server

        ctx = running_proto_server(ProtoConfig(port=0, ping_interval=args.ping_interval or None))
    else:
        from lokin_doctor.server import ServerConfig, running_server

        ctx = running_server(
            ServerConfig(
                port=0,
                quiet=True,
                max_per_ip=0,
                max_connections=args.n * 2 + 100,
                ping_interval=args.ping_interval or None,
            )
        )
    async with ctx as server:
        port = server.port
        warm = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lokin_doctor",
            "load",
            f"ws://127.0.0.1:{port}/",
            "-n",
            "50",
            "--duration",
            "0",
            "--messages",
            "1",
            "--rate",
            "0",
            "--json",
            stdout=subprocess.DEVNULL,
        )
        await warm.wait()
        gc.collect()
        tracemalloc.start(args.frames)
        before = tracemalloc.take_snapshot()
        hold = 4.0 + args.n / 1000
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lokin_doctor",
            "load",
            f"ws://127.0.0.1:{port}/",
            "-n",
            str(args.n),
            "--duration",
            str(hold),
            "--messages",
            "0",
            "--rate",
            "0",
            "--json",
            stdout=subprocess.DEVNULL,
        )
        # Wait until every connection is open, then snapshot while they are held.
        for _ in range(int(hold * 10)):
            await asyncio.sleep(0.1)
            if server.connections >= args.n:
                break
        await asyncio.sleep(0.5)
        gc.collect()
        after = tracemalloc.take_snapshot()
        open_now = server.connections
        await proc.wait()
    stats = after.compare_to(before, args.group)
    total = sum(s.size_diff for s in stats)
    print(
        f"{open_now} connections held; Python heap growth {total / 2**20:.1f} MiB = "
        f"{total / max(1, open_now):.0f} B per connection (tracemalloc, grouped by {args.group})\n"
    )
    print(f"{'B/conn':>8} {'objs/conn':>9}  site")
    for s in stats[: args.top]:
        if s.size_diff <= 0:
            continue
        frames = s.traceback.format()[-2:] if args.group == "traceback" else [str(s.traceback[0])]
        site = " <- ".join(f.strip() for f in frames if not f.startswith("    "))
        print(f"{s.size_diff / open_now:8.0f} {s.count_diff / open_now:9.2f}  {site}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--ping-interval", type=float, default=20.0)
    ap.add_argument("--server", choices=("serve", "proto"), default="serve")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--group", choices=("lineno", "filename", "traceback"), default="lineno")
    args = ap.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main_async(args))


if __name__ == "__main__":
    main()
