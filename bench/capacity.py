#!/usr/bin/env python3
"""Capacity benchmark: ``lokin-doctor serve`` against the original Node ``ws`` server, same load client.

    python bench/capacity.py [--sizes 1000,5000,10000] [--servers serve,node] [--json out.json]

For every server and size N a fresh server process is started on a free loopback port, pinned to
core 0, and this process (the load client, :mod:`lokin_doctor.tools.load.engine`, sans-I/O engine on
uvloop) is pinned to core 1. Then:

1. warm-up: 100 connections opened, echoed and closed (imports, JIT, allocator pools), 1 s pause;
2. idle RSS of the server (psutil);
3. ramp N connections (``--rate 0``: as fast as ``--concurrency`` in-flight handshakes allow);
4. hold ``--duration`` s; the server's RSS is sampled during the hold (max of the samples);
5. ``--messages`` echo round trips per connection, all connections at once;
6. close; stop the server.

Reported per server and N: memory per idle connection = (RSS held - RSS idle) / N, handshakes/s
(opened / ramp time), echo messages/s, handshake and round-trip p99, the server's CPU time per
handshake and per echoed message (robust to the client being the bottleneck), failures; then the
ratios serve/node.

Servers (``--servers``, comma-separated):

* ``serve``: ``lokin-doctor serve -q --max-per-ip 0`` (quiet: no log line per connection);
* ``node``: ``bench/node/echo_server.js``, the original server.js minus its broadcast and its per-connection
  console.log (same ws 8.23.0, same options): the like-for-like comparison, since serve only echoes;
* ``serve-logs``: ``lokin-doctor serve`` with its default text log (to a file);
* ``node-serverjs``: ``tests/peers/node/server.js`` unchanged (logs to a file). It broadcasts every message
  to every other client, so an echo phase at N connections costs N sends per message: it runs with
  ``--messages 0`` (handshakes and memory only);
* ``proto``: ``bench/proto_server.py``, the prototype whose design ``serve`` now uses (kept for comparison).
* ``bun``: ``bench/bun/echo_server.js`` on Bun (uWebSockets inside; npm ``@oven/bun-linux-x64``, installed by
  ``npm ci --prefix bench/bun`` on first use): same welcome and echo as ``node``, the performance anchor.
* ``picows``: ``bench/picows_server.py``, the same welcome and echo on picows (Cython, ``pip install picows``).

Extra arguments for serve go through ``--serve-args "--ping-interval 0"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _net import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from lokin_doctor.target import parse_target  # noqa: E402
from lokin_doctor.tools.common import raise_fd_limit, uvloop_factory  # noqa: E402
from lokin_doctor.tools.load.engine import LoadConfig, LoadRun, run_load  # noqa: E402

NODE_DIR = ROOT / "tests" / "peers" / "node"
SERVER_CORE, CLIENT_CORE = 0, 1
BUN_DIR = ROOT / "bench" / "bun"
ALL_SERVERS = ("serve", "node", "serve-logs", "node-serverjs", "proto", "bun", "picows")


def revision() -> str:
    """The commit of the server code measured (and whether the working tree differs from it)."""
    try:
        head = subprocess.run(
            [
                "git",
                "log",
                "-1",
                "--format=%h %cI",
                "--",
                "lokin_doctor/server",
                "lokin_doctor/server/command.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lokin_doctor/server", "lokin_doctor/server/command.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


#: Decided once, before this process pins itself (after that it sees one core only).
CAN_PIN = hasattr(os, "sched_setaffinity") and {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)


def can_pin() -> bool:
    return CAN_PIN


def node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "missing"
    try:
        ws = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        ws = "?"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return f"{out}, ws {ws}"


def websockets_version() -> str:
    import websockets

    return str(websockets.__version__)


def ensure_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed: the Node comparison needs Node.js (apt install nodejs npm)")
    if not (NODE_DIR / "node_modules" / "ws").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("tests/peers/node/node_modules is missing and npm is not installed")
        print("installing ws: npm ci --prefix tests/peers/node", file=sys.stderr)
        subprocess.run([npm, "ci", "--prefix", str(NODE_DIR)], check=True, timeout=300)
    return node


def ensure_bun() -> str:
    """The Bun binary of npm's @oven/bun-linux-x64 (bench/bun, pinned by its package-lock.json)."""
    binary = BUN_DIR / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise SystemExit("bench/bun/node_modules is missing and npm is not installed")
        print("installing bun: npm ci --prefix bench/bun", file=sys.stderr)
        subprocess.run(
            ["npm", "ci", "--prefix", str(BUN_DIR), "--no-audit", "--no-fund"], check=True, timeout=300
        )
    return str(binary)


def bun_version() -> str:
    binary = BUN_DIR / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"
    if not binary.exists():
        return "missing"
    return subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()


def lokin_command() -> list[str]:
    """The installed console script (its real path, not a pyenv shim), else python -m lokin_doctor."""
    script = Path(sys.executable).with_name("lokin-doctor")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "lokin_doctor"]


class Server:
    def __init__(
        self, kind: str, n: int, logdir: Path, serve_args: list[str], tuned_args: list[str], label: str
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = logdir / f"{label}-{n}-{self.port}.log"
        max_conns = str(2 * n + 2000)
        env = {**os.environ, "HOST": "127.0.0.1"}
        if kind == "serve":
            cmd = [
                *lokin_command(),
                "serve",
                "--port",
                str(self.port),
                "-q",
                "--max-per-ip",
                "0",
                "--max-connections",
                max_conns,
                *serve_args,
            ]
        elif kind == "serve-logs":
            cmd = [
                *lokin_command(),
                "serve",
                "--port",
                str(self.port),
                "--max-per-ip",
                "0",
                "--max-connections",
                max_conns,
                *serve_args,
            ]
        elif kind == "proto":
            cmd = [
                sys.executable,
                str(ROOT / "bench" / "proto_server.py"),
                "--port",
                str(self.port),
                "--max-connections",
                max_conns,
                *tuned_args,
                *serve_args,
            ]
        elif kind == "node":
            cmd = [ensure_node(), str(ROOT / "bench" / "node" / "echo_server.js"), str(self.port)]
        elif kind == "node-serverjs":
            cmd = [ensure_node(), str(NODE_DIR / "server.js"), str(self.port)]
        elif kind == "bun":
            cmd = [ensure_bun(), str(BUN_DIR / "echo_server.js"), str(self.port)]
        elif kind == "picows":
            cmd = [sys.executable, str(ROOT / "bench" / "picows_server.py"), str(self.port)]
        else:
            raise SystemExit(f"unknown server {kind!r}; choose from {', '.join(ALL_SERVERS)}")
        self.cmd = cmd
        pin = can_pin()

        def pre() -> None:
            if pin:
                os.sched_setaffinity(0, {SERVER_CORE})

        self.logf = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env, preexec_fn=pre, stdin=subprocess.DEVNULL
        )
        if not wait_port(self.port):
            self.stop()
            raise SystemExit(f"{kind} did not start on port {self.port}; log: {self.log.read_text()[-2000:]}")
        self.ps = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.logf.close()


def parse_servers(text: str) -> list[tuple[str, str, list[str]]]:
    """``serve,node`` or ``label=kind:extra args;...`` (``;``-separated when labels carry arguments)."""
    entries = text.split(";") if ";" in text else text.split(",")
    out = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        label, _, spec = entry.partition("=") if "=" in entry else (entry, "", entry)
        kind, _, extra = spec.partition(":")
        if kind not in ALL_SERVERS:
            raise SystemExit(f"unknown server {kind!r} in {entry!r}; choose from {', '.join(ALL_SERVERS)}")
        out.append((label, kind, shlex.split(extra)))
    return out


async def one(
    spec: tuple[str, str, list[str]], n: int, args: argparse.Namespace, logdir: Path
) -> dict[str, Any]:
    label, kind, extra = spec
    messages = 0 if kind == "node-serverjs" else args.messages
    server = Server(
        kind,
        n,
        logdir,
        [*(shlex.split(args.serve_args) if kind.startswith("serve") else []), *extra],
        shlex.split(args.tuned_args),
        label,
    )
    try:
        target = parse_target(f"ws://127.0.0.1:{server.port}/")

        def cfg(connections: int, duration: float, msgs: int) -> LoadConfig:
            return LoadConfig(
                target=target,
                address="127.0.0.1",
                compression=args.client_compression,
                connections=connections,
                rate=args.rate,
                concurrency=args.concurrency,
                duration=duration,
                messages=msgs,
                message_size=args.message_size,
                timeout=args.timeout,
            )

        await run_load(cfg(100, 0.0, 2 if messages else 0))
        await asyncio.sleep(1.0)
        rss_idle = server.rss()
        samples: list[int] = []
        cpu_marks: dict[str, float] = {}
        loop = asyncio.get_running_loop()

        def sample() -> None:
            try:
                samples.append(server.rss())
            except psutil.Error:
                pass

        def on_phase(phase: str, run: LoadRun) -> None:
            cpu_marks[phase] = server.cpu()
            if phase == "hold":
                for k in range(1, 5):
                    loop.call_later(args.duration * k / 5, sample)

        run = await run_load(cfg(n, args.duration, messages), on_phase=on_phase)
        rss_held = max(samples) if samples else server.rss()
        doc = run.to_dict()
        opened = doc["connections"]["opened"]
        ramp_cpu = cpu_marks.get("hold", 0) - cpu_marks.get("ramp", 0)
        echo_cpu = cpu_marks.get("close", 0) - cpu_marks.get("echo", 0)
        received = doc["echo"]["received"]
        return {
            "server": label,
            "connections": n,
            "opened": opened,
            "failed": doc["failures"]["total"],
            "failures": doc["failures"]["by_code"],
            "dropped_while_held": doc["dropped"]["while_held"],
            "rss_idle_mb": round(rss_idle / 2**20, 1),
            "rss_held_mb": round(rss_held / 2**20, 1),
            "kb_per_conn": round((rss_held - rss_idle) / max(1, opened) / 1024, 2),
            "handshakes_per_s": doc["ramp"]["handshakes_per_s"],
            "handshake_p50_ms": doc["handshake_ms"]["p50"],
            "handshake_p99_ms": doc["handshake_ms"]["p99"],
            "messages": messages,
            "echo_msgs_per_s": doc["echo"]["messages_per_s"],
            "rtt_p50_ms": doc["echo"]["rtt_ms"]["p50"],
            "rtt_p99_ms": doc["echo"]["rtt_ms"]["p99"],
            "server_cpu_us_per_handshake": round(ramp_cpu / opened * 1e6, 1) if opened else None,
            "server_cpu_us_per_msg": round(echo_cpu / received * 1e6, 1) if received else None,
            "client_cpu_s": doc["client_cpu_s"],
            "client_busy_ramp": doc["client_busy"].get("ramp"),
            "client_busy_echo": doc["client_busy"].get("echo"),
            "cmd": " ".join(server.cmd),
        }
    finally:
        server.stop()


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure is the median over the runs; the ranges of the two rates are kept."""
    row = dict(runs[-1])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = sorted(r[key] for r in runs if r.get(key) is not None)
            if values:
                mid = len(values) // 2
                row[key] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    for key in ("handshakes_per_s", "echo_msgs_per_s", "kb_per_conn"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key + "_range"] = [min(values), max(values)] if values else None
    row["runs"] = len(runs)
    row["failed"] = sum(r["failed"] for r in runs)
    return row


def fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def rng(r: dict[str, Any], key: str) -> str:
    span = r.get(key + "_range")
    if not span or r.get("runs", 1) < 2:
        return fmt(r[key], ".0f")
    return f"{fmt(r[key], '.0f')} ({span[0]:.0f}-{span[1]:.0f})"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "server",
        "N",
        "opened",
        "KB/conn",
        "hs/s (min-max)",
        "hs p99 ms",
        "echo msg/s (min-max)",
        "rtt p99 ms",
        "srv µs/hs",
        "srv µs/msg",
        "client busy ramp/echo",
        "failed",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["server"],
                    str(r["connections"]),
                    str(r["opened"]),
                    fmt(r["kb_per_conn"], ".1f"),
                    rng(r, "handshakes_per_s"),
                    fmt(r["handshake_p99_ms"], ".1f"),
                    rng(r, "echo_msgs_per_s") if r["messages"] else "(no echo)",
                    fmt(r["rtt_p99_ms"], ".1f"),
                    fmt(r["server_cpu_us_per_handshake"], ".0f"),
                    fmt(r["server_cpu_us_per_msg"], ".1f"),
                    f"{fmt(r['client_busy_ramp'], '.0%')} / {fmt(r['client_busy_echo'], '.0%')}",
                    str(r["failed"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]], a: str, b: str) -> str:
    by = {(r["server"], r["connections"]): r for r in rows}
    sizes = sorted({r["connections"] for r in rows})
    out = [
        f"| N | {a}/{b} KB/conn (<= 1 is better) | hs/s (>= 1) | echo msg/s (>= 1) | hs p99 | rtt p99 | goal met |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        ra, rb = by.get((a, n)), by.get((b, n))
        if not ra or not rb:
            continue

        def q(key: str, ra: dict[str, Any] = ra, rb: dict[str, Any] = rb) -> float | None:
            x, y = ra.get(key), rb.get(key)
            return round(x / y, 2) if x is not None and y else None

        mem, hs, msg = q("kb_per_conn"), q("handshakes_per_s"), q("echo_msgs_per_s")
        met = mem is not None and hs is not None and mem <= 1 and hs >= 1 and (msg is None or msg >= 1)
        out.append(
            f"| {n} | {fmt(mem)} | {fmt(hs)} | {fmt(msg)} | {fmt(q('handshake_p99_ms'))} | "
            f"{fmt(q('rtt_p99_ms'))} | {'yes' if met else 'no'} |"
        )
    return "\n".join(out)


#: issue 10's goals for serve against Bun, in one run: CPU per handshake, per echoed message, memory.
BUN_GOALS = {"hs": 2.0, "msg": 1.0, "kb": 2.0}


def bun_goals(rows: list[dict[str, Any]]) -> str:
    """serve against the Bun anchor: CPU ratios (server CPU per handshake / per echoed message) and KB/conn."""
    by = {(r["server"], r["connections"]): r for r in rows}
    out = [
        f"| N | serve/bun CPU per handshake (goal <= {BUN_GOALS['hs']:g}) | serve/bun CPU per echoed msg "
        f"(goal <= {BUN_GOALS['msg']:g}) | serve KB/conn (goal <= {BUN_GOALS['kb']:g}) | bun KB/conn | goals met |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted({r["connections"] for r in rows}):
        ra, rb = by.get(("serve", n)), by.get(("bun", n))
        if not ra or not rb:
            continue

        def q(key: str, ra: dict[str, Any] = ra, rb: dict[str, Any] = rb) -> float | None:
            x, y = ra.get(key), rb.get(key)
            return round(x / y, 2) if x is not None and y else None

        hs, msg, kb = q("server_cpu_us_per_handshake"), q("server_cpu_us_per_msg"), ra.get("kb_per_conn")
        met = [
            name
            for name, value, goal in (
                ("hs", hs, BUN_GOALS["hs"]),
                ("msg", msg, BUN_GOALS["msg"]),
                ("kb", kb, BUN_GOALS["kb"]),
            )
            if value is not None and value <= goal
        ]
        out.append(
            f"| {n} | {fmt(hs)} | {fmt(msg)} | {fmt(kb, '.2f')} | {fmt(rb.get('kb_per_conn'), '.2f')} | "
            f"{', '.join(met) or 'none'} of hs, msg, kb |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,5000,10000")
    ap.add_argument("--servers", default="serve,node")
    ap.add_argument("--duration", type=float, default=3.0, help="hold seconds (RSS sampled during the hold)")
    ap.add_argument("--messages", type=int, default=10, help="echo round trips per connection")
    ap.add_argument("--message-size", type=int, default=32)
    ap.add_argument(
        "--rate", type=float, default=0.0, help="handshakes/s (0: as fast as --concurrency allows)"
    )
    ap.add_argument("--concurrency", type=int, default=100, help="handshakes in flight")
    ap.add_argument("--timeout", type=float, default=15.0)
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per server and size, interleaved (medians kept)"
    )
    ap.add_argument(
        "--serve-args", default="", help="extra arguments for lokin-doctor serve (all serve kinds)"
    )
    ap.add_argument("--tuned-args", default="", help="extra arguments for bench/proto_server.py")
    ap.add_argument(
        "--client-compression", action="store_true", help="offer permessage-deflate (browsers do)"
    )
    ap.add_argument("--pairs", default="", help="extra ratio tables: a/b,c/d (labels)")
    ap.add_argument("--json", help="write every row to this file")
    ap.add_argument("--max-time", type=float, default=1800.0, help="give up after this many seconds")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    specs = parse_servers(args.servers)
    servers = [label for label, _, _ in specs]
    raise_fd_limit(max(sizes) + 1000)  # the servers inherit it
    if can_pin():
        os.sched_setaffinity(0, {CLIENT_CORE})
    else:
        print("fewer than 2 cores: server and client share the CPU; figures are pessimistic", file=sys.stderr)
    if any(kind.startswith("node") for _, kind, _ in specs):
        ensure_node()
    if any(kind == "bun" for _, kind, _ in specs):
        ensure_bun()
    deadline = time.monotonic() + args.max_time
    rows: list[dict[str, Any]] = []
    logdir = Path(tempfile.mkdtemp(prefix="lokin-capacity-"))
    runner = asyncio.Runner(loop_factory=uvloop_factory())
    try:
        for n in sizes:
            results: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
            # Interleaved (A B A B ...) so that background load on the machine hits every server alike.
            for _ in range(args.repeat):
                for spec in specs:
                    label = spec[0]
                    if time.monotonic() > deadline:
                        print("--max-time reached: stopping", file=sys.stderr)
                        break
                    r = runner.run(one(spec, n, args, logdir))
                    print(
                        f"{label:>13} N={n:>6}: {r['kb_per_conn']:6.1f} KB/conn, "
                        f"{fmt(r['handshakes_per_s'], '.0f'):>6} hs/s, {fmt(r['echo_msgs_per_s'], '.0f'):>6} msg/s, "
                        f"hs p99 {fmt(r['handshake_p99_ms'], '.1f')} ms, rtt p99 {fmt(r['rtt_p99_ms'], '.1f')} ms, "
                        f"srv {fmt(r['server_cpu_us_per_handshake'], '.0f')} us/hs "
                        f"{fmt(r['server_cpu_us_per_msg'], '.1f')} us/msg, failed {r['failed']}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results[label].append(r)
            for label in servers:
                if results[label]:
                    rows.append(median_row(results[label]))
    finally:
        runner.close()
    print(
        f"\nserve code: {revision()}; node {node_version()}; bun {bun_version()}; websockets {websockets_version()}"
    )
    print(
        f"server on core {SERVER_CORE}, client on core {CLIENT_CORE}; python {sys.version.split()[0]}; "
        f"hold {args.duration:g} s, {args.messages} echo x {args.message_size} B per connection, "
        f"concurrency {args.concurrency}; logs in {logdir}\n"
    )
    print(table(rows))
    pairs = [("serve", "node"), ("serve-logs", "node-serverjs"), ("proto", "node"), ("serve", "bun")]
    pairs += [tuple(p.split("/", 1)) for p in args.pairs.split(",") if "/" in p]  # type: ignore[misc]
    for a, b in pairs:
        if a in servers and b in servers:
            print(f"\nratios {a} / {b}:\n")
            print(ratios(rows, a, b))
    if "serve" in servers and "bun" in servers:
        print("\nserve against the Bun anchor (issue 10 goals):\n")
        print(bun_goals(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
