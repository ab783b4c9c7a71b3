"""``platform``: a CDN or cloud load balancer in front, its documented WebSocket limit, set against what the
run saw.

Recognition (:func:`lokin_doctor.instruments.platforms.recognise`, no network look-up): the 101's headers,
the URL's host and CNAME chain, the addresses, the certificate. With nothing recognised the check is not
applicable. Then each platform's limit (idle timeout, or maximum lifetime for Google's load balancer) is
weighed against what the session (``--linger``), the hold (``--hold``) and a Socket.IO open packet showed:

* ``platform.idle-timeout`` / ``platform.lifetime-cut`` (fail): the held connection was cut at the limit;
* ``platform.ping-too-slow`` (warn): the server's pings are further apart than the idle timeout, or a
  watched connection went past it without a byte from the server;
* ok: the server pings well within the limit ("Cloudflare closes idle WebSockets after 100 s; the server
  pings every 25 s"); or a note stating the limit and what to verify when the run watched too briefly to
  tell (a 2 s session says nothing about a 100 s idle timeout).

:func:`observe` reads the other checks' evidence (JSON keys: what a report shows) and :func:`weigh` is
pure, so both are tested with the values of real short sessions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lokin_doctor.causes import Cause
from lokin_doctor.causes.platform import PLATFORM_IDLE_TIMEOUT, PLATFORM_LIFETIME_CUT, PLATFORM_PING_TOO_SLOW
from lokin_doctor.context import Context
from lokin_doctor.i18n import _
from lokin_doctor.instruments.platforms import LimitKind, Recognised, recognise
from lokin_doctor.model import CheckResult, Status, fail, noted, ok, skip, warn

CHECK_ID = "platform"


def tolerance(limit: float) -> float:
    """How far an observed time may be from a limit and still be it: the hold's rule (3 s or 8 %) for every
    real limit (30 s and more), a quarter of the limit below 12 s."""
    return max(min(3.0, limit * 0.25), limit * 0.08)


@dataclass(frozen=True)
class Observed:
    """What the run saw of the server's keepalive and of a connection's end."""

    #: The server's ping interval, measured (hold, or the session's --linger window).
    interval_s: float | None = None
    interval_from: str = ""
    #: The ping interval a Socket.IO server announces in its open packet.
    announced_s: float | None = None
    #: The longest a connection was watched (hold or linger), in seconds.
    watched_s: float = 0.0
    #: The longest stretch seen without a server ping (None when messages may have filled it).
    quiet_s: float | None = None
    #: The hold ended by the other side: when, how long after the last server traffic, with which code.
    dropped_after_s: float | None = None
    idle_before_drop_s: float | None = None
    close_code: int | None = None
    server_pings: int = 0


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def observe(evidence: Mapping[str, Mapping[str, Any]]) -> Observed:
    """What the session, hold and socketio checks' evidence (by check id) says of the keepalive."""
    hold = evidence.get("hold") or {}
    session = evidence.get("session") or {}
    sio = evidence.get("socketio") or {}
    interval, source = None, ""
    watched, quiet = 0.0, None
    dropped = idle = code = None
    pings = 0
    if "held_s" in hold:
        at = [float(p) for p in hold.get("server_pings_at_s") or () if _num(p) is not None]
        pings = len(at)
        dropped = _num(hold.get("elapsed_s"))
        end = dropped if dropped is not None else float(hold["held_s"])
        watched = end
        if dropped is not None:
            idle = _num(hold.get("idle_before_drop_s"))
            code = hold.get("close_code")
        marks = [0.0, *at, end]
        if at or not hold.get("messages"):
            quiet = max(b - a for a, b in zip(marks, marks[1:], strict=False))
        if _num(hold.get("server_ping_interval_s")) is not None:
            interval, source = float(hold["server_ping_interval_s"]), "hold"
    linger = _num(session.get("linger_s"))
    if linger is not None and linger > watched:
        watched = linger
        n = session.get("server_pings")
        if n == 0 and not session.get("messages_received"):
            quiet = max(quiet or 0.0, linger)
        pings = max(pings, int(n or 0))
    if interval is None and _num(session.get("server_ping_interval_s")) is not None:
        interval, source = float(session["server_ping_interval_s"]), "session"
    packet = sio.get("open_packet") or {}
    announced = _num(packet.get("ping_interval_ms"))
    return Observed(
        interval_s=interval,
        interval_from=source,
        announced_s=announced / 1000 if announced is not None else None,
        watched_s=round(watched, 2),
        quiet_s=round(quiet, 2) if quiet is not None else None,
        dropped_after_s=dropped,
        idle_before_drop_s=idle,
        close_code=code if isinstance(code, int) else None,
        server_pings=pings,
    )


@dataclass(frozen=True)
class Verdict:
    status: Status
    summary: str
    cause: Cause | None = None
    hint: str | None = None
    note: str | None = None


def _interval_phrase(obs: Observed) -> tuple[float, str] | None:
    if obs.interval_s is not None:
        where = _("seen in the hold") if obs.interval_from == "hold" else _("seen in the session")
        return obs.interval_s, where
    if obs.announced_s is not None:
        return obs.announced_s, _("its Socket.IO pingInterval")
    return None


def weigh(rec: Recognised, obs: Observed) -> Verdict:
    """One platform's limit against what was observed."""
    platform, limit = rec.platform, rec.platform.limit
    name = _(platform.name)
    what = _(limit.what)
    if limit.seconds is None:
        return Verdict(
            Status.OK,
            _("{name} in front; it documents no WebSocket timeout").format(name=name),
            note=_(limit.fix),
        )
    seconds = limit.seconds
    tol = tolerance(seconds)
    half = max(1, int(seconds / 2))
    fix = _(limit.fix).format(half=half)
    hold_hint = _("hold an idle connection past it (--hold {hold:g}) to see whether it applies here").format(
        hold=seconds + max(10.0, tol)
    )
    if limit.kind is LimitKind.LIFETIME:
        head = _("{name} closes every WebSocket after {limit:g} s, idle or not ({what})").format(
            name=name, limit=seconds, what=what
        )
        if obs.dropped_after_s is not None:
            if abs(obs.dropped_after_s - seconds) <= tol:
                return Verdict(
                    Status.FAIL,
                    _(
                        "{head}; the held connection was cut after {after:g} s ({pings} server pings): that limit"
                    ).format(head=head, after=obs.dropped_after_s, pings=obs.server_pings),
                    PLATFORM_LIFETIME_CUT,
                    fix,
                )
            return Verdict(
                Status.OK,
                head,
                note=_(
                    "the held connection was cut after {after:g} s, which is not this limit (see hold)"
                ).format(after=obs.dropped_after_s),
            )
        if obs.watched_s >= seconds + tol:
            return Verdict(
                Status.OK,
                _("{head}; a connection stayed open {watched:g} s here: the limit is raised").format(
                    head=head, watched=obs.watched_s
                ),
            )
        return Verdict(
            Status.OK,
            head,
            note=_(
                "this run watched a connection {watched:g} s, too short to tell; {hold_hint}; {fix}"
            ).format(watched=obs.watched_s, hold_hint=hold_hint, fix=fix),
        )

    head = _("{name} closes WebSockets idle for {limit:g} s ({what})").format(
        name=name, limit=seconds, what=what
    )
    if obs.dropped_after_s is not None:
        idle = obs.idle_before_drop_s if obs.idle_before_drop_s is not None else obs.dropped_after_s
        if seconds - tol <= idle <= (limit.upper or seconds) + tol:
            return Verdict(
                Status.FAIL,
                _(
                    "{head}; the held connection was cut after {idle:g} s without traffic from the server: that timeout"
                ).format(head=head, idle=idle),
                PLATFORM_IDLE_TIMEOUT,
                fix,
            )
        return Verdict(
            Status.OK,
            head,
            note=_(
                "the held connection was cut after {idle:g} s idle, which is not this timeout (see hold)"
            ).format(idle=idle),
        )
    every = _interval_phrase(obs)
    if every is not None:
        interval, where = every
        if interval < seconds - tol:
            return Verdict(
                Status.OK,
                _("{head}; the server pings every {every:g} s ({where}), which keeps them open").format(
                    head=head, every=interval, where=where
                ),
            )
        summary = _(
            "{head}; the server pings every {every:g} s ({where}): an idle connection is cut before the next ping"
        ).format(head=head, every=interval, where=where)
        if limit.firm:
            return Verdict(Status.WARN, summary, PLATFORM_PING_TOO_SLOW, fix)
        return Verdict(Status.OK, head, note=f"{summary}; {fix}")
    if obs.quiet_s is not None and obs.quiet_s >= seconds - tol:
        summary = _(
            "{head}; the server sent no ping in {quiet:g} s and the connection was not cut: this setup's limit is higher than the documented one, where an idle client is cut"
        ).format(head=head, quiet=obs.quiet_s)
        if limit.firm:
            return Verdict(Status.WARN, summary, PLATFORM_PING_TOO_SLOW, fix)
        return Verdict(Status.OK, head, note=summary)
    if obs.server_pings:
        seen = _(
            "this run watched a connection {watched:g} s and saw {pings} server ping(s), too few to know the interval"
        ).format(watched=obs.watched_s, pings=obs.server_pings)
    else:
        seen = _(
            "this run watched a connection {watched:g} s without a server ping, too short to tell"
        ).format(watched=obs.watched_s)
    return Verdict(Status.OK, head, note=f"{seen}; {hold_hint}; {fix}")


_RANK = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}


def _names(ctx: Context) -> list[tuple[str, str]]:
    target = ctx.target
    out: list[tuple[str, str]] = []
    if target.ip is None:
        out.append(("host", target.host))
    records = ctx.facts.get("dns_records")
    for name in [*(ctx.facts.get("cnames") or ()), *(getattr(records, "cnames", None) or ())]:
        if ("CNAME", name) not in out:
            out.append(("CNAME", name))
    return out


async def check(ctx: Context) -> CheckResult:
    out = ctx.facts.get("outcome")
    found = recognise(
        list(getattr(out, "headers", None) or ()),
        status=getattr(out, "status", None) or 101,
        names=_names(ctx),
        addresses=list(ctx.facts.get("addresses") or ()),
        certificate=ctx.facts.get("tls_info"),
    )
    if not found:
        return skip(CHECK_ID, _("no CDN or load balancer recognised"), applicable=False)
    obs = observe({k: r.evidence for k, r in ctx.results.items()})
    verdicts = [(rec, weigh(rec, obs)) for rec in found]
    platforms = [{**rec.as_evidence(), "verdict": v.status.value} for rec, v in verdicts]
    evidence: dict[str, Any] = {"platforms": platforms, "observed": _observed_evidence(obs)}
    worst_rec, worst = max(verdicts, key=lambda rv: _RANK[rv[1].status])
    summary = "; ".join(v.summary for _r, v in verdicts)
    if worst.status is not Status.OK:
        assert worst.cause is not None and worst.hint is not None
        make = fail if worst.status is Status.FAIL else warn
        others = [v.summary for r, v in verdicts if r is not worst_rec]
        summary = "; ".join([worst.summary, *others])
        return make(CHECK_ID, worst.cause, summary, worst.hint, **evidence)
    notes = [v.note for _r, v in verdicts if v.note]
    if notes:
        return noted(CHECK_ID, summary, "; ".join(notes), **evidence)
    return ok(CHECK_ID, summary, **evidence)


def _observed_evidence(obs: Observed) -> dict[str, Any]:
    ev: dict[str, Any] = {"watched_s": obs.watched_s, "server_pings": obs.server_pings}
    for key, value in (
        ("server_ping_interval_s", obs.interval_s),
        ("socketio_ping_interval_s", obs.announced_s),
        ("longest_without_ping_s", obs.quiet_s),
        ("dropped_after_s", obs.dropped_after_s),
        ("idle_before_drop_s", obs.idle_before_drop_s),
    ):
        if value is not None:
            ev[key] = value
    return ev
