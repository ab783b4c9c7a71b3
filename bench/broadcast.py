#!/usr/bin/env python3
"""Cross-instance broadcast: two ``lokin-doctor serve --redis`` instances, one real redis-server, loopback only.

    python bench/broadcast.py [--clients 5000] [--latency-messages 200] [--rate 50] [--burst 20] [--json out.json]

1. redis-server on a free loopback port; two ``serve --redis`` instances A and B (``-q``, no per-IP cap,
   no keepalive pings so that only broadcasts cross the wire);
2. latency, idle: one sender on A, one probe on A and one on B; ``--latency-messages`` broadcasts at
   ``--rate`` per second, each carrying the sender's clock; p50/p99 from send to receipt on B (through
   Redis) and on A (local delivery);
3. the same with ``--clients`` connections open (half on each instance), every one reading, at
   ``--loaded-rate`` per second (each broadcast is then ``--clients`` deliveries);
4. fan-out: ``--burst`` broadcasts sent back to back from A; the time until every client of both
   instances has all of them gives deliveries per second, and each server's CPU time per delivery.

The load client is this process: raw asyncio protocols that count frames without parsing them (the
probes parse theirs), so that the client is not the bottleneck of the fan-out. Every loop is bounded
in count and time (``--max-time``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from lokin_doctor.tools.common import raise_fd_limit, uvloop_factory  # noqa: E402

HANDSHAKE = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def masked_text(payload: bytes) -> bytes:
    """A client text frame (masked, with a zero key: the payload goes out as is)."""
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class Client(asyncio.Protocol):
    """One WebSocket client: handshake, then counts server frames; a probe also keeps their payloads."""

    def __init__(self, port: int, probe: bool = False) -> None:
        self.port = port
        self.probe = probe
        self.open = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.upgraded = False
        self.count = 0  # messages after the welcome
        self.welcome: bytes | None = None
        self.received: list[tuple[float, bytes]] = []
        self.transport: asyncio.Transport | None = None
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(HANDSHAKE.format(port=self.port).encode())

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                if not self.open.done():
                    self.open.set_exception(ConnectionError(bytes(buf[:80]).decode("latin-1")))
                return
            del buf[: end + 4]
            self.upgraded = True
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + length:
                break
            if self.welcome is None:
                self.welcome = bytes(buf[pos + head : pos + head + length])
                if not self.open.done():
                    self.open.set_result(None)
            else:
                self.count += 1
                if self.probe:
                    self.received.append((now, bytes(buf[pos + head : pos + head + length])))
            pos += head + length
        if pos:
            del buf[:pos]
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("closed before the welcome"))

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked_text(payload))


async def connect(port: int, probe: bool = False) -> Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(port, probe), "127.0.0.1", port)
    await asyncio.wait_for(client.open, 15)
    return client


async def connect_many(ports: list[int], n: int, concurrency: int = 200) -> list[Client]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Client:
        async with gate:
            return await connect(ports[i % len(ports)])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


async def latency(
    sender: Client, probes: dict[str, Client], count: int, rate: float, timeout: float
) -> dict[str, Any]:
    """Paced broadcasts with the send time inside; per probe p50/p99 of (receipt - send) in ms."""
    for probe in probes.values():
        probe.received.clear()
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sender.send(json.dumps({"type": "broadcast", "seq": i, "t": time.perf_counter()}).encode())
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and any(len(p.received) < count for p in probes.values()):
        await asyncio.sleep(0.01)
    out: dict[str, Any] = {}
    for name, probe in probes.items():
        lat = []
        seqs = []
        for at, payload in probe.received:
            msg = json.loads(payload)
            if "seq" in msg:
                lat.append((at - msg["t"]) * 1000)
                seqs.append(msg["seq"])
        out[name] = {
            "received": len(lat),
            "duplicates": len(seqs) - len(set(seqs)),
            "p50_ms": pct(lat, 0.50),
            "p99_ms": pct(lat, 0.99),
            "max_ms": round(max(lat), 2) if lat else None,
        }
    return out


class Proc:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def health(port: int) -> dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]
    finally:
        conn.close()


async def run(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    rport = free_port()
    procs: list[Proc] = []
    try:
        redis = Proc(
            [redis_bin, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            logdir / "redis.log",
        )
        procs.append(redis)
        if not wait_port(rport):
            raise SystemExit("redis-server did not start")
        url = f"redis://127.0.0.1:{rport}/0"
        ports = [free_port(), free_port()]
        servers = []
        for name, port in zip("AB", ports, strict=True):
            cmd = [
                sys.executable,
                "-m",
                "lokin_doctor",
                "serve",
                "--port",
                str(port),
                "-q",
                "--max-per-ip",
                "0",
            ]
            cmd += ["--max-connections", str(args.clients + 1000), "--ping-interval", "0", "--redis", url]
            servers.append(Proc(cmd, logdir / f"serve-{name}.log"))
        procs.extend(servers)
        for port in ports:
            if not wait_port(port):
                raise SystemExit(f"serve did not start on {port}")
        end = time.monotonic() + 15
        while time.monotonic() < end and not all(
            health(p).get("broker", {}).get("state") == "up" for p in ports
        ):
            await asyncio.sleep(0.1)
        a, b = ports
        sender = await connect(a)
        probes = {
            "cross (A -> Redis -> B)": await connect(b, probe=True),
            "local (A -> A)": await connect(a, probe=True),
        }
        idle = await latency(sender, probes, args.latency_messages, args.rate, 10)
        print(f"idle latency: {json.dumps(idle)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        crowd = await connect_many(ports, args.clients)
        ramp_s = time.perf_counter() - t0
        print(f"{len(crowd)} clients open in {ramp_s:.1f} s", file=sys.stderr, flush=True)
        loaded = await latency(sender, probes, args.latency_messages, args.loaded_rate, 20)
        print(f"loaded latency: {json.dumps(loaded)}", file=sys.stderr, flush=True)
        # Let every client get the last latency broadcasts first (only the probes were waited for).
        settle = time.perf_counter() + 30
        while time.perf_counter() < settle and any(c.count < args.latency_messages for c in crowd):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        # Fan-out: a burst from A, every client of both instances must get all of it.
        everyone = [*crowd, *probes.values()]
        base = [c.count for c in everyone]
        cpu0 = [s.cpu() for s in servers]
        redis_cpu0 = redis.cpu()
        t0 = time.perf_counter()
        for i in range(args.burst):
            sender.send(json.dumps({"type": "broadcast", "burst": i, "pad": "x" * 40}).encode())
        deadline = t0 + args.fanout_timeout
        while time.perf_counter() < deadline:
            if all(c.count - b0 >= args.burst for c, b0 in zip(everyone, base, strict=True)):
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t0
        got = sum(min(args.burst, c.count - b0) for c, b0 in zip(everyone, base, strict=True))
        dup = sum(max(0, c.count - b0 - args.burst) for c, b0 in zip(everyone, base, strict=True))
        await asyncio.sleep(0.3)
        cpu = [s.cpu() - c for s, c in zip(servers, cpu0, strict=True)]
        wanted = len(everyone) * args.burst
        fanout = {
            "clients": len(everyone),
            "broadcasts": args.burst,
            "deliveries_wanted": wanted,
            "deliveries": got,
            "extra": dup,
            "seconds": round(elapsed, 3),
            "deliveries_per_s": round(got / elapsed) if elapsed else None,
            "server_cpu_us_per_delivery": [round(c / max(1, got / 2) * 1e6, 2) for c in cpu],
            "redis_cpu_ms": round((redis.cpu() - redis_cpu0) * 1000, 1),
            "complete": got == wanted,
        }
        print(f"fan-out: {json.dumps(fanout)}", file=sys.stderr, flush=True)
        hb = [health(p) for p in ports]
        for c in everyone + [sender]:
            if c.transport is not None:
                c.transport.abort()
        return {
            "clients": args.clients,
            "ramp_s": round(ramp_s, 2),
            "latency_idle": idle,
            "latency_loaded": loaded,
            "fanout": fanout,
            "broker": [h.get("broker") for h in hb],
            "rate": args.rate,
            "loaded_rate": args.loaded_rate,
            "latency_messages": args.latency_messages,
        }
    finally:
        for p in reversed(procs):
            p.stop()


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "| phase | path | received | p50 ms | p99 ms | max ms | duplicates |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, key in (
        (f"2 probes only, {r['rate']:g}/s", "latency_idle"),
        (f"{r['clients']} clients open, {r['loaded_rate']:g}/s", "latency_loaded"),
    ):
        for path, v in r[key].items():
            lines.append(
                f"| {phase} | {path} | {v['received']}/{r['latency_messages']} | {v['p50_ms']} | {v['p99_ms']} | "
                f"{v['max_ms']} | {v['duplicates']} |"
            )
    f = r["fanout"]
    lines += [
        "",
        "| fan-out | clients | broadcasts | deliveries | seconds | deliveries/s | server CPU µs/delivery (A, B) | redis CPU ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| burst from A | {f['clients']} | {f['broadcasts']} | {f['deliveries']}/{f['deliveries_wanted']} "
        f"(+{f['extra']} extra) | {f['seconds']} | {f['deliveries_per_s']} | "
        f"{', '.join(str(x) for x in f['server_cpu_us_per_delivery'])} | {f['redis_cpu_ms']} |",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--latency-messages", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0, help="latency broadcasts per second, probes only")
    ap.add_argument(
        "--loaded-rate",
        type=float,
        default=5.0,
        help="latency broadcasts per second with --clients open (each costs --clients deliveries: keep "
        "rate x clients under the fan-out rate, or the latency measures a queue)",
    )
    ap.add_argument("--burst", type=int, default=20, help="broadcasts of the fan-out phase")
    ap.add_argument("--fanout-timeout", type=float, default=60.0)
    ap.add_argument("--max-time", type=float, default=600.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    if (
        not 1 <= args.clients <= 50_000
        or not 1 <= args.latency_messages <= 10_000
        or not 1 <= args.burst <= 1000
    ):
        raise SystemExit("--clients 1-50000, --latency-messages 1-10000, --burst 1-1000")
    raise_fd_limit(args.clients + 2000)
    logdir = Path(tempfile.mkdtemp(prefix="lokin-broadcast-"))
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        result = runner.run(asyncio.wait_for(run(args, logdir), args.max_time))
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "logs": str(logdir)}
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
