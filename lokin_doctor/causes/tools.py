"""Cause codes of the tools layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.TOOLS

LOAD_CLIENT_LIMIT = cause(
    "load.client-limit",
    L,
    N_(
        "the load client itself ran out of file descriptors or ephemeral ports (EMFILE, ENFILE, EADDRNOTAVAIL)"
    ),
    N_("use fewer --connections, raise ulimit -n, widen net.ipv4.ip_local_port_range"),
    doc="tools.md",
)
