"""What ``serve`` says when it starts: the text banner (or the JSON ``start`` event), its warnings, the ready line.

The text banner and its warnings are for a person and follow the language (``--lang``, ``LANG``); the JSON
event keeps its English keys and values, and the ``ready`` line stays as it is: supervisors and tests wait for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import sys
from typing import TYPE_CHECKING

from lokin_doctor import __version__
from lokin_doctor.i18n import _
from lokin_doctor.server.tls import certificate_summary

if TYPE_CHECKING:
    from lokin_doctor.server.app import LokinServer

#: Width of the label column in English ("Certificate: " is the longest); wider when a translation needs it.
LABEL_WIDTH = 13


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return _("{n} bytes").format(n=n)


def _seconds(value: float | None) -> str:
    return _("off") if value is None else f"{value:g} s"


def _warnings(server: LokinServer, local: bool) -> tuple[list[str], str | None]:
    cfg = server.config
    warnings: list[str] = []
    if not local and server.origins.any:
        warnings.append(
            _(
                "exposed on {host} without --allow-origin: any web site can open connections to this "
                "server from its visitors' browsers; add --allow-origin https://your-site"
            ).format(host=cfg.host)
        )
    if not local and not cfg.tls:
        warnings.append(
            _(
                "plain ws:// on a public interface: an https page needs wss://; put a TLS reverse proxy in "
                "front or start with --certfile/--keyfile"
            )
        )
    cert_text = None
    if cfg.certfile:
        cert_text, cert_warning = certificate_summary(cfg.certfile)
        if cert_warning:
            warnings.append(cert_warning)
    return warnings, cert_text


def announce(server: LokinServer) -> None:
    """Write the banner (text or JSON ``start``), its warnings, then the ``ready`` event."""
    cfg = server.config
    log = server.log
    local = all(_is_loopback(b.rsplit(":", 1)[0].strip("[]")) for b in server.bound)
    warnings, cert_text = _warnings(server, local)
    if log.fmt == "json":
        log.emit(
            "start",
            "LOK IN WebSocket server",
            server="lokin-doctor",
            version=__version__,
            url=server.url,
            bound=server.bound,
            started=server._started.isoformat(timespec="seconds"),
            pid=os.getpid(),
            tls=cfg.tls,
            certificate=cert_text,
            limits={
                "max_connections": cfg.max_connections,
                "max_per_ip": cfg.max_per_ip,
                "max_message_size": cfg.max_message_size,
                "open_timeout_s": cfg.open_timeout,
                "ping_interval_s": cfg.ping_interval,
                "ping_timeout_s": cfg.ping_timeout,
                "shutdown_timeout_s": cfg.shutdown_timeout,
                "max_fragments": cfg.max_fragments,
            },
            compression=cfg.compression,
            protocol=cfg.protocol,
            origins=list(server.origins.allowed) or "any",
            python=sys.version.split()[0],
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        for warning in warnings:
            log.emit("warning", warning, level="warning")
    else:
        for line in _text_lines(server, local, warnings, cert_text):
            log.write_line(line)
    log.emit("ready", "accepting WebSocket connections", url=server.url, port=server.port, pid=os.getpid())


def _text_lines(server: LokinServer, local: bool, warnings: list[str], cert_text: str | None) -> list[str]:
    cfg = server.config
    limits = _(
        "{max_connections} connections, {per_ip}, messages up to {size}, handshake timeout {open_timeout} s"
    ).format(
        max_connections=cfg.max_connections,
        per_ip=_("{n} per IP").format(n=cfg.max_per_ip) if cfg.max_per_ip else _("no per-IP cap"),
        size=_size(cfg.max_message_size),
        open_timeout=f"{cfg.open_timeout:g}",
    )
    if cfg.ping_interval is not None:
        keepalive = _("ping every {interval}, timeout {timeout}").format(
            interval=_seconds(cfg.ping_interval), timeout=_seconds(cfg.ping_timeout)
        )
    else:
        keepalive = _("off")
    rows: list[tuple[str, str]] = [
        (_("URL:"), server.url),
        (
            _("Listening:"),
            ", ".join(server.bound)
            + (_(" (loopback only)") if local else _(" (reachable from the network)")),
        ),
        (
            _("Test page:"),
            _("{url}   health: /health   metrics: /metrics").format(url=server.http_url),
        ),
        (
            _("Started:"),
            _("{started} (pid {pid})").format(
                started=server._started.strftime("%Y-%m-%d %H:%M:%S %z"), pid=os.getpid()
            ),
        ),
        (_("Limits:"), limits),
        (
            _("Keepalive:"),
            _("{keepalive}; {compression}; shutdown timeout {shutdown} s").format(
                keepalive=keepalive,
                compression=_("compression on") if cfg.compression else _("compression off"),
                shutdown=f"{cfg.shutdown_timeout:g}",
            ),
        ),
        (_("Origins:"), server.origins.describe()),
    ]
    if server.echo_only:
        rows.append(
            (_("Protocol:"), _("echo (every message sent back as it came; no welcome, no JSON handling)"))
        )
    if cert_text:
        rows.append((_("Certificate:"), cert_text))
    width = max(LABEL_WIDTH, *(len(label) + 1 for label, _value in rows))
    title = _("LOK IN WebSocket server - lokin-doctor {version}").format(version=__version__)
    rule = "+" + "-" * (len(title) + 6) + "+"
    lines = [rule, f"|   {title}   |", rule]
    lines += [f"  {label:<{width}}{value}" for label, value in rows]
    lines += [_("  WARNING: {warning}").format(warning=w) for w in warnings]
    return lines
