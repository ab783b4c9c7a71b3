"""``process``: the WebSocket server process — the port's owner, or one matching ``--process``.

Facts written: ``server_processes`` (ProcInfo list).
"""

from __future__ import annotations

from lokin_doctor.causes.host import (
    PROCESS_MULTIPLE,
    PROCESS_NOT_LISTENING,
    PROCESS_NOT_RUNNING,
    PROCESS_OWNER_UNKNOWN,
    PROCESS_WRONG_PORT,
)
from lokin_doctor.checks.host.port import scan, short_command
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.sysinfo import (
    DEFAULT_PROCESS_PATTERNS,
    ProcInfo,
    ancestry,
    find_processes,
    related,
)
from lokin_doctor.model import CheckResult, fail, ok, warn


def describe_patterns(patterns: tuple[str, ...]) -> str:
    if patterns == DEFAULT_PROCESS_PATTERNS:
        return _("'node server.js' or 'lokin-doctor serve'")
    return _(" or ").join(repr(p) for p in patterns)


def _describe(p: ProcInfo) -> str:
    return f"pid {p.pid} ({short_command(p)})"


def _vitals(p: ProcInfo) -> str:
    parts = [_("up {duration}").format(duration=_duration(p.uptime_s))]
    if p.rss is not None:
        parts.append(_("RSS {rss:.1f} MiB").format(rss=p.rss / 1048576))
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
    return _("{days:.1f} days").format(days=seconds / 86400)


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
        # A wrapper of the server (sh -c, npm start, nodemon, pm2, a cluster master or worker) is the same
        # instance: only a process related to no owner is a second one.
        # A process whose descendant listens (on any port) is a wrapper of that server, not an idle one.
        lineage = {pid: ancestry(pid) for pid in owners} if others else {}
        lineage.update({m.pid: m.ancestors for m in matches if m.listening_ports})
        idle = [
            o
            for o in others
            if not o.listening_ports and not any(related(o, pid, up) for pid, up in lineage.items())
        ]
        if idle:
            evidence["other_instances"] = [p.to_dict() for p in others]
            return warn(
                "process",
                PROCESS_MULTIPLE,
                _(
                    "{main} holds port {port}, and {n_idle} more matching process(es) run without listening anywhere: {idle}"
                ).format(
                    main=_describe(main),
                    port=port,
                    n_idle=len(idle),
                    idle=", ".join(_describe(o) for o in idle),
                ),
                _(
                    "stop the extra instances (kill PID): a second server started on a taken port dies with EADDRINUSE or hangs; check how the server is started (pm2, systemd, nohup) so it runs once"
                ),
                **evidence,
            )
        if others:
            evidence["other_instances"] = [p.to_dict() for p in others]
        ports = ", ".join(map(str, main.listening_ports)) or str(port)
        # What was seen: the process and its sockets; whether it answers is the handshake's to say.
        return ok(
            "process",
            _("port {port} is held by {main}, pid {pid} (listening on {ports}); {main2}").format(
                port=port, main=short_command(main), pid=main.pid, ports=ports, main2=_vitals(main)
            ),
            **evidence,
        )
    if on_port:
        # Someone listens but psutil cannot name them (another user's process, not root).
        if matches:
            evidence["processes"] = [p.to_dict() for p in matches]
            ctx.facts["server_processes"] = matches
            return ok(
                "process",
                _("{matches} is running; {matches2} (the port's owner is hidden from this user)").format(
                    matches=_describe(matches[0]), matches2=_vitals(matches[0])
                ),
                **evidence,
            )
        return warn(
            "process",
            PROCESS_OWNER_UNKNOWN,
            _("something listens on port {port}, but no process matching {looked_for} is visible").format(
                port=port, looked_for=looked_for
            ),
            _(
                "owner unknown, run as root to see it (sudo lokin-doctor check-process), or pass --process to name your server's command line"
            ),
            **evidence,
        )
    if not matches:
        return fail(
            "process",
            PROCESS_NOT_RUNNING,
            _(
                "the WebSocket server is not running: no process matches {looked_for} and nothing listens on port {port}"
            ).format(looked_for=looked_for, port=port),
            _(
                "start it: node server.js (listens on {port}), or lokin-doctor serve --port {port}; keep it running with pm2 or systemd so it restarts after a crash"
            ).format(port=port),
            **evidence,
        )
    evidence["processes"] = [p.to_dict() for p in matches]
    ctx.facts["server_processes"] = matches
    listening = [m for m in matches if m.listening_ports]
    if listening:
        where = "; ".join(
            _("{m} listens on {str}").format(m=_describe(m), str=", ".join(map(str, m.listening_ports)))
            for m in listening
        )
        t = ctx.target
        urls = ", ".join(
            f"ws{'s' if t.secure else ''}://{t.host_for_url}:{p}{t.resource}"
            for m in listening
            for p in m.listening_ports
        )
        return fail(
            "process",
            PROCESS_WRONG_PORT,
            _("the server runs but not on port {port}: {where}").format(port=port, where=where),
            _(
                "point the client at the port the server uses ({urls}), or restart the server on port {port}"
            ).format(urls=urls, port=port),
            **evidence,
        )
    return fail(
        "process",
        PROCESS_NOT_LISTENING,
        _("{matches} runs but listens on no port{value}").format(
            matches=_describe(matches[0]), value=f" ({len(matches)} instances)" if len(matches) > 1 else ""
        ),
        _(
            "it may still be starting, or failed to listen (EADDRINUSE, permission): read its log, then restart it on port {port}"
        ).format(port=port),
        **evidence,
    )
