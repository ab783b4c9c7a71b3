#!/usr/bin/env python3
"""How fast does ``lokin-doctor all`` give its verdict? Median wall time of N runs of the installed CLI.

    python bench/doctor_speed.py [-n 15] [--json out.json]

The headline (issue 13): ``lokin-doctor all`` on a healthy local server, the whole process, against a bare
websockets client script (``bench/bare_client.py``: connect, ping, close) run the same way (a fresh
interpreter each time), **interleaved** in one run so both see the same machine load; goal: the doctor
within 1.5x the bare client. The doctor is measured twice: with ``--linger 0`` (the session's observation
window is a wait, not work; only when the installed CLI has the option) and with its defaults.

Scenarios (targets from the brief):

* ``healthy``: a ``lokin-doctor serve`` on a free loopback port -> exit 0, target <= 300 ms;
* ``refused``: a free port nobody listens on -> exit 1 (tcp.refused), target <= 300 ms;
* ``silent``: an asyncio server (started here, in a thread) that accepts TCP and never answers, run with
  ``--timeout 1`` -> exit 1 (handshake.no-response), target <= timeout + 0.5 s.

Baselines for context: ``python -c pass`` (interpreter start) and ``lokin-doctor --version`` (CLI import).
The command is the console script's real path (next to this interpreter, not a pyenv shim, which adds a
bash start-up), else ``python -m lokin_doctor``. The first run of each scenario is a warm-up (page cache)
and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _net import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BARE = Path(__file__).resolve().with_name("bare_client.py")
#: The goal of issue 13: the healthy verdict within this factor of the bare client.
GOAL_RATIO = 1.5


def tcp_sockets() -> dict[str, int]:
    """Linux /proc/net/sockstat TCP line: the port and process checks read every socket of the machine."""
    try:
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                parts = line.split()[1:]
                return {parts[i]: int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)}
    except (OSError, ValueError):
        pass
    return {}


def settle(limit_s: float = 90.0, below: int = 1000) -> None:
    """Wait (bounded) for TIME_WAIT sockets left by earlier benchmarks to expire."""
    end = time.monotonic() + limit_s
    while tcp_sockets().get("tw", 0) > below and time.monotonic() < end:
        time.sleep(2)


def lokin_command() -> list[str]:
    script = Path(sys.executable).with_name("lokin-doctor")
    if script.exists():
        return [str(script)]
    found = shutil.which("lokin-doctor")
    if found and "shims" not in found:
        return [os.path.realpath(found)]
    return [sys.executable, "-m", "lokin_doctor"]


class SilentServer:
    """Accepts TCP connections and never sends a byte (a stuck server, a TLS-only port...)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.writers: list[asyncio.StreamWriter] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            try:
                while await reader.read(65536):
                    pass
            except ConnectionError:
                pass

        async def start() -> None:
            self.server = await asyncio.start_server(on_conn, "127.0.0.1", self.port)
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def __enter__(self) -> SilentServer:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            self.server.close()
            for w in self.writers:
                w.transport.abort()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(times[0], 1),
        "p90_ms": round(times[min(len(times) - 1, int(len(times) * 0.9))], 1),
    }


def has_option(lokin: list[str], command: str, option: str) -> bool:
    """Whether the installed CLI's ``command --help`` lists ``option`` (``--linger`` comes with issue 8)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    out = subprocess.run([*lokin, command, "--help"], capture_output=True, text=True, env=env, timeout=30)
    return option in out.stdout


def interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, dict[str, Any]]:
    """Run every command once per round, the order rotating each round; one warm-up round not counted."""
    env = {**os.environ, "NO_COLOR": "1"}
    names = list(commands)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    codes: dict[str, set[int]] = {n: set() for n in names}
    for rnd in range(runs + 1):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(
                commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=60
            )
            dt = (time.perf_counter() - t0) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            codes[name].add(proc.returncode)
            if rnd:
                times[name].append(dt)
                used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                cpu[name].append(used * 1000)
    # CPU time (user + system) is less sensitive than wall time to other processes on a shared machine.
    return {
        n: {
            **_stats(times[n]),
            "cpu_median_ms": round(statistics.median(cpu[n]), 1),
            "exit_codes": sorted(codes[n]),
            "runs": runs,
        }
        for n in names
    }


def timed(cmd: list[str], runs: int, expect: int | None) -> dict[str, Any]:
    env = {**os.environ, "NO_COLOR": "1"}
    times = []
    codes = set()
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=60)
        dt = time.perf_counter() - t0
        codes.add(proc.returncode)
        if i:  # the first run warms the page cache
            times.append(dt * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(times[0], 1),
        "p90_ms": round(times[min(len(times) - 1, int(len(times) * 0.9))], 1),
        "exit_codes": sorted(codes),
        "expected_exit": expect,
        "exit_ok": expect is None or codes == {expect},
    }


def compile_package(lokin: list[str]) -> str:
    """Byte-compile the package the command imports, as ``pip install`` does: with PYTHONDONTWRITEBYTECODE
    set (or a read-only checkout) an editable install would otherwise recompile every module on every
    run, ~100 ms that no installed copy pays, while the bare client's websockets has its .pyc files."""
    import compileall

    out = subprocess.run(
        [sys.executable, "-c", "import lokin_doctor, os; print(os.path.dirname(lokin_doctor.__file__))"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # not the current directory: the package the console script imports
    )
    package = out.stdout.strip()
    if package:
        compileall.compile_dir(package, quiet=1)
    return package


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--runs", type=int, default=15)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--no-settle", action="store_true", help="do not wait for TIME_WAIT sockets to expire")
    ap.add_argument(
        "--healthy-only",
        action="store_true",
        help="only the interleaved healthy comparison with the bare client",
    )
    args = ap.parse_args()
    lokin = lokin_command()
    package = compile_package(lokin)
    print(f"package: {package} (byte-compiled)")
    if not args.no_settle:
        settle()
    sockets_before = tcp_sockets()
    rows: list[dict[str, Any]] = []

    if not args.healthy_only:
        rows.append(
            {
                "scenario": "python -c pass",
                **timed([sys.executable, "-c", "pass"], args.runs, 0),
                "target_ms": None,
            }
        )
        rows.append(
            {
                "scenario": "lokin-doctor --version",
                **timed([*lokin, "--version"], args.runs, 0),
                "target_ms": None,
            }
        )

    port = free_port()
    server = subprocess.Popen(
        [*lokin, "serve", "--port", str(port), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        if not wait_port(port):
            raise SystemExit("lokin-doctor serve did not start")
        url = f"ws://127.0.0.1:{port}/"
        commands = {"bare client (connect, ping, close)": [sys.executable, str(BARE), url]}
        linger = has_option(lokin, "all", "--linger")
        if linger:
            commands["all --linger 0"] = [*lokin, "all", url, "--linger", "0"]
        commands["all (defaults)"] = [*lokin, "all", url]
        versus = interleaved(commands, args.runs)
        bare = versus["bare client (connect, ping, close)"]["median_ms"]
        for name, figures in versus.items():
            ratio = figures["median_ms"] / bare if bare else None
            versus[name]["ratio_to_bare"] = None if ratio is None else round(ratio, 2)
        rows.append(
            {
                "scenario": "all: healthy local server",
                **{k: v for k, v in versus["all (defaults)"].items() if k != "runs"},
                "expected_exit": 0,
                "exit_ok": versus["all (defaults)"]["exit_codes"] == [0],
                "target_ms": 300,
            }
        )
    finally:
        server.terminate()
        server.wait(10)

    if not args.healthy_only:
        refused = free_port()
        rows.append(
            {
                "scenario": "all: refused port",
                **timed([*lokin, "all", f"ws://127.0.0.1:{refused}/"], args.runs, 1),
                "target_ms": 300,
            }
        )

        with SilentServer() as silent:
            rows.append(
                {
                    "scenario": "all: silent server, --timeout 1",
                    **timed(
                        [*lokin, "all", f"ws://127.0.0.1:{silent.port}/", "--timeout", "1"],
                        max(3, args.runs // 3),
                        1,
                    ),
                    "target_ms": 1500,
                }
            )

    print(
        f"command: {' '.join(lokin)}; {args.runs} runs after one warm-up (silent: {max(3, args.runs // 3)}); "
        f"TCP sockets on the machine: {sockets_before.get('inuse', '?')} in use, "
        f"{sockets_before.get('tw', '?')} TIME_WAIT\n"
    )
    print("| scenario | median ms | min ms | p90 ms | exit | target | met |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        target = r["target_ms"]
        met = "-" if target is None else ("yes" if r["median_ms"] <= target and r["exit_ok"] else "no")
        print(
            f"| {r['scenario']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['p90_ms']:.0f} | "
            f"{','.join(map(str, r['exit_codes']))} | {'-' if target is None else f'<= {target} ms'} | {met} |"
        )
    print(
        f"\nhealthy local server, interleaved ({args.runs} rounds after one warm-up; --linger "
        f"{'supported' if linger else 'not in this CLI yet: measured without it'}):\n"
    )
    print("| command | median ms | min ms | p90 ms | CPU ms | exit | x bare | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f in versus.items():
        goal = "-" if name.startswith("bare") else ("met" if f["ratio_to_bare"] <= GOAL_RATIO else "not met")
        print(
            f"| {name} | {f['median_ms']:.0f} | {f['min_ms']:.0f} | {f['p90_ms']:.0f} | {f['cpu_median_ms']:.0f} | "
            f"{','.join(map(str, f['exit_codes']))} | {f['ratio_to_bare']:.2f} | {goal} (<= {GOAL_RATIO}x) |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"command": lokin, "tcp_sockets": sockets_before, "rows": rows, "versus_bare": versus},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
