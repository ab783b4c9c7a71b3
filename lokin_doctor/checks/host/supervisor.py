"""``supervisor``: would anything restart the WebSocket server after a crash or a reboot?

The server process is the one the ``process``/``port`` checks found (the ``--process`` match listening,
else the port's owner). Its ancestors, read with psutil up to PID 1, are the evidence; the first of
these explains it:

* a systemd unit (``/proc/PID/cgroup``), with ``Restart=`` from ``systemctl show`` where systemctl works;
* pm2 (a ``PM2 ... God Daemon`` ancestor), with ``autorestart`` and the restart count from ``pm2 jlist``;
* supervisord, with ``autorestart`` from its ``-c`` file's ``[program:x]`` section;
* nodemon: it restarts on file changes, not after a crash (``supervisor.nodemon``);
* a shell with a terminal: started by hand (``supervisor.terminal``);
* a container whose init is the server's parent: the runtime's restart policy (not visible inside);
* else nothing (``supervisor.none``).

The hint is the systemd unit of ``deploy/lokin-ws.service`` with the server's own command line.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from lokin_doctor.causes.host import (
    SUPERVISOR_NO_RESTART,
    SUPERVISOR_NODEMON,
    SUPERVISOR_NONE,
    SUPERVISOR_TERMINAL,
)
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.model import CheckResult, Status, noted, ok, skip, warn

SHELLS = {"bash", "sh", "dash", "zsh", "fish", "ksh", "tcsh", "csh", "ash"}
MULTIPLEXERS = {"tmux", "screen", "tmux: server"}
CONTAINER_INITS = {"tini", "docker-init", "dumb-init", "catatonit", "s6-svscan", "runsvdir"}


@dataclass(frozen=True)
class Ancestor:
    pid: int
    name: str
    cmdline: tuple[str, ...]
    terminal: str | None

    @property
    def command(self) -> str:
        return " ".join(self.cmdline) or self.name

    def to_dict(self) -> dict[str, Any]:
        cmd = self.command
        return {
            "pid": self.pid,
            "name": self.name,
            "cmdline": cmd if len(cmd) <= 200 else cmd[:199] + "…",
            "tty": self.terminal,
        }


def _tty_name(tty_nr: int) -> str | None:
    """/proc's tty_nr as a device path (psutil's mapping for the terminals a person uses)."""
    if tty_nr == 0:
        return None
    major, minor = (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"/dev/pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"/dev/tty{minor}" if minor < 64 else f"/dev/ttyS{minor - 64}"
    if major == 5 and minor == 0:
        return "/dev/tty"
    return None  # an unusual terminal: psutil names it


def _proc_ancestors(pid: int) -> list[Ancestor] | None:
    """The chain read from /proc directly (a few files per ancestor; psutil costs ~15 ms to import).
    None when a terminal is one this mapping does not know (psutil then reads it)."""
    from lokin_doctor.instruments.sysinfo import proc_cmdline

    out: list[Ancestor] = []
    current = pid
    while current > 0 and len(out) < 64 and all(a.pid != current for a in out):
        try:
            with open(f"/proc/{current}/stat") as f:
                stat = f.read()
        except OSError:
            break
        name, _sep, rest = stat.partition(" (")[2].rpartition(") ")
        fields = rest.split()
        try:
            ppid, tty_nr = int(fields[1]), int(fields[4])
        except (IndexError, ValueError):
            break
        terminal = _tty_name(tty_nr)
        if tty_nr and terminal is None:
            return None
        try:
            cmd = proc_cmdline(current)
        except OSError:
            cmd = ()
        if len(name) >= 15 and cmd and os.path.basename(cmd[0]).startswith(name):
            name = os.path.basename(cmd[0])  # the kernel cuts comm at 15 bytes, as psutil completes it
        out.append(Ancestor(current, name, cmd, terminal))
        current = ppid if current > 1 else 0
    return out


def ancestors(pid: int) -> list[Ancestor]:
    """The process and its parents up to PID 1 (what can be read of each)."""
    if os.path.isfile("/proc/self/stat"):
        chain = _proc_ancestors(pid)
        if chain is not None:
            return chain
    import psutil

    out: list[Ancestor] = []
    try:
        proc: psutil.Process | None = psutil.Process(pid)
    except psutil.Error:
        return out
    seen = set()
    while proc is not None and proc.pid not in seen and len(out) < 64:
        seen.add(proc.pid)
        try:
            with proc.oneshot():
                name = proc.name()
                try:
                    cmd = tuple(proc.cmdline())
                except psutil.Error:
                    cmd = ()
                try:
                    tty = proc.terminal()
                except psutil.Error:
                    tty = None
                out.append(Ancestor(proc.pid, name, cmd, tty))
                proc = proc.parent() if proc.pid > 1 else None
        except psutil.Error:
            break
    return out


def systemd_unit(cgroup_text: str) -> str | None:
    """The unit a process belongs to, from /proc/PID/cgroup (the last ``*.service`` of its path)."""
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[1] not in ("", "name=systemd"):
            continue
        units = [p for p in parts[2].split("/") if p.endswith(".service") and not p.startswith("user@")]
        if units:
            return units[-1]
    return None


def _run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    try:
        p = subprocess.run(
            argv, capture_output=True, text=True, timeout=max(0.2, timeout), check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, "", str(exc)
    return p.returncode, p.stdout, p.stderr


def _systemctl_restart(unit: str, timeout: float) -> tuple[str | None, str]:
    """(Restart= value, why unknown)."""
    if shutil.which("systemctl") is None:
        return None, _("systemctl is not installed")
    rc, out, err = _run(["systemctl", "show", unit, "-p", "Restart", "--value"], timeout)
    if rc != 0 or not out.strip():
        return None, (err.strip().splitlines() or [f"systemctl exited {rc}"])[0]
    return out.strip(), ""


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _pm2_home(god: Ancestor) -> str | None:
    """The God Daemon's PM2_HOME: its environment, else its title (which the kernel may truncate)."""
    from lokin_doctor.instruments.sysinfo import proc_environ

    home: str | None = proc_environ(god.pid).get("PM2_HOME")
    if home:
        return home
    m = re.search(r"\((/[^)]*)\)", god.command)
    if m:
        return m.group(1)
    home = os.path.expanduser("~/.pm2")
    return home if _read_int(os.path.join(home, "pm2.pid")) == god.pid else None


def _pm2_app(god: Ancestor, pid: int, timeout: float) -> dict[str, Any] | None:
    """The pm2 app of ``pid``: ``pm2 jlist`` (with the God Daemon's PM2_HOME) where pm2 is on PATH,
    else its name from ``PM2_HOME/pids/NAME-ID.pid``; None when neither says."""
    home = _pm2_home(god)
    if home is None:
        return None
    pm2 = shutil.which("pm2")
    # Only ask when that home's pid file names this very daemon: `pm2 jlist` elsewhere would start one.
    if pm2 is not None and _read_int(os.path.join(home, "pm2.pid")) == god.pid:
        rc, out, __ = _run([pm2, "jlist"], timeout, {**os.environ, "PM2_HOME": home})
        start = out.find("[")
        if rc == 0 and start >= 0:
            try:
                apps = json.loads(out[start:])
            except ValueError:
                apps = []
            for app in apps:
                if isinstance(app, dict) and app.get("pid") == pid:
                    return app
    try:
        names = os.listdir(os.path.join(home, "pids"))
    except OSError:
        return None
    for name in names:
        try:
            with open(os.path.join(home, "pids", name)) as f:
                if int(f.read().strip() or 0) == pid:
                    return {"name": name.rsplit("-", 1)[0], "pm2_env": {}}
        except (OSError, ValueError):
            continue
    return None


def _supervisord_program(sup: Ancestor, chain_cmd: str) -> tuple[str | None, str | None, str | None]:
    """(program name, autorestart, config file) from the supervisord's -c file."""
    conf = None
    argv = list(sup.cmdline)
    for i, w in enumerate(argv):
        if w in ("-c", "--configuration") and i + 1 < len(argv):
            conf = argv[i + 1]
        elif w.startswith("--configuration="):
            conf = w.split("=", 1)[1]
    if conf is None:
        conf = next(
            (p for p in ("/etc/supervisor/supervisord.conf", "/etc/supervisord.conf") if os.path.isfile(p)),
            None,
        )
    if conf is None:
        return None, None, None
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(conf)
        # Debian's supervisord.conf includes /etc/supervisor/conf.d/*.conf: read those too.
        import glob

        here = os.path.dirname(os.path.abspath(conf))
        for pattern in parser.get("include", "files", fallback="").split():
            pattern = pattern.replace("%(here)s", here)
            parser.read(sorted(glob.glob(pattern if os.path.isabs(pattern) else os.path.join(here, pattern))))
    except (configparser.Error, OSError):
        return None, None, conf
    for section in parser.sections():
        if not section.startswith("program:"):
            continue
        here = os.path.dirname(os.path.abspath(conf))
        words = parser.get(section, "command", fallback="").replace("%(here)s", here).split()
        if words and all(w in chain_cmd for w in words[1:]) and os.path.basename(words[0]) in chain_cmd:
            return section.split(":", 1)[1], parser.get(section, "autorestart", fallback="unexpected"), conf
    return None, None, conf


def in_container() -> str | None:
    """The container runtime this machine appears to be inside, or None."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    try:
        with open("/proc/1/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    for word in ("kubepods", "docker", "containerd", "lxc"):
        if word in text:
            return "kubernetes" if word == "kubepods" else word
    return None


def unit_hint(server: Ancestor, cwd: str | None) -> str:
    """The deploy/ unit for this server's command line: a ready systemd unit and how to install it."""
    exec_start = " ".join(shlex.quote(a) for a in server.cmdline) or server.name
    if server.cmdline and not os.path.isabs(server.cmdline[0]):
        found = shutil.which(server.cmdline[0])
        if found:
            exec_start = " ".join(shlex.quote(a) for a in (found, *server.cmdline[1:]))
    wd = f"WorkingDirectory={cwd}\n" if cwd else ""
    return _(
        "run it under a supervisor that restarts it: the systemd unit of deploy/lokin-ws.service, with this server's command, as /etc/systemd/system/lokin-ws.service:\n[Unit]\nDescription=LOK IN WebSocket server\nAfter=network-online.target\n\n[Service]\n{wd}ExecStart={exec_start}\nRestart=always\nRestartSec=2\n\n[Install]\nWantedBy=multi-user.target\nthen: sudo systemctl daemon-reload && sudo systemctl enable --now lokin-ws (or with pm2: pm2 start server.js --name lokin-ws && pm2 save && pm2 startup)"
    ).format(wd=wd, exec_start=exec_start)


async def _server_pid(ctx: Context) -> int | None:
    """The WebSocket server's pid: a --process match listening on the port (or behind nginx's proxy_pass,
    or anywhere), else the port's owner."""
    from lokin_doctor.checks.host.port import scan
    from lokin_doctor.instruments.sysinfo import find_processes

    all_listeners, owners = await scan(ctx)
    patterns = ctx.settings.process_patterns
    matches = await ctx.blocking("processes", lambda: find_processes(patterns, all_listeners))
    port = ctx.target.port
    # Behind a proxy on this machine (nginx, HAProxy, Apache, Caddy), the server is the one its
    # proxy_pass / server line / ProxyPass / reverse_proxy names; the proxy itself is not the server.
    from lokin_doctor.checks.host.port import proxy_name

    analysis = ctx.facts.get("nginx")
    upstream_ports = {u.port for u in getattr(analysis, "upstreams", ())}
    state = ctx.facts.get("proxy_config")
    upstream_ports |= {u.port for u in getattr(getattr(state, "route", None), "upstreams", ())}
    for p in (
        *[m for m in matches if port in m.listening_ports],
        *[m for m in matches if upstream_ports & set(m.listening_ports)],
        *[o for o in owners.values() if not o.name.startswith("nginx") and proxy_name(o) is None],
        *[m for m in matches if m.listening_ports],
    ):
        return p.pid
    return None


def classify(
    chain: list[Ancestor], cgroup: str, container: str | None, timeout: float, cwd: str | None
) -> CheckResult:
    """The verdict for a server whose ancestors are ``chain`` (the server first)."""
    server = chain[0]
    ev: dict[str, Any] = {"pid": server.pid, "ancestors": [a.to_dict() for a in chain]}
    if container:
        ev["container"] = container
    hint = unit_hint(server, cwd)
    who = f"pid {server.pid} ({server.command})"
    unit = systemd_unit(cgroup)
    if unit:
        restart, why = _systemctl_restart(unit, timeout)
        ev.update(systemd_unit=unit, restart=restart)
        if restart == "no":
            return warn(
                "supervisor",
                SUPERVISOR_NO_RESTART,
                _(
                    "{who} runs in systemd unit {unit} with Restart=no: systemd starts it at boot but not after a crash"
                ).format(who=who, unit=unit),
                _(
                    "set Restart=always and RestartSec=2 in {unit} (systemctl edit {unit}), then systemctl restart {unit}"
                ).format(unit=unit),
                **ev,
            )
        said = f"Restart={restart}" if restart else f"Restart= unknown: {why}"
        return ok(
            "supervisor",
            _("{who} is supervised by systemd unit {unit} ({said})").format(who=who, unit=unit, said=said),
            **ev,
        )
    for a in chain[1:]:
        text = a.command
        if "God Daemon" in text and "PM2" in text.upper():
            app = _pm2_app(a, server.pid, timeout)
            ev["pm2_daemon"] = a.pid
            if app:
                env = app.get("pm2_env") or {}
                autorestart = env.get("autorestart")
                ev.update(pm2_app=app.get("name"), autorestart=autorestart, restarts=env.get("restart_time"))
                if autorestart is False:
                    return warn(
                        "supervisor",
                        SUPERVISOR_NO_RESTART,
                        _("{who} is pm2 app {app!r} with autorestart off").format(
                            who=who, app=app.get("name")
                        ),
                        _(
                            "pm2 restart {app} --autorestart (or remove autorestart: false from the ecosystem file), then pm2 save"
                        ).format(app=app.get("name")),
                        **ev,
                    )
                said = (
                    _("autorestart on, {env} restart(s) so far").format(env=env.get("restart_time", 0))
                    if autorestart
                    else _("autorestart unknown: pm2 jlist could not be run, pm2's default is on")
                )
                return ok(
                    "supervisor",
                    _("{who} is supervised by pm2 (app {app!r}, {said}; God Daemon pid {pid})").format(
                        who=who, app=app.get("name"), said=said, pid=a.pid
                    ),
                    **ev,
                )
            said = _("neither pm2 jlist nor PM2_HOME/pids names it")
            return ok(
                "supervisor",
                _("{who} is supervised by pm2 (God Daemon pid {pid}; {said})").format(
                    who=who, pid=a.pid, said=said
                ),
                **ev,
            )
        if a.name.startswith("supervisord") or any(
            os.path.basename(w) == "supervisord" for w in a.cmdline[:2]
        ):
            program, autorestart, conf = _supervisord_program(a, server.command)
            ev.update(supervisord=a.pid, program=program, autorestart=autorestart, config=conf)
            if autorestart is not None and autorestart.lower() == "false":
                return warn(
                    "supervisor",
                    SUPERVISOR_NO_RESTART,
                    _("{who} runs under supervisord (program {program}) with autorestart=false").format(
                        who=who, program=program
                    ),
                    _(
                        "set autorestart=true in [program:{program}] of {conf}, then supervisorctl update"
                    ).format(program=program, conf=conf),
                    **ev,
                )
            said = (
                _("program {program}, autorestart={autorestart}").format(
                    program=program, autorestart=autorestart
                )
                if program
                else _("no [program:x] of {value} matches its command").format(
                    value=conf or _("its configuration")
                )
            )
            return ok(
                "supervisor",
                _("{who} is supervised by supervisord pid {pid} ({said})").format(
                    who=who, pid=a.pid, said=said
                ),
                **ev,
            )
        if "nodemon" in text:
            return warn(
                "supervisor",
                SUPERVISOR_NODEMON,
                _(
                    "{who} runs under nodemon (pid {pid}): it restarts on file changes, but after a crash it waits for a change, and nothing starts it after a reboot"
                ).format(who=who, pid=a.pid),
                hint,
                **ev,
            )
    for a in chain[1:]:
        if a.name in MULTIPLEXERS or a.name.startswith("tmux") or a.name == "screen":
            return warn(
                "supervisor",
                SUPERVISOR_TERMINAL,
                _(
                    "{who} was started by hand in {name} (pid {pid}): it survives a logout, but nothing restarts it after a crash or a reboot"
                ).format(who=who, name=a.name, pid=a.pid),
                hint,
                **ev,
            )
        if a.name in SHELLS and (a.terminal or server.terminal):
            tty = a.terminal or server.terminal
            return warn(
                "supervisor",
                SUPERVISOR_TERMINAL,
                _(
                    "{who} was started by hand from a terminal ({name} pid {pid} on {tty}): closing the terminal stops it, and nothing restarts it after a crash or a reboot"
                ).format(who=who, name=a.name, pid=a.pid, tty=tty),
                hint,
                **ev,
            )
    parent = chain[1] if len(chain) > 1 else None
    if container and (
        server.pid == 1 or (parent is not None and parent.pid == 1 and parent.name in CONTAINER_INITS)
    ):
        return ok(
            "supervisor",
            _(
                "{who} is the main process of a {container} container: the runtime's restart policy decides (docker run --restart, compose restart:, a Kubernetes pod); it cannot be read from inside"
            ).format(who=who, container=container),
            **ev,
        )
    parent_said = (
        _("its parent is pid {pid} ({command})").format(pid=parent.pid, command=parent.command)
        if parent
        else _("it has no parent")
    )
    return warn(
        "supervisor",
        SUPERVISOR_NONE,
        _(
            "nothing would restart {who} after a crash or a reboot: {parent_said}, no systemd unit, pm2, supervisord or container init among its ancestors"
        ).format(who=who, parent_said=parent_said),
        hint,
        **ev,
    )


async def check(ctx: Context) -> CheckResult:
    pid = await _server_pid(ctx)
    if pid is None:
        return skip("supervisor", _("skipped: no server process found (see process)"))
    if pid == os.getpid():
        return skip(
            "supervisor",
            _("not applicable: the server is this lokin-doctor process (--embedded)"),
            applicable=False,
        )
    budget = min(5.0, max(0.2, ctx.remaining() - 0.1))  # pm2 jlist starts node: ~1 s, more on a busy box

    def work() -> CheckResult:
        chain = ancestors(pid)
        if not chain:
            return skip("supervisor", _("skipped: pid {pid} vanished").format(pid=pid))
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                cgroup = f.read()
        except OSError:
            cgroup = ""
        try:
            cwd: str | None = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            try:
                import psutil

                cwd = psutil.Process(pid).cwd()
            except Exception:
                cwd = None
        return classify(chain, cgroup, in_container(), budget, cwd)

    return await asyncio.to_thread(work)


def in_production(ctx: Context) -> bool:
    """A public name, wss://, or a reverse proxy in front: where a crash must not wait for a person."""
    import ipaddress

    target = ctx.target
    if target.secure or ctx.facts.get("port_proxy") or ctx.facts.get("nginx") is not None:
        return True
    proxy = ctx.results.get("proxy")
    if proxy is not None and proxy.status is not Status.SKIP:
        return True
    host = target.host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return True  # a name: what clients of a deployment use


def finalize(ctx: Context, result: CheckResult) -> CheckResult:
    """Weigh "nothing restarts it" by context: a server started by hand behind ws://localhost is how a
    developer works (a note, the status stays ok); in production it stays a warning with the unit file."""
    if result.code not in (SUPERVISOR_NONE, SUPERVISOR_TERMINAL) or in_production(ctx):
        return result
    return noted(
        "supervisor",
        result.summary,
        _(
            "normal for a server started by hand on a development machine (ws:// on this machine, no proxy in front); in production (a public name, a proxy in front, wss://) run it under a supervisor: see {code} in docs/local-checks.md"
        ).format(code=result.code),
        **{**result.evidence, "advisory": result.code, "fix": result.hint},
    )
