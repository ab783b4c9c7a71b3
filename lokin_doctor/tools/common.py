"""Helpers shared by ``load``, ``watch`` and ``monitor``: cause codes, percentiles, safety checks,
the event loop.

Cause codes are the checklist's (``lokin-doctor all``), so a CI script matches the same strings
whatever command found the problem:

* TCP connect failed: ``tcp.refused``, ``tcp.timeout``, ``tcp.unreachable``, ``tcp.error``
  (what the ``tcp`` check reports for the same errno);
* TCP connected, no valid 101: the code :func:`lokin_doctor.checks.chain.handshake.classify` gives for
  what came back (``handshake.not-found``, ``handshake.unavailable``, ``handshake.no-response``...);
* after the 101, before the greeting (the ``session`` check's codes): ``session.closed-at-once``
  (close frame), ``session.dropped`` (TCP lost without a close frame);
* open and idle (the ``hold`` check's codes, ``all --hold``): ``hold.closed-by-server`` (close frame),
  ``hold.dropped`` (1006), ``hold.idle-timeout`` (1006 after a known proxy idle time, watch only);
* while echoing: ``session.dropped`` (1006), ``session.expect-mismatch`` (no echo of a sent message in
  time: what ``all --send X --expect X`` reports);
* two codes only the tools use: ``session.no-greeting`` (no first message within --timeout) and
  ``session.closed`` (a close frame while messages were exchanged);
* the load client's own limits: ``load.client-limit`` (EMFILE, ENFILE, EADDRNOTAVAIL: this
  machine ran out of file descriptors or ephemeral ports, not the server's fault).
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lokin_doctor.causes.http import HANDSHAKE_UNEXPECTED_STATUS
from lokin_doctor.causes.session import (
    HOLD_CLOSED_BY_SERVER,
    HOLD_DROPPED,
    HOLD_IDLE_TIMEOUT,
    SESSION_CLOSED,
    SESSION_CLOSED_AT_ONCE,
    SESSION_DROPPED,
    SESSION_EXPECT_MISMATCH,
    SESSION_NO_GREETING,
)
from lokin_doctor.causes.tcp import TCP_ERROR, TCP_REFUSED, TCP_TIMEOUT, TCP_UNREACHABLE
from lokin_doctor.causes.tools import LOAD_CLIENT_LIMIT
from lokin_doctor.i18n import N_, _
from lokin_doctor.validate import UsageError

if TYPE_CHECKING:
    from lokin_doctor.instruments.wire import Outcome
    from lokin_doctor.target import Target


class ToolError(UsageError):
    """A usage problem the command reports in one line and exits 2 for (printed by ``cli.main``)."""


@dataclass(frozen=True)
class Finding:
    """What a tool saw fail: the registry cause's code, one sentence of fact and the next thing to do (the
    registry's :class:`lokin_doctor.causes.Cause` is the diagnosis; a Finding is one occurrence of it)."""

    code: str
    summary: str
    hint: str

    def __post_init__(self) -> None:
        # Built from a registry cause; kept as its plain code (a JSON key, a counter's key).
        object.__setattr__(self, "code", str(self.code))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "summary": self.summary, "hint": self.hint}


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


#: Hints mirror the ``tcp`` check's.
def tcp_cause(kind: str, address: str, port: int, detail: str = "") -> Finding:
    where = _where(address, port)
    if kind == "refused":
        return Finding(
            TCP_REFUSED,
            _("connection refused on {where}: nothing accepts connections there").format(where=where),
            _(
                "start the WebSocket server on port {port} (node server.js, or lokin-doctor serve --port {port}), or fix the port in the client URL"
            ).format(port=port),
        )
    if kind == "timeout":
        return Finding(
            TCP_TIMEOUT,
            _(
                "no answer to the TCP connect on {where} in time: packets are dropped (firewall? full accept backlog?) or the host is down"
            ).format(where=where),
            _(
                "open port {port} in the firewall or check the host is up; under load, raise the server's listen backlog (net.core.somaxconn)"
            ).format(port=port),
        )
    if kind == "unreachable":
        return Finding(
            TCP_UNREACHABLE,
            _("{where}: {detail}").format(where=where, detail=detail or _("no route to host")),
            _("no route to the host: check the address, the network, or a firewall that rejects"),
        )
    if kind == "client-limit":
        return Finding(
            LOAD_CLIENT_LIMIT,
            _("this machine could not open another connection to {where}: {detail}").format(
                where=where, detail=detail
            ),
            _(
                "the load client ran out of file descriptors or ephemeral ports: use fewer --connections, raise ulimit -n, widen net.ipv4.ip_local_port_range"
            ),
        )
    return Finding(
        TCP_ERROR,
        _("cannot connect to {where}: {detail}").format(where=where, detail=detail or kind),
        _("check the address and port in the client URL and the network path"),
    )


def connect_exception_cause(exc: BaseException, address: str, port: int) -> Finding:
    """The cause code of an exception raised by a TCP connect (``loop.create_connection``)."""
    if isinstance(exc, ConnectionRefusedError):
        return tcp_cause("refused", address, port)
    if isinstance(exc, TimeoutError):
        return tcp_cause("timeout", address, port)
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return tcp_cause("unreachable", address, port, detail)
        if exc.errno in (errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS):
            return tcp_cause("client-limit", address, port, detail)
        return tcp_cause("error", address, port, detail)
    return tcp_cause("error", address, port, f"{type(exc).__name__}: {exc}")


def outcome_cause(out: Outcome, target: Target) -> Finding:
    """The cause of a :func:`lokin_doctor.instruments.wire.open_handshake` outcome that is not ``upgraded``.

    Connect-stage kinds map to the ``tcp`` check's codes (what ``all`` reports when the port does not
    accept); everything after the TCP connect goes through the checklist's ``classify``.
    """
    from lokin_doctor.instruments.observer import OutcomeKind

    if out.kind == OutcomeKind.CONNECT_REFUSED:
        return tcp_cause("refused", out.address, out.port)
    if out.kind == OutcomeKind.CONNECT_TIMEOUT:
        return tcp_cause("timeout", out.address, out.port)
    if out.kind == OutcomeKind.CONNECT_ERROR:
        exc = out.exc
        if isinstance(exc, OSError):
            return connect_exception_cause(exc, out.address, out.port)
        return tcp_cause("error", out.address, out.port, out.error or "")
    from lokin_doctor.checks.chain.handshake import classify

    result = classify(out, target)
    return Finding(result.code or HANDSHAKE_UNEXPECTED_STATUS, result.summary, result.hint or "")


def session_cause(
    stage: str, close_code: int | None, close_reason: str = "", idle_s: float | None = None
) -> Finding:
    """A connection that got its 101 and then ended.

    ``stage``: ``greeting`` (before the first message: the ``session`` check's codes), ``held`` (open and
    idle: the ``hold`` check's codes), ``echo`` (while messages went back and forth). ``idle_s``, for a
    held connection, is how long it was silent before it died: a 1006 at a known proxy idle timeout is
    ``hold.idle-timeout``, as ``all --hold`` reports it.
    """
    where = _(_STAGES[stage]) if stage in _STAGES else stage
    if stage == "held":
        if close_code is None:
            from lokin_doctor.checks.chain.hold import culprit

            who = culprit(idle_s) if idle_s is not None else None
            if who:
                return Finding(
                    HOLD_IDLE_TIMEOUT,
                    _(
                        "the connection was dropped without a close frame (1006) after {idle_s:.0f} s idle: matches {who}"
                    ).format(idle_s=idle_s, who=who),
                    _(
                        "raise the proxy's idle timeout (nginx: proxy_read_timeout 86400s;) or make the server ping more often than that"
                    ),
                )
            return Finding(
                HOLD_DROPPED,
                _("the server dropped the TCP connection {where} without a close frame (1006)").format(
                    where=where
                ),
                _(
                    "the server crashed, restarted or killed connections (memory, connection limits), or a proxy/NAT cut them: read the server's log at that time"
                ),
            )
        return Finding(
            HOLD_CLOSED_BY_SERVER,
            _("the server closed the connection {where} with close code {close_code}").format(
                where=where, close_code=close_code
            )
            + (f" ({close_reason})" if close_reason else ""),
            _(
                "read the server's log for why it closed (1001 going away = restart, 1008 policy, 1011 error, 1013 overloaded)"
            ),
        )
    if close_code is None:
        return Finding(
            SESSION_DROPPED,
            _("the server dropped the TCP connection {where} without a close frame (1006)").format(
                where=where
            ),
            _(
                "the server crashes or kills connections after the upgrade, or a proxy cuts them: read the server's log; check its memory and connection limits"
            ),
        )
    what = _("close code {close_code}").format(close_code=close_code) + (
        f" ({close_reason})" if close_reason else ""
    )
    if stage == "greeting":
        return Finding(
            SESSION_CLOSED_AT_ONCE,
            _("the server closed the connection right after the upgrade with {what}").format(what=what),
            _(
                "the server accepts the upgrade, then drops the client: read its log at close code {close_code} (1008 policy/auth, 1011 server error, 1013 try again later / overloaded)"
            ).format(close_code=close_code),
        )
    return Finding(
        SESSION_CLOSED,
        _("the server closed the connection {where} with {what}").format(where=where, what=what),
        _(
            "read the server's log for why it closed (1001 going away = restart, 1008 policy, 1009 message too big, 1011 error, 1013 overloaded)"
        ),
    )


_STAGES = {
    "greeting": N_("before its greeting"),
    "held": N_("while it was held open"),
    "echo": N_("during the echo round trips"),
    "open": N_("while it was open"),
}


def no_greeting_cause(timeout: float) -> Finding:
    return Finding(
        SESSION_NO_GREETING,
        _("no first message (greeting) from the server within {timeout:g} s of the upgrade").format(
            timeout=timeout
        ),
        _(
            "a LOK IN server sends {welcome} at once; a slow greeting means an overloaded event loop: check the server's CPU"
        ).format(welcome='{"type":"welcome",...}'),
    )


def no_echo_cause(timeout: float) -> Finding:
    return Finding(
        SESSION_EXPECT_MISMATCH,
        _("no echo of a sent message within {timeout:g} s").format(timeout=timeout),
        _("the server did not echo the message in time: check its CPU and log (does it echo?)"),
    )


def percentiles(values: Sequence[float] | Iterable[float]) -> dict[str, float | int | None]:
    """count, min, mean, p50, p95, p99, max (nearest-rank, so each is an observed value)."""
    data = sorted(values)
    n = len(data)
    if not n:
        return {"count": 0, "min": None, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}

    def rank(p: float) -> float:
        return data[max(0, min(n - 1, math.ceil(p / 100 * n) - 1))]

    return {
        "count": n,
        "min": round(data[0], 3),
        "mean": round(sum(data) / n, 3),
        "p50": round(rank(50), 3),
        "p95": round(rank(95), 3),
        "p99": round(rank(99), 3),
        "max": round(data[-1], 3),
    }


def resolve(host: str, port: int) -> list[str]:
    """The target's addresses in resolver order (IPv4 and IPv6), without duplicates."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ToolError(
            _("cannot resolve {host!r}: {error}").format(host=host, error=exc.strerror or exc)
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def require_loopback(host: str, addresses: list[str], allow_remote: bool, what: str) -> None:
    """Refuse a non-loopback target unless the user said --allow-remote."""
    if allow_remote:
        return
    remote = [a for a in addresses if not is_loopback(a)]
    if remote:
        # Name the address once: "10.0.0.5 is not ..." rather than "10.0.0.5 is not ... (10.0.0.5)".
        named = host if remote == [host.strip("[]")] else f"{host} ({', '.join(remote)})"
        raise ToolError(
            _(
                "{named} is not a loopback address: {what} only targets this machine unless you add --allow-remote (never point it at a production host by accident)"
            ).format(named=named, what=what)
        )


def pick_address(addresses: list[str], port: int, timeout: float = 1.0) -> str:
    """The first address that accepts a TCP connect (localhost may resolve to ::1 first while the server
    listens on 127.0.0.1 only); the first address when none does, so the failures say why."""
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect((address, port))
                return address
        except OSError:
            continue
    return addresses[0]


#: File descriptors kept for everything but the connections (stdio, the loop, logs, progress).
FD_RESERVE = 64


def raise_fd_limit(connections: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit up to the hard one; ToolError if ``connections`` cannot fit.

    Returns (soft, hard) after the change.
    """
    try:
        import resource
    except ImportError:  # not POSIX: nothing to raise
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + FD_RESERVE
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise ToolError(
            _(
                "{connections} connections need about {needed} file descriptors but this process may open at most {hard} (hard limit): raise it (ulimit -Hn as root, LimitNOFILE= in systemd, /etc/security/limits.conf) or use --connections {fewer} or fewer"
            ).format(connections=connections, needed=needed, hard=hard, fewer=max(1, hard - FD_RESERVE))
        )
    if soft != resource.RLIM_INFINITY and soft < needed:
        new_soft = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError) as exc:
            raise ToolError(
                _("cannot raise the open-file limit from {soft} to {new_soft}: {error}").format(
                    soft=soft, new_soft=new_soft, error=exc
                )
            ) from None
        soft = new_soft
    return soft, hard


def ephemeral_ports() -> int | None:
    """How many local ports one destination can use (Linux), None when unknown."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split()[:2])
        return high - low + 1
    except (OSError, ValueError):
        return None


def check_ephemeral_ports(connections: int) -> None:
    ports = ephemeral_ports()
    if ports is not None and connections > ports:
        raise ToolError(
            _(
                "{connections} connections to one address need {connections} local ports but net.ipv4.ip_local_port_range has {ports}: use fewer --connections or widen the range"
            ).format(connections=connections, ports=ports)
        )


def uvloop_factory(enabled: bool = True) -> Any:
    """``uvloop.new_event_loop`` when uvloop is installed and wanted, else None (asyncio's default)."""
    if not enabled or os.environ.get("LOKIN_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name(loop: Any) -> str:
    mod = type(loop).__module__
    return "uvloop" if mod.startswith("uvloop") else "asyncio"
