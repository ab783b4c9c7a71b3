"""The engine of ``lokin-doctor monitor``: what the write-up watched with ``netstat -an | grep :8080 | grep
ESTABLISHED``, ``lsof -i :8080`` and ``pm2 monit``, in one snapshot.

A snapshot is one ``psutil.net_connections`` pass (listening sockets and connections on the port), the
server process(es) holding the port (pid, uptime, RSS, CPU, open files, threads) and, when the server
answers HTTP on loopback, its ``/health`` document (a ``lokin-doctor serve`` has one; Node ``ws`` answers
426). Blocking calls only: the command runs them in its own thread, no event loop.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psutil

from lokin_doctor.i18n import N_, _, ngettext
from lokin_doctor.instruments.sysinfo import hex_ip

#: Sentences kept in the JSON document in English (scripts read it) and translated when drawn.
NOTE_OWNER_HIDDEN = N_(
    "the owner of the port is not visible to this user: run as root to see the server process"
)
HEALTH_NOT_JSON = N_("not JSON")
HEALTH_NOT_OURS = N_("{status_line}: no /health (not a lokin-doctor server?)")

#: Seconds the /health request may take (the server is local; a slow answer is itself news).
HEALTH_TIMEOUT_S = 0.5
TOP_REMOTES = 5


def _norm(ip: str) -> str:
    """``::ffff:127.0.0.1`` -> ``127.0.0.1``."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


#: /proc/net/tcp state codes (include/net/tcp_states.h), named as psutil names them.
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _hex_ip(text: str) -> str:
    """/proc/net/tcp address -> textual IP, IPv4-mapped addresses shown as IPv4."""
    return _norm(hex_ip(text))


def _proc_net_tcp(
    port: int,
) -> tuple[list[dict[str, Any]], list[tuple[str, int]], Counter[str]] | None:
    """The port's sockets from /proc/net/tcp and tcp6: (listeners with inode, established remotes, states)."""
    needle = f":{port:04X} "
    listeners: list[dict[str, Any]] = []
    established: list[tuple[str, int]] = []
    states: Counter[str] = Counter()
    found_any_file = False
    for path, family in (("/proc/net/tcp", "ipv4"), ("/proc/net/tcp6", "ipv6")):
        try:
            f = open(path)  # noqa: SIM115 - closed below
        except OSError:
            continue
        found_any_file = True
        with f:
            next(f, None)
            for line in f:
                if needle not in line:
                    continue
                fields = line.split()
                local, remote, st = fields[1], fields[2], fields[3]
                if not local.endswith(needle[:-1]):
                    continue  # the port matched on the remote side
                state = _TCP_STATES.get(st, st)
                if state == "LISTEN":
                    listeners.append(
                        {"address": _hex_ip(local[:-5]), "port": port, "family": family, "inode": fields[9]}
                    )
                elif state == "ESTABLISHED":
                    rip, _sep, rport = remote.rpartition(":")
                    established.append((_hex_ip(rip), int(rport, 16)))
                else:
                    states[state] += 1
    return (listeners, established, states) if found_any_file else None


class Monitor:
    """Keeps psutil.Process objects between snapshots so CPU % is measured over the refresh interval."""

    def __init__(self, port: int, *, health: bool = True, health_path: str = "/health") -> None:
        self.port = port
        self.health = health
        self.health_path = health_path
        self._procs: dict[int, psutil.Process] = {}
        self._inode_pid: dict[str, int | None] = {}

    def _process(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is None or not proc.is_running():
            try:
                proc = psutil.Process(pid)
                proc.cpu_percent(None)  # starts the measurement interval
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            self._procs[pid] = proc
        return proc

    def prime(self, pids: list[int]) -> None:
        for pid in pids:
            self._process(pid)

    def _proc_info(self, pid: int) -> dict[str, Any] | None:
        proc = self._process(pid)
        if proc is None:
            return None
        info: dict[str, Any] = {"pid": pid}
        try:
            with proc.oneshot():
                info["name"] = proc.name()
                try:
                    info["cmdline"] = " ".join(proc.cmdline()) or info["name"]
                except (psutil.AccessDenied, psutil.ZombieProcess):
                    info["cmdline"] = info["name"]
                created = proc.create_time()
                info["uptime_s"] = round(max(0.0, time.time() - created), 1)
                info["started"] = datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")
                for key, getter in (
                    ("rss_bytes", lambda: proc.memory_info().rss),
                    ("cpu_percent", lambda: round(proc.cpu_percent(None), 1)),
                    ("num_fds", proc.num_fds if hasattr(proc, "num_fds") else lambda: None),
                    ("num_threads", proc.num_threads),
                    ("user", proc.username),
                ):
                    try:
                        info[key] = getter()
                    except (psutil.AccessDenied, KeyError):
                        info[key] = None
                try:
                    times = proc.cpu_times()
                    elapsed = max(time.time() - created, 1e-3)
                    info["cpu_percent_avg"] = round(100.0 * (times.user + times.system) / elapsed, 1)
                except psutil.AccessDenied:
                    info["cpu_percent_avg"] = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None
        return info

    def sockets(self) -> tuple[list[dict[str, Any]], list[tuple[str, int, int | None]], Counter[str]]:
        """(listeners on the port, established (remote ip, remote port, pid), other states count).

        On Linux /proc/net/tcp{,6} is read directly, keeping only the port's lines: psutil.net_connections
        maps every socket of the machine to its process by reading every /proc/PID/fd, which took 350 ms
        per refresh with a 10,000-client server on the box. psutil is still asked, once, for the pid of
        a listening socket not seen before.
        """
        parsed = _proc_net_tcp(self.port)
        if parsed is None:
            return self._sockets_psutil()
        listeners, established, states = parsed
        unknown = [li for li in listeners if li["inode"] not in self._inode_pid]
        if unknown:
            # Owner by inode: several processes listen on the same address with SO_REUSEPORT
            # (serve --workers), so (address, family) does not name one pid.
            from lokin_doctor.instruments.sysinfo import _inode_owners

            owners = _inode_owners({li["inode"] for li in unknown})
            by_key: dict[tuple[str, str], int | None] = {}
            if len(owners) < len(unknown):
                found, _est, _states = self._sockets_psutil()
                by_key = {(li["address"], li["family"]): li["pid"] for li in found}
            for li in unknown:
                pid = owners.get(li["inode"])
                self._inode_pid[li["inode"]] = (
                    pid if pid is not None else by_key.get((li["address"], li["family"]))
                )
        out = []
        for li in listeners:
            pid = self._inode_pid.get(li.pop("inode"))
            out.append({**li, "pid": pid})
        return out, [(ip, rport, None) for ip, rport in established], states

    def _sockets_psutil(self) -> tuple[list[dict[str, Any]], list[tuple[str, int, int | None]], Counter[str]]:
        try:
            conns = psutil.net_connections(kind="tcp")
        except (psutil.AccessDenied, PermissionError):
            conns = []
        listeners: list[dict[str, Any]] = []
        seen = set()
        established: list[tuple[str, int, int | None]] = []
        states: Counter[str] = Counter()
        port = self.port
        for c in conns:
            if not c.laddr or c.laddr.port != port:
                continue
            if c.status == psutil.CONN_LISTEN:
                family = "ipv6" if c.family == socket.AF_INET6 else "ipv4"
                key = (c.laddr.ip, c.pid, family)
                if key not in seen:
                    seen.add(key)
                    listeners.append({"address": c.laddr.ip, "port": port, "pid": c.pid, "family": family})
            elif c.status == psutil.CONN_ESTABLISHED and c.raddr:
                established.append((_norm(c.raddr.ip), c.raddr.port, c.pid))
            else:
                states[c.status] += 1
        return listeners, established, states

    def _health(self, listeners: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not self.health or not listeners:
            return None
        addresses = [li["address"] for li in listeners]
        if any(a in ("0.0.0.0", "127.0.0.1", "") for a in addresses):
            host = "127.0.0.1"
        elif any(a in ("::", "::1") for a in addresses):
            host = "::1"
        else:
            host = addresses[0]
        url_host = f"[{host}]" if ":" in host else host
        url = f"http://{url_host}:{self.port}{self.health_path}"
        doc: dict[str, Any] = {"url": url}
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(host, self.port, timeout=HEALTH_TIMEOUT_S)
        try:
            conn.request("GET", self.health_path, headers={"User-Agent": "lokin-doctor monitor"})
            resp = conn.getresponse()
            body = resp.read(65536)
            doc["status"] = resp.status
            doc["ms"] = round((time.perf_counter() - t0) * 1000, 2)
            ctype = resp.getheader("content-type") or ""
            if resp.status == 200 and "json" in ctype:
                try:
                    doc["body"] = json.loads(body)
                except ValueError:
                    doc["error"] = HEALTH_NOT_JSON
            else:
                doc["error"] = HEALTH_NOT_OURS.format(status_line=f"HTTP {resp.status} {resp.reason}")
        except (OSError, http.client.HTTPException) as exc:
            doc["error"] = str(exc) or type(exc).__name__
        finally:
            conn.close()
        return doc

    def snapshot(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        listeners, established, states = self.sockets()
        pids = sorted({li["pid"] for li in listeners if li["pid"] is not None})
        processes = [p for p in (self._proc_info(pid) for pid in pids) if p is not None]
        note = None
        if listeners and not pids:
            note = NOTE_OWNER_HIDDEN
            from lokin_doctor.instruments.sysinfo import DEFAULT_PROCESS_PATTERNS, find_processes

            for cand in find_processes(DEFAULT_PROCESS_PATTERNS):
                info = self._proc_info(cand.pid)
                if info is not None:
                    info["matched_by"] = "command line"
                    processes.append(info)
        remotes = Counter(ip for ip, _, _ in established)
        health = self._health(listeners)
        cluster = cluster_view(health)
        if cluster is not None:  # serve --workers: each process's connections, as its worker reports them
            per_pid = {w["pid"]: w["connections"] for w in cluster["workers"]}
            for info in processes:
                info["connections"] = per_pid.get(info["pid"])
        doc = {
            "port": self.port,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "listening": bool(listeners),
            "listeners": listeners,
            "processes": processes,
            "server": processes[0] if processes else None,
            "established": {
                "count": len(established),
                "remote_addresses": len(remotes),
                "top_remotes": [{"address": a, "count": n} for a, n in remotes.most_common(TOP_REMOTES)],
                "other_states": dict(states.most_common()),
            },
            "health": health,
            "cluster": cluster,
            "note": note,
        }
        doc["snapshot_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return doc


def cluster_view(health: dict[str, Any] | None) -> dict[str, Any] | None:
    """The workers of a ``serve --workers`` set and the Redis broker state, from its /health; None if neither."""
    body = (health or {}).get("body")
    if not isinstance(body, dict) or not ("workers" in body or "broker" in body):
        return None
    broker = body.get("broker") if isinstance(body.get("broker"), dict) else None
    workers = [w for w in body.get("workers") or [] if isinstance(w, dict)]
    return {
        "status": body.get("status"),
        "reason": body.get("reason"),
        "parent_pid": body.get("pid") if workers else None,
        "instance": body.get("instance"),
        "answered_by": body.get("answered_by"),
        "workers_wanted": body.get("workers_wanted"),
        "worker_restarts": body.get("worker_restarts"),
        "workers": [
            {
                k: w.get(k)
                for k in ("index", "pid", "instance", "connections", "handshaking", "broker", "status")
            }
            for w in workers
        ],
        "broker": None
        if broker is None
        else {
            k: broker.get(k)
            for k in ("state", "reason", "url", "published", "received", "dropped", "failures")
        },
    }


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


#: Columns of the process table: (header, justify). The command column takes what the others leave.
#: Headers are translated when drawn (pid, RSS, CPU%, fds, thr are the same in every language).
PROCESS_COLUMNS = (
    ("pid", "right"),
    (N_("command"), "left"),
    (N_("uptime"), "right"),
    ("RSS", "right"),
    ("CPU%", "right"),
    (N_("avg%"), "right"),
    ("fds", "right"),
    ("thr", "right"),
    (N_("conns"), "right"),
)
#: Index of the command column in PROCESS_COLUMNS.
COMMAND_COLUMN = 1


def short_command(cmdline: str) -> str:
    """The command line with the program's directory dropped: ``python -m lokin_doctor serve``."""
    program, sep, rest = cmdline.partition(" ")
    return program.rpartition("/")[2] + sep + rest


class _ProcessTable:
    """The process table, laid out for the width it is drawn at (a rich renderable)."""

    def __init__(self, processes: list[dict[str, Any]]) -> None:
        self.processes = processes

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield process_table(self.processes, options.max_width)


def process_table(processes: list[dict[str, Any]], width: int = 80) -> Any:
    """The server-process table within ``width`` columns: every figure whole, only the command shortened."""
    from rich import box  # noqa: TID251 - monitor is a live view
    from rich.table import Table  # noqa: TID251

    rows = [
        (
            str(p["pid"]),
            short_command(p.get("cmdline", "")),
            _duration(p.get("uptime_s")),
            _bytes(p.get("rss_bytes")),
            "?" if p.get("cpu_percent") is None else f"{p['cpu_percent']:.1f}",
            "?" if p.get("cpu_percent_avg") is None else f"{p['cpu_percent_avg']:.1f}",
            "?" if p.get("num_fds") is None else str(p["num_fds"]),
            "?" if p.get("num_threads") is None else str(p["num_threads"]),
            "-" if p.get("connections") is None else str(p["connections"]),
        )
        for p in processes
    ]
    headers = [_(header) for header, _justify in PROCESS_COLUMNS]
    widths = [max([len(header), *(len(r[i]) for r in rows)]) for i, header in enumerate(headers)]
    # Two spaces between columns (the box's blank divider and the right padding); the command gets the
    # rest, at least its header.
    others = sum(w for i, w in enumerate(widths) if i != COMMAND_COLUMN)
    gaps = 2 * (len(PROCESS_COLUMNS) - 1)
    command_width = max(len(headers[COMMAND_COLUMN]), min(widths[COMMAND_COLUMN], width - others - gaps))
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for i, (header, (_header, justify), w) in enumerate(zip(headers, PROCESS_COLUMNS, widths, strict=True)):
        if i == COMMAND_COLUMN:
            table.add_column(header, overflow="ellipsis", no_wrap=True, width=command_width)
        else:
            table.add_column(header, justify=justify, no_wrap=True, width=w)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(*r)
    return table


def render(doc: dict[str, Any]) -> Any:
    """A rich renderable for one snapshot (used by the live view and by --once)."""
    from rich import box  # noqa: TID251 - monitor is a live view
    from rich.console import Group  # noqa: TID251
    from rich.table import Table  # noqa: TID251
    from rich.text import Text  # noqa: TID251

    port = doc["port"]
    parts: list[Any] = []
    head = Text(
        _("lokin-doctor monitor  port {port}  {time} UTC").format(port=port, time=doc["time"][11:19]),
        style="bold",
    )
    parts.append(head)
    if not doc["listening"]:
        parts.append(
            Text(
                _("nothing listens on port {port}: the server is not running (tcp.refused)").format(
                    port=port
                ),
                style="red",
            )
        )
    procs = _ProcessTable(doc["processes"])
    if doc["processes"]:
        parts += [Text(_("server process"), style="bold"), procs]
    if doc.get("note"):
        parts.append(Text(_(doc["note"]), style="yellow"))
    est = doc["established"]
    # Titles are lines of their own: a table title wraps to the table's width, often narrower.
    parts.append(
        Text(
            _("ESTABLISHED connections to :{port}: {count}").format(port=port, count=est["count"]),
            style="bold",
        )
    )
    conns = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    conns.add_column(_("remote address"))
    conns.add_column(_("connections"), justify="right")
    for r in est["top_remotes"]:
        conns.add_row(r["address"], str(r["count"]))
    if est["remote_addresses"] > len(est["top_remotes"]):
        more = est["remote_addresses"] - len(est["top_remotes"])
        # English says "addresses" for any count (as it always did); French needs its plural.
        conns.add_row(ngettext("... {n} more addresses", "... {n} more addresses", more).format(n=more), "")
    parts.append(conns)
    if est["other_states"]:
        parts.append(
            Text(_("other states: ") + ", ".join(f"{k} {v}" for k, v in est["other_states"].items()))
        )
    lis = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in (N_("address"), N_("family"), "pid"):
        lis.add_column(_(col))
    for li in doc["listeners"]:
        addr = f"[{li['address']}]:{port}" if ":" in li["address"] else f"{li['address']}:{port}"
        lis.add_row(addr, li["family"], "?" if li["pid"] is None else str(li["pid"]))
    if doc["listeners"]:
        parts += [Text(_("listening sockets"), style="bold"), lis]
    cluster = doc.get("cluster")
    if cluster is not None:
        parts.extend(_render_cluster(cluster, Table, Text))
    health = doc.get("health")
    if health is not None:
        if "body" in health:
            body = health["body"]
            text = ", ".join(f"{k}: {v}" for k, v in body.items() if not isinstance(v, (dict, list)))
            parts.append(
                Text(_("/health ({ms:.1f} ms): {text}").format(ms=health["ms"], text=text), style="green")
            )
        else:
            parts.append(Text(_("/health: {error}").format(error=_health_error(health)), style="dim"))
    return Group(*parts)


def _health_error(health: dict[str, Any]) -> str:
    """The /health error of the JSON document (English), in the chosen language."""
    error = str(health.get("error"))
    if error == HEALTH_NOT_JSON:
        return _(HEALTH_NOT_JSON)
    tail = HEALTH_NOT_OURS.partition("}")[2]
    if error.startswith("HTTP ") and error.endswith(tail):
        return _(HEALTH_NOT_OURS).format(status_line=error[: -len(tail)])
    return error  # the system's own text (connection refused, timed out...)


def _render_cluster(cluster: dict[str, Any], table_cls: Any, text_cls: Any) -> list[Any]:
    out: list[Any] = []
    workers = cluster["workers"]
    if workers:
        restarts = cluster["worker_restarts"] or 0
        # English keeps its "restart(s)" for any count; French needs its plural.
        title = ngettext(
            "workers (parent pid {parent_pid}): {n} of {wanted} reporting, {restarts} restart(s)",
            "workers (parent pid {parent_pid}): {n} of {wanted} reporting, {restarts} restart(s)",
            restarts,
        ).format(
            parent_pid=cluster["parent_pid"],
            n=len(workers),
            wanted=cluster["workers_wanted"],
            restarts=restarts,
        )
        table = table_cls(title=title, title_justify="left")
        for col in (
            N_("worker"),
            "pid",
            N_("instance"),
            N_("connections"),
            N_("handshaking"),
            "Redis",
            N_("status"),
        ):
            table.add_column(_(col), justify="right" if col in ("connections", "handshaking") else "left")
        for w in workers:
            table.add_row(
                str(w["index"]),
                str(w["pid"]),
                str(w["instance"]),
                str(w["connections"]),
                str(w["handshaking"]),
                str(w["broker"] or "-"),
                str(w["status"]),
            )
        out.append(table)
    broker = cluster["broker"]
    if broker is not None:
        if broker["state"] == "up":
            line = _("Redis broker: up ({url}), published {published}, received {received}").format(
                url=broker["url"], published=broker["published"], received=broker["received"]
            )
            out.append(text_cls(line, style="green"))
        else:
            line = _("Redis broker: {state}: {reason} ({url}); broadcasts stay local").format(
                state=broker["state"], reason=broker["reason"], url=broker["url"]
            )
            out.append(text_cls(line, style="red"))
    if cluster["status"] not in ("ok", None):
        out.append(
            text_cls(
                _("status {status}: {reason}").format(status=cluster["status"], reason=cluster["reason"]),
                style="yellow",
            )
        )
    return out
