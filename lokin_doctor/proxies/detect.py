"""Which proxy a configuration file is written for (``--proxy-config`` validation, before any traffic)."""

from __future__ import annotations


def recognise(path: str) -> str | None:
    """``haproxy``, ``apache`` or ``caddy`` when ``path`` reads as that proxy's configuration, else None."""
    from lokin_doctor.proxies.apache.reader import READER as APACHE
    from lokin_doctor.proxies.caddy.reader import READER as CADDY
    from lokin_doctor.proxies.haproxy.reader import READER as HAPROXY

    for kind, reader in (("caddy", CADDY), ("apache", APACHE), ("haproxy", HAPROXY)):
        if reader.recognise(path):
            return kind
    return None
