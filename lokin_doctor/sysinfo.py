"""What this machine knows about sockets and processes, via psutil. Blocking calls: run them in a thread.

Shared by the ``port`` and ``process`` checks, ``serve`` (who holds the port) and ``monitor``.
As a non-root user psutil cannot see the owner of another user's socket: ``pid`` is then None
and callers say "owner unknown, run as root to see it" instead of failing.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

#: Command lines that look like a LOK IN WebSocket server (default for ``--process``).
DEFAULT_PROCESS_PATTERNS = (r"\bnode(js)?\b.*\bserver\.js\b", r"lokin[-_]doctor\b.*(\bserve\b|--embedded)")


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket."""

    address: str
    port: int
    pid: int | None
    family: str  # "ipv4" or "ipv6"

    @property
    def loopback_only(self) -> bool:
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False

    @property
    def wildcard(self) -> bool:
        return self.address in ("0.0.0.0", "::", "")

    def covers(self, address: str) -> bool:
        """Would a connection to ``address`` reach this socket?"""
        if self.wildcard:
            return self.family == "ipv6" or ":" not in address
        return self.address == address


@dataclass(frozen=True)
class ProcInfo:
    """A snapshot of one process, with what lokin-doctor reports about it."""

    pid: int
    name: str
    cmdline: tuple[str, ...]
    username: str | None
    create_time: float
    rss: int | None
    cpu_percent: float | None
    listening_ports: tuple[int, ...] = field(default=())

    @property
    def command(self) -> str:
        return " ".join(self.cmdline) if self.cmdline else self.name

    @property
    def uptime_s(self) -> float:
        return max(0.0, time.time() - self.create_time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "cmdline": self.command,
            "user": self.username,
            "uptime_s": round(self.uptime_s, 1),
            "rss_bytes": self.rss,
            "cpu_percent": self.cpu_percent,
            "listening_ports": list(self.listening_ports),
        }


def hex_ip(text: str) -> str:
    """A /proc/net/tcp address (host byte order, 32-bit words) as text; IPv4-mapped IPv6 stays IPv6."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    return str(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))


def _proc_listeners(port: int | None) -> list[tuple[str, int, str, str]] | None:
    """LISTEN sockets read from /proc/net/tcp{,6}: (address, port, family, inode); None off Linux.

    psutil.net_connections() maps every socket of the machine to its process (every /proc/PID/fd):
    ~330 ms with 30,000 sockets on the box, a busy server's case. Here only listening sockets are kept.
    """
    found = []
    any_file = False
    for path, family in (("/proc/net/tcp", "ipv4"), ("/proc/net/tcp6", "ipv6")):
        try:
            with open(path) as f:
                any_file = True
                next(f, None)
                for line in f:
                    fields = line.split(None, 10)
                    if len(fields) < 10 or fields[3] != "0A":
                        continue
                    address, _, port_hex = fields[1].rpartition(":")
                    lport = int(port_hex, 16)
                    if port is None or lport == port:
                        found.append((hex_ip(address), lport, family, fields[9]))
        except (OSError, ValueError):
            continue
    return found if any_file else None


def _inode_owners(inodes: set[str]) -> dict[str, int]:
    """Which pid holds each socket inode, stopping as soon as all are found (unreadable fds are skipped)."""
    wanted = {f"socket:[{i}]": i for i in inodes if i != "0"}
    owners: dict[str, int] = {}
    try:
        pids = sorted((int(d) for d in os.listdir("/proc") if d.isdigit()), reverse=True)
    except OSError:
        return owners
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's process without root: owner unknown
        for fd in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            inode = wanted.pop(link, None)
            if inode is not None:
                owners[inode] = pid
                if not wanted:
                    return owners
    return owners


def listeners(port: int | None = None) -> list[Listener]:
    """Every listening TCP socket (on ``port`` if given). Never raises for permission problems."""
    fast = _proc_listeners(port)
    if fast is not None:
        owners = _inode_owners({inode for *_, inode in fast})
        unique = dict.fromkeys(Listener(a, p, owners.get(inode), fam) for a, p, fam, inode in fast)
        return list(unique)
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, PermissionError):
        conns = []
    found = []
    seen = set()
    for c in conns:
        if c.status != psutil.CONN_LISTEN or not c.laddr:
            continue
        if port is not None and c.laddr.port != port:
            continue
        family = "ipv6" if c.family == socket.AF_INET6 else "ipv4"
        key = (c.laddr.ip, c.laddr.port, c.pid, family)
        if key in seen:
            continue
        seen.add(key)
        found.append(Listener(c.laddr.ip, c.laddr.port, c.pid, family))
    return found


def proc_info(pid: int, all_listeners: list[Listener] | None = None) -> ProcInfo | None:
    """Snapshot a process, or None when it is gone."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            name = p.name()
            try:
                cmdline = tuple(p.cmdline())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = ()
            try:
                username: str | None = p.username()
            except (psutil.AccessDenied, KeyError):
                username = None
            try:
                rss: int | None = p.memory_info().rss
            except psutil.AccessDenied:
                rss = None
            try:
                times = p.cpu_times()
                elapsed = max(time.time() - p.create_time(), 1e-3)
                cpu: float | None = round(100.0 * (times.user + times.system) / elapsed, 1)
            except psutil.AccessDenied:
                cpu = None
            create_time = p.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    ports = tuple(sorted({li.port for li in (all_listeners or []) if li.pid == pid}))
    return ProcInfo(pid, name, cmdline, username, create_time, rss, cpu, ports)


def find_processes(
    patterns: tuple[str, ...] | list[str], all_listeners: list[Listener] | None = None
) -> list[ProcInfo]:
    """Processes whose command line matches one of the regular expressions (never this process)."""
    regexes = [re.compile(p) for p in patterns]
    me = os.getpid()
    if all_listeners is None:
        all_listeners = listeners()
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = p.info.get("cmdline") or []
        if p.info["pid"] == me or not cmdline:
            continue
        # Match on the program's basename: "/usr/bin/node server.js" is "node server.js".
        command = " ".join([os.path.basename(cmdline[0]), *cmdline[1:]])
        if any(r.search(command) for r in regexes):
            info = proc_info(p.info["pid"], all_listeners)
            if info is not None:
                found.append(info)
    return found


def local_addresses() -> set[str]:
    """Every address of this machine's interfaces, plus the loopback ranges' usual members."""
    addrs = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        for entries in psutil.net_if_addrs().values():
            for a in entries:
                if a.family in (socket.AF_INET, socket.AF_INET6):
                    addrs.add(a.address.split("%")[0])
    except OSError:
        pass
    return addrs


def is_local_address(address: str) -> bool:
    try:
        if ipaddress.ip_address(address.split("%")[0]).is_loopback:
            return True
    except ValueError:
        return False
    return address in local_addresses()


def describe_holder(port: int) -> str | None:
    """One line naming who listens on ``port`` (for "address already in use" messages)."""
    held = listeners(port)
    if not held:
        return None
    parts = []
    for li in held:
        info = proc_info(li.pid) if li.pid is not None else None
        if info is not None:
            parts.append(f"pid {info.pid} ({info.command}) on {li.address}:{li.port}")
        else:
            parts.append(
                f"an unknown process on {li.address}:{li.port} (owner unknown, run as root to see it)"
            )
    return "; ".join(dict.fromkeys(parts))
