"""``process``: the WebSocket server process — the port's owner, or one matching ``--process``.

Facts written: ``server_processes`` (ProcInfo list).
"""

from __future__ import annotations

from lokin_doctor.checks.port import scan, short_command
from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, fail, ok, warn
from lokin_doctor.sysinfo import DEFAULT_PROCESS_PATTERNS, ProcInfo, find_processes


def describe_patterns(patterns: tuple[str, ...]) -> str:
    if patterns == DEFAULT_PROCESS_PATTERNS:
        return "'node server.js' or 'lokin-doctor serve'"
    return " or ".join(repr(p) for p in patterns)


def _describe(p: ProcInfo) -> str:
    return f"pid {p.pid} ({short_command(p)})"


def _vitals(p: ProcInfo) -> str:
    parts = [f"up {_duration(p.uptime_s)}"]
    if p.rss is not None:
        parts.append(f"RSS {p.rss / 1048576:.1f} MiB")
    if p.cpu_percent is not None:
        parts.append(f"CPU {p.cpu_percent:.1f}%")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


async def check(ctx: Context) -> CheckResult:
    port = ctx.target.port
    patterns = ctx.settings.process_patterns
    all_listeners, owners = await scan(ctx)
    matches = await ctx.blocking("processes", lambda: find_processes(patterns, all_listeners))
    on_port = [li for li in all_listeners if li.port == port]
    looked_for = describe_patterns(patterns)
    evidence: dict[str, object] = {"patterns": list(patterns)}
    if owners:
        servers = list(owners.values())
        ctx.facts["server_processes"] = servers
        main = servers[0]
        evidence["processes"] = [p.to_dict() for p in servers]
        others = [m for m in matches if m.pid not in owners]
        idle = [o for o in others if not o.listening_ports]
        if idle:
            evidence["other_instances"] = [p.to_dict() for p in others]
            return warn(
                "process",
                "process.multiple",
                f"{_describe(main)} holds port {port}, and {len(idle)} more matching process(es) run without "
                "listening anywhere: " + ", ".join(_describe(o) for o in idle),
                "stop the extra instances (kill PID): a second server started on a taken port dies with "
                "EADDRINUSE or hangs; check how the server is started (pm2, systemd, nohup) so it runs once",
                **evidence,
            )
        if others:
            evidence["other_instances"] = [p.to_dict() for p in others]
        ports = ", ".join(map(str, main.listening_ports)) or str(port)
        # What was seen: the process and its sockets; whether it answers is the handshake's to say.
        return ok(
            "process",
            f"port {port} is held by {short_command(main)}, pid {main.pid} (listening on {ports}); "
            f"{_vitals(main)}",
            **evidence,
        )
    if on_port:
        # Someone listens but psutil cannot name them (another user's process, not root).
        if matches:
            evidence["processes"] = [p.to_dict() for p in matches]
            ctx.facts["server_processes"] = matches
            return ok(
                "process",
                f"{_describe(matches[0])} is running; {_vitals(matches[0])} "
                "(the port's owner is hidden from this user)",
                **evidence,
            )
        return warn(
            "process",
            "process.owner-unknown",
            f"something listens on port {port}, but no process matching {looked_for} is visible",
            "owner unknown, run as root to see it (sudo lokin-doctor check-process), or pass --process to "
            "name your server's command line",
            **evidence,
        )
    if not matches:
        return fail(
            "process",
            "process.not-running",
            f"the WebSocket server is not running: no process matches {looked_for} and nothing listens on "
            f"port {port}",
            f"start it: node server.js (listens on {port}), or lokin-doctor serve --port {port}; keep it running "
            "with pm2 or systemd so it restarts after a crash",
            **evidence,
        )
    evidence["processes"] = [p.to_dict() for p in matches]
    ctx.facts["server_processes"] = matches
    listening = [m for m in matches if m.listening_ports]
    if listening:
        where = "; ".join(
            f"{_describe(m)} listens on {', '.join(map(str, m.listening_ports))}" for m in listening
        )
        t = ctx.target
        urls = ", ".join(
            f"ws{'s' if t.secure else ''}://{t.host_for_url}:{p}{t.resource}"
            for m in listening
            for p in m.listening_ports
        )
        return fail(
            "process",
            "process.wrong-port",
            f"the server runs but not on port {port}: {where}",
            f"point the client at the port the server uses ({urls}), or restart the server on port {port}",
            **evidence,
        )
    return fail(
        "process",
        "process.not-listening",
        f"{_describe(matches[0])} runs but listens on no port"
        + (f" ({len(matches)} instances)" if len(matches) > 1 else ""),
        "it may still be starting, or failed to listen (EADDRINUSE, permission): read its log, then "
        f"restart it on port {port}",
        **evidence,
    )
