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
from dataclasses import dataclass, field, replace
from typing import Any

# psutil is imported inside the functions that use it (~20 ms of start-up a remote target never needs).

#: Command lines that look like a LOK IN WebSocket server (default for ``--process``).
DEFAULT_PROCESS_PATTERNS = (r"\bnode(js)?\b.*\bserver\.js\b", r"lokin[-_]doctor\b.*(\bserve\b|--embedded)")


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket."""

    address: str
    port: int
    pid: int | None
    family: str  # "ipv4" or "ipv6"
    #: The socket's inode (Linux /proc), to find its owner later; not part of its identity.
    inode: str = field(default="", compare=False)

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
    #: Its ancestors' pids, parent first (filled in by :func:`find_processes`; not in ``to_dict``).
    ancestors: tuple[int, ...] = field(default=(), compare=False)

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


def _diag_listeners(port: int | None) -> list[tuple[str, int, str, str]] | None:
    """LISTEN sockets from the kernel's sock_diag netlink interface (what ``ss -lt`` uses); None if absent.

    The kernel filters on the LISTEN state itself: /proc/net/tcp lists every socket of the machine and
    costs ~40 ms to generate and parse with 7,000 connections open, a busy server's case; this ~1 ms.
    """
    import struct

    netlink_inet_diag, sock_diag_by_family, nlmsg_done, nlmsg_error = 4, 20, 3, 2
    tcp_listen = 10
    found: list[tuple[str, int, str, str]] = []
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink_inet_diag)
    except (OSError, AttributeError):
        return None
    with sock:
        sock.settimeout(1.0)
        for seq, (family, label) in enumerate(((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")), 1):
            request = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << tcp_listen)
            header = struct.pack("=IHHII", 16 + len(request), sock_diag_by_family, 0x301, seq, 0)
            try:
                sock.send(header + request)
                done = False
                while not done:
                    data = sock.recv(1 << 16)
                    if not data:
                        return None
                    offset = 0
                    while offset + 16 <= len(data):
                        length, kind = struct.unpack_from("=IH", data, offset)
                        if length < 16:
                            return None
                        if kind == nlmsg_done:
                            done = True
                            break
                        if kind == nlmsg_error:
                            return None
                        if kind == sock_diag_by_family and length >= 16 + 72:
                            body = offset + 16
                            lport = struct.unpack_from(">H", data, body + 4)[0]
                            raw = data[body + 8 : body + 24]
                            inode = struct.unpack_from("=I", data, body + 68)[0]
                            if port is None or lport == port:
                                address = (
                                    str(ipaddress.IPv4Address(raw[:4]))
                                    if family == socket.AF_INET
                                    else str(ipaddress.IPv6Address(raw))
                                )
                                found.append((address, lport, label, str(inode)))
                        offset += (length + 3) & ~3
            except (OSError, struct.error):
                return None
    return found


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


#: fds of each process read in the first pass of :func:`_inode_owners`.
FIRST_FDS = 32


def _inode_owners(inodes: set[str], pids: list[int] | None = None) -> dict[str, int]:
    """Which pid holds each socket inode, stopping as soon as all are found (unreadable fds are skipped).

    Every fd of every process is read (``pids``: only these): on a busy machine, tens of thousands.
    """
    wanted = {f"socket:[{i}]": i for i in inodes if i != "0"}
    owners: dict[str, int] = {}
    if not wanted:
        return owners
    if pids is None:
        try:
            pids = sorted((int(d) for d in os.listdir("/proc") if d.isdigit()), reverse=True)
        except OSError:
            return owners
    # A listening socket is opened at start-up: it is nearly always one of a process's first fds. So fds
    # 0..FIRST_FDS-1 of every process are read first, by number (no directory listing: a server holding
    # 10,000 client sockets has a 10,000-entry fd directory), and the rest only if an owner is still
    # missing: the scan usually stops long before reading them all.
    readable: list[int] = []
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        gone = False
        for fd in range(FIRST_FDS):
            try:
                link = os.readlink(f"{fd_dir}/{fd}")
            except FileNotFoundError:
                if fd == 0 and not os.path.isdir(fd_dir):
                    gone = True  # the process ended
                    break
                continue
            except OSError:
                gone = True  # another user's process without root: owner unknown
                break
            inode = wanted.pop(link, None)
            if inode is not None:
                owners[inode] = pid
                if not wanted:
                    return owners
        if not gone:
            readable.append(pid)
    for pid in readable:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for name in fds:
            if name.isdigit() and int(name) < FIRST_FDS:
                continue  # read in the first pass
            try:
                link = os.readlink(f"{fd_dir}/{name}")
            except OSError:
                continue
            inode = wanted.pop(link, None)
            if inode is not None:
                owners[inode] = pid
                if not wanted:
                    return owners
    return owners


def listeners(port: int | None = None, *, owners_on: int | None = None) -> list[Listener]:
    """Every listening TCP socket (on ``port`` if given). Never raises for permission problems.

    ``owners_on``: find the owning pid of the sockets on this port only (the others get ``pid`` None,
    see :func:`listening_ports` for a given process): the fd scan then stops once they are found.
    """
    fast = _diag_listeners(port)
    if fast is None:
        fast = _proc_listeners(port)
    if fast is not None:
        wanted = {inode for _a, p, _f, inode in fast if owners_on is None or p == owners_on}
        owners = _inode_owners(wanted)
        unique = dict.fromkeys(Listener(a, p, owners.get(inode), fam, inode) for a, p, fam, inode in fast)
        return list(unique)
    import psutil

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


# -- Linux: processes read from /proc directly ----------------------------------------------------------
# psutil costs ~20 ms to import and walks the same files; the checklist's verdict waits on these scans,
# so on Linux they read /proc themselves (same fields, same rules as psutil), elsewhere psutil does it.

_PROC = os.path.isfile("/proc/self/stat")
_boot_time: float | None = None


def _proc_boot_time() -> float:
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat") as f:
            _boot_time = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    return _boot_time


def _proc_cmdline(pid: int) -> tuple[str, ...]:
    """argv of ``pid`` (psutil's rules: NUL-separated, or spaces when a process rewrote its title)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().decode(errors="surrogateescape")
    except PermissionError:
        return ()
    if text.endswith("\0"):
        text = text[:-1]
    parts = text.split("\0")
    if len(parts) == 1 and " " in parts[0]:
        parts = parts[0].split(" ")
    return tuple(parts) if parts != [""] else ()


def _proc_info_linux(pid: int, all_listeners: list[Listener] | None) -> ProcInfo | None:
    import pwd

    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        cmdline = _proc_cmdline(pid)
        with open(f"/proc/{pid}/status") as f:
            uid = next((int(line.split()[1]) for line in f if line.startswith("Uid:")), None)
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss: int | None = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except PermissionError:
            rss = None
    except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration, ValueError, IndexError):
        return None  # gone, or hidden (hidepid)
    name, _, rest = stat.partition(" (")[2].rpartition(") ")
    fields = rest.split()
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        create_time = _proc_boot_time() + int(fields[19]) / ticks
        cpu_s = (int(fields[11]) + int(fields[12])) / ticks
    except (IndexError, ValueError, OSError, StopIteration):
        return None
    if len(name) >= 15 and cmdline:  # the kernel cuts comm at 15 bytes: psutil takes argv[0] then
        full = os.path.basename(cmdline[0])
        if full.startswith(name):
            name = full
    username: str | None = None
    if uid is not None:
        try:
            username = pwd.getpwuid(uid).pw_name
        except KeyError:
            username = str(uid)
    elapsed = max(time.time() - create_time, 1e-3)
    cpu = round(100.0 * cpu_s / elapsed, 1)
    ports = tuple(sorted(listening_ports(pid, all_listeners or [])))
    return ProcInfo(pid, name, cmdline, username, create_time, rss, cpu, ports)


def listening_ports(pid: int, all_listeners: list[Listener]) -> set[int]:
    """The ports ``pid`` listens on: from the listeners' known owners, else from the process's own fds."""
    ports = {li.port for li in all_listeners if li.pid == pid}
    unknown = {li.inode: li for li in all_listeners if li.pid is None and li.inode}
    if unknown:
        owned = _inode_owners(set(unknown), [pid])
        ports |= {unknown[inode].port for inode in owned}
    return ports


def _proc_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def proc_info(pid: int, all_listeners: list[Listener] | None = None) -> ProcInfo | None:
    """Snapshot a process, or None when it is gone."""
    if _PROC:
        return _proc_info_linux(pid, all_listeners)
    import psutil

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


#: Longest ancestry walked (a loop in a racing /proc read must not hang the scan).
MAX_DEPTH = 64


def parent_pid(pid: int) -> int | None:
    """``pid``'s parent, or None when it is gone or unreadable."""
    if _PROC:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            return int(stat.rpartition(") ")[2].split()[1])
        except (OSError, ValueError, IndexError):
            return None
    import psutil

    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None


def ancestry(pid: int) -> tuple[int, ...]:
    """``pid``'s ancestors, parent first, up to PID 1 (a few /proc reads: no scan of the machine)."""
    chain: list[int] = []
    current: int | None = pid
    for _i in range(MAX_DEPTH):
        current = parent_pid(current) if current is not None else None
        if current is None or current <= 0 or current in chain or current == pid:
            break
        chain.append(current)
    return tuple(chain)


def related(a: ProcInfo, b_pid: int, b_ancestors: tuple[int, ...]) -> bool:
    """One is the other's ancestor: a wrapper (``sh -c``, ``npm start``, nodemon, a cluster master) and the
    server it runs are one instance, not two."""
    return a.pid in b_ancestors or b_pid in a.ancestors


def find_processes(
    patterns: tuple[str, ...] | list[str], all_listeners: list[Listener] | None = None
) -> list[ProcInfo]:
    """Processes whose command line matches one of the regular expressions.

    Never this process nor its ancestors (``timeout``, ``time``, ``sh -c``, ``npm run``, ``make``, a CI
    runner... whose command line holds the doctor's own): they are the doctor. Its descendants are kept: the
    doctor starts no server process (``--embedded`` serves in-process), so a matching child is a real server
    (a test runner's fixture, a shell's job).
    """
    regexes = [re.compile(p) for p in patterns]
    me = os.getpid()
    mine = set(ancestry(me))
    if all_listeners is None:
        all_listeners = listeners()
    found = []
    for pid, cmdline in _cmdlines():
        if pid == me or pid in mine or not cmdline:
            continue
        # Match on the program's basename: "/usr/bin/node server.js" is "node server.js".
        command = " ".join([os.path.basename(cmdline[0]), *cmdline[1:]])
        if any(r.search(command) for r in regexes):
            info = proc_info(pid, all_listeners)
            if info is None:
                continue
            up = ancestry(pid)
            found.append(replace(info, ancestors=up))
    return found


def _cmdlines() -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process this user can see."""
    if _PROC:
        found = []
        for pid in _proc_pids():
            try:
                found.append((pid, _proc_cmdline(pid)))
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended meanwhile
        return found
    import psutil

    return [
        (p.info["pid"], tuple(p.info.get("cmdline") or ())) for p in psutil.process_iter(["pid", "cmdline"])
    ]


def proc_environ(pid: int, limit: int = 1 << 20) -> dict[str, str]:
    """A process's environment from ``/proc/PID/environ`` (the first ``limit`` bytes); empty when it cannot
    be read (another user's process without privileges, a process gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read(limit)
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            out[key] = value
    return out


def proc_cmdline(pid: int) -> tuple[str, ...]:
    """argv of ``pid`` from /proc (Linux), psutil's rules."""
    return _proc_cmdline(pid)


def cmdlines() -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process this user can see (one read of /proc on Linux)."""
    return _cmdlines()


def local_addresses() -> set[str]:
    """Every address of this machine's interfaces, plus the loopback ranges' usual members."""
    import psutil

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
