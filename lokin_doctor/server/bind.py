"""Why ``serve`` could not listen: one line a person can act on (the holder of the port, root for low ports)."""

from __future__ import annotations

import asyncio
import errno
import socket

from lokin_doctor.i18n import _
from lokin_doctor.server.config import ServerConfig
from lokin_doctor.server.logs import one_line


async def bind_error(cfg: ServerConfig, exc: OSError) -> str:
    """The message of the ServerStartError for a failed bind/listen on ``cfg.host:cfg.port``."""
    where = f"{cfg.host}:{cfg.port}"
    if isinstance(exc, socket.gaierror):
        return _(
            "cannot listen on --host {host!r}: {reason} "
            "(use an IP address of this machine, 127.0.0.1, or 0.0.0.0 for every interface)"
        ).format(host=cfg.host, reason=exc.strerror or exc)
    if exc.errno == errno.EADDRINUSE:
        holder = None
        try:
            from lokin_doctor.instruments.sysinfo import describe_holder

            holder = await asyncio.to_thread(describe_holder, cfg.port)
        except Exception:  # naming the holder is a bonus; the error itself must still be clear
            holder = None
        if holder:
            return _(
                "port {port} is already in use by {holder}; stop it or choose another port with --port"
            ).format(port=cfg.port, holder=holder)
        return _(
            "port {port} is already in use by another process (run as root to see which); "
            "stop it or choose another port with --port"
        ).format(port=cfg.port)
    if exc.errno in (errno.EACCES, errno.EPERM):
        if 0 < cfg.port < 1024:
            return _(
                "permission denied listening on {where}: ports below 1024 need root or "
                "CAP_NET_BIND_SERVICE; use --port 8080 behind a reverse proxy"
            ).format(where=where)
        return _("permission denied listening on {where}").format(where=where)
    if exc.errno == errno.EADDRNOTAVAIL:
        return _(
            "cannot listen on {where}: {host} is not an address of this machine "
            "(use 127.0.0.1, 0.0.0.0 or one of its interface addresses)"
        ).format(where=where, host=cfg.host)
    return _("cannot listen on {where}: {reason}").format(where=where, reason=exc.strerror or one_line(exc))
