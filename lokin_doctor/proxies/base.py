"""The contract every reverse-proxy reader follows (HAProxy, Apache httpd, Caddy; nginx keeps its own
check, :mod:`lokin_doctor.proxies.nginx.check`, and has an adapter in :mod:`lokin_doctor.proxies.nginx.reader`).

A reader answers four questions, each with that proxy's own rules:

* :meth:`ProxyReader.find_running`: the running instance (psutil/procfs: the process holding the target's
  port, its ``-f``/``-c``/``--config`` argument, else the packaged default path);
* :meth:`ProxyReader.load`: its configuration with every included file, each line keeping its file and line;
* :meth:`ProxyReader.route`: what serves ``host``, ``port`` and ``path`` (frontend/backend, virtual
  host/ProxyPass, site/route), as a :class:`Route`;
* :meth:`ProxyReader.findings`: what in that route breaks a WebSocket, as :class:`Finding` objects with the
  ``file:line``, the current text and the corrected text, and a cause of the registry.

The chain asks "which proxy serves this port" once: :func:`lokin_doctor.proxies.check.serving_proxy` reads
the ``port`` check's facts (``port_owners``, ``port_proxy``); the ``proxy-config`` check then runs the one
reader that applies (:func:`lokin_doctor.proxies.detect.recognise` says which for ``--proxy-config``). Pure but for :func:`running_processes`, :func:`ping_interval` and what the
readers' ``find_running``/``live`` methods do.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lokin_doctor.i18n import _

if TYPE_CHECKING:
    from lokin_doctor.causes import Cause
    from lokin_doctor.context import Context

#: What a corrected timeout is set to (the deploy/ examples' value).
FIXED_TIMEOUT_S = 3600.0

#: Proxy kinds a reader exists for, by the names :func:`lokin_doctor.checks.host.port.proxy_name` gives.
KINDS = {"nginx": "nginx", "haproxy": "haproxy", "apache2": "apache", "httpd": "apache", "caddy": "caddy"}

#: What a finding is about: how the live checks confirm or contradict it (see check.py).
UPGRADE, BACKEND, ROUTE, TIMEOUT, PATH, DENY, ORIGIN, ADVICE = (
    "upgrade",
    "backend",
    "route",
    "timeout",
    "path",
    "deny",
    "origin",
    "advice",
)


class ConfigError(Exception):
    """The configuration could not be read at all (missing file, permission, not this proxy's syntax)."""


@dataclass(frozen=True)
class Running:
    """A running proxy instance and the configuration it was started with."""

    kind: str
    pid: int
    argv: tuple[str, ...]
    config: str
    #: How the configuration was found ("haproxy pid 42 (-f)", "the packaged default").
    source: str
    cwd: str | None = None
    binary: str | None = None
    #: Proxy-specific facts (Apache's -d root and -D defines, Caddy's adapter...).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": self.pid, "argv": list(self.argv), "config": self.config}


@dataclass(frozen=True)
class Upstream:
    """Where the route sends the request."""

    host: str
    port: int
    scheme: str = "http"
    #: The line naming it (a ``server`` line, a ``ProxyPass``, a ``reverse_proxy``).
    file: str = ""
    line: int = 0
    text: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """What serves the target: the proxy's own matching, explained, and where it sends the request."""

    kind: str
    #: One line: "frontend fe (FILE:LINE) -> backend be_ws (FILE:LINE)".
    description: str
    #: Why each step was chosen, in order.
    why: tuple[str, ...]
    #: The block that serves the target (the anchor of findings about something missing).
    file: str
    line: int
    upstreams: tuple[Upstream, ...] = ()
    #: The path the backend receives (after prefix strips and rewrites); None when unknown.
    sent_path: str | None = None
    #: The proxy-specific objects the findings read (sections, directives, JSON routes...).
    detail: Any = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def evidence(self) -> dict[str, Any]:
        return {
            "route": self.description,
            "where": self.where,
            "why": list(self.why),
            "upstreams": [u.url() for u in self.upstreams],
            **({"sent_path": self.sent_path} if self.sent_path is not None else {}),
        }


@dataclass(frozen=True)
class Finding:
    """One thing in the route that breaks (or may break) a WebSocket.

    ``severity`` is what the configuration alone says: ``fail`` (breaks every connection), ``warn`` (drops
    some, or may break), ``note`` (advice: never changes the status). The ``proxy-config`` check weighs it
    against the live checks (``role`` says how). ``current`` is the text at ``file:line`` as it is;
    ``corrected`` what to put there instead (both in the proxy's own syntax, ready to paste).
    """

    code: Cause
    severity: str
    file: str
    line: int
    message: str
    current: str = ""
    corrected: str = ""
    role: str = ADVICE
    #: For a timeout: its value in seconds (weighed later against the pings and the hold seen).
    seconds: float | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "severity": self.severity,
            "where": self.where,
            "message": self.message,
            "current": self.current,
            "corrected": self.corrected,
        }


@dataclass(frozen=True)
class Facts:
    """What the caller knows of the machine and the run; each None when unknown."""

    listening_ports: frozenset[int] | None = None
    ws_ports: frozenset[int] | None = None
    #: Ports held by known processes that are neither the WebSocket server nor the proxy.
    other_ports: frozenset[int] = frozenset()
    ping_interval: float | None = None
    ping_source: str = ""
    #: ``--hold SECONDS``: how long the user means to keep a connection idle.
    hold: float | None = None
    is_local: Callable[[str], bool] | None = None
    #: The proxy's version, as numbers (2, 4, 71); None when unknown.
    version: tuple[int, ...] | None = None
    #: Proxy-specific live facts (HAProxy's stats rows, Apache's loaded modules, Caddy's admin config).
    live: Mapping[str, Any] = field(default_factory=dict)

    def local(self, host: str) -> bool:
        return (self.is_local or is_loopback)(host)


class ProxyReader(Protocol):
    """One proxy's reader (a module-level object of each ``proxies/NAME/reader.py``)."""

    #: The kind: ``haproxy``, ``apache``, ``caddy`` (``nginx`` for the adapter).
    kind: str
    #: How a person calls it ("HAProxy", "Apache httpd", "Caddy").
    title: str

    def recognise(self, path: str) -> bool:
        """Whether ``path`` reads as this proxy's configuration (``--proxy-config`` validation)."""
        ...

    def find_running(self, port_pids: set[int]) -> Running | None:
        """The running instance (the one holding ``port_pids`` first) and its configuration file."""
        ...

    def load(self, path: str, running: Running | None = None) -> Any:
        """The configuration with its includes; raise :class:`ConfigError` when it cannot be read."""
        ...

    def route(
        self, config: Any, *, host: str, port: int, path: str, address: str | None, secure: bool
    ) -> Route | None:
        """What serves the target (None: nothing of this configuration listens on ``port``)."""
        ...

    def findings(self, route: Route, facts: Facts) -> list[Finding]:
        """What in ``route`` breaks a WebSocket."""
        ...

    def version(self, running: Running | None, timeout: float) -> tuple[int, ...] | None:
        """The proxy's version (its own ``-v``/``version``), bounded by ``timeout``; None when unknown."""
        ...

    async def live(self, ctx: Context, config: Any, running: Running | None) -> dict[str, Any]:
        """What the running proxy says (stats socket, loaded modules, admin API), bounded by the run's
        deadline; a ``"config"`` key replaces the configuration read from the files (Caddy's live one)."""
        ...

    def hint_reload(self) -> str:
        """The command that checks and reloads the configuration."""
        ...


# --------------------------------------------------------------------------- which proxy, which process


def option_values(argv: Sequence[str], *flags: str) -> list[str]:
    """Every value of ``flags`` in ``argv``: ``-f X``, ``-fX``, ``--config X``, ``--config=X``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        for flag in flags:
            if word == flag and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
                break
            if flag.startswith("--") and word.startswith(flag + "="):
                out.append(word[len(flag) + 1 :])
                break
            if not flag.startswith("--") and len(flag) == 2 and word.startswith(flag) and len(word) > 2:
                out.append(word[2:])
                break
        i += 1
    return out


@dataclass(frozen=True)
class Process:
    pid: int
    argv: tuple[str, ...]
    cwd: str | None
    holds_port: bool
    ppid: int | None = None


def running_processes(match: Callable[[tuple[str, ...]], bool], port_pids: set[int]) -> list[Process]:
    """Processes whose argv ``match``es, those holding the port (or whose parent does) first.

    One read of the command lines; psutil only when one matches (no proxy running costs ~1 ms).
    """
    from lokin_doctor.instruments.sysinfo import cmdlines, parent_pid

    found = [(pid, cmd) for pid, cmd in cmdlines() if cmd and match(cmd)]
    out: list[Process] = []
    for pid, cmd in found:
        try:
            cwd: str | None = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = None
        if cwd is None:
            try:
                import psutil

                cwd = psutil.Process(pid).cwd()
            except Exception:
                cwd = None
        ppid = parent_pid(pid)
        out.append(Process(pid, tuple(cmd), cwd, pid in port_pids, ppid))
    pids = {p.pid for p in out}
    # A master whose worker holds the port holds it too (HAProxy -W, Apache's parent).
    holders = {p.pid for p in out if p.holds_port} | {p.ppid for p in out if p.holds_port and p.ppid in pids}
    out = [Process(p.pid, p.argv, p.cwd, p.pid in holders, p.ppid) for p in out]
    # Masters first (their parent is not one of them), port holders first.
    out.sort(key=lambda p: (not p.holds_port, p.ppid in pids))
    return out


def program_is(argv: Sequence[str], *names: str) -> bool:
    """Whether argv[0]'s base name is one of ``names`` (``/usr/sbin/haproxy``, ``haproxy``)."""
    return bool(argv) and os.path.basename(argv[0]) in names


def absolute(path: str, base: str | None) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base or "/", path))


# --------------------------------------------------------------------------- timeouts against what was seen


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def on_this_machine(host: str) -> bool:
    from lokin_doctor.instruments.sysinfo import is_local_address

    host = host.strip("[]")
    return host in ("localhost", "") or host.endswith(".localhost") or is_local_address(host)


def weigh_timeout(
    seconds: float, facts: Facts, *, explicit: bool, default_s: float | None = None
) -> tuple[str, str] | None:
    """The severity of an idle timeout of ``seconds`` and why, before any live check (None: fine).

    The same rules as nginx's ``proxy_read_timeout``: not longer than the server's ping interval, or pings
    off, is a warning; a ``--hold`` at least as long is a warning (the hold will see the cut); unknown pings
    with an explicit timeout shorter than the proxy's default is a note saying what would tell.
    """
    if facts.ping_interval is not None and facts.ping_interval > 0:
        if seconds <= facts.ping_interval:
            return "warn", _(
                "not longer than the server's ping interval ({ping_interval:g} s{source})"
            ).format(
                ping_interval=facts.ping_interval,
                source=", " + facts.ping_source if facts.ping_source else "",
            )
        if facts.hold is not None and facts.hold >= seconds:
            return "warn", _("--hold {hold:g} keeps a connection idle longer than that").format(
                hold=facts.hold
            )
        return None
    if facts.ping_interval == 0:
        return "warn", _("the server sends no keepalive pings")
    if facts.hold is not None and facts.hold >= seconds:
        return "warn", _("--hold {hold:g} keeps a connection idle longer than that").format(hold=facts.hold)
    if explicit and (default_s is None or seconds < default_s):
        return "note", _(
            "whether the server keeps it busy within that time (pings or messages) was not observed: --hold {hold:g} would tell"
        ).format(hold=seconds + 5)
    return None


def timeout_seen(ctx: Context, seconds: float, severity: str) -> tuple[str, str]:
    """A proxy timeout weighed against what the session/hold saw the server do: pings more often than
    the timeout keep the connection busy (nothing to fix); a hold longer than it that survived proves it."""
    seen = ctx.facts.get("server_ping_interval_s")
    held = ctx.facts.get("hold_observed") or {}
    if held.get("survived") and held.get("held_s", 0) > seconds:
        return "note", _("the idle hold stayed open {held:g} s, longer than {seconds:g} s").format(
            held=held["held_s"], seconds=seconds
        )
    if isinstance(seen, (int, float)) and seen > 0:
        if seen < seconds:
            return "note", _(
                "the server was seen pinging every ~{seen:g} s, which keeps the connection busy"
            ).format(seen=seen)
        return "warn", _("the server was seen pinging every ~{seen:g} s, not within {seconds:g} s").format(
            seen=seen, seconds=seconds
        )
    if held and held.get("pings", 0) == 0 and held.get("held_s", 0) > seconds:
        return "warn", _("no server ping in {held:g} s of idle hold").format(held=held["held_s"])
    return severity, ""


async def ping_interval(ctx: Context, upstreams: Iterable[Any]) -> tuple[float | None, str]:
    """The backend's keepalive ping interval from serve's /health (0: pings disabled; None: unknown).

    ``upstreams`` are objects with ``host`` and ``port``; only the first is asked, within one second.
    """
    import asyncio
    import json

    from lokin_doctor.instruments.httpget import FetchError, get

    for up in list(upstreams)[:1]:
        host = f"[{up.host}]" if ":" in up.host else up.host
        url = f"http://{host}:{up.port}/health"
        try:
            async with asyncio.timeout(min(1.0, ctx.remaining())):
                page = await get(url, deadline=ctx.deadline)
            data = json.loads(page.body.decode("utf-8", "replace"))
        except (FetchError, OSError, TimeoutError, ValueError):
            continue
        if (
            isinstance(data, dict)
            and isinstance(data.get("limits"), dict)
            and "ping_interval_s" in data["limits"]
        ):
            value = data["limits"]["ping_interval_s"]
            return (float(value) if value else 0.0), f"from {url}"
    return None, ""


def host_header(host: str, port: int, secure: bool) -> str:
    """The Host header a browser sends for the URL (the port only when it is not the scheme's default)."""
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    default = 443 if secure else 80
    return name if port == default else f"{name}:{port}"


def parse_version(text: str) -> tuple[int, ...] | None:
    """``Apache/2.4.71``, ``v2.6.2 h1:...``, ``HAProxy version 2.6.12-1`` -> (2, 4, 71)..."""
    import re

    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return tuple(int(g) for g in m.groups() if g is not None)


def run_quiet(
    argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
) -> tuple[int, str, str] | None:
    """Run a proxy's own tool (``apache2 -M``, ``caddy version``), bounded; None when it cannot run."""
    import subprocess

    try:
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=max(0.2, timeout),
            check=False,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.returncode, out.stdout, out.stderr
