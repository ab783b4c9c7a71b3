"""The Origin allow-list of ``serve --allow-origin`` (standard library only: the CLI validates with it).

Browsers always send ``Origin`` on a WebSocket handshake, and that header is what stops a
foreign web page from opening connections to this server with its visitors' browsers
(cross-site WebSocket hijacking). Clients that are not browsers (curl, websocat, the doctor,
a backend) send no Origin at all; they cannot be used for hijacking, so a missing Origin is
accepted even with an allow-list.
"""

from __future__ import annotations

import re

__all__ = ["OriginPolicy", "normalize_origin", "origin_problem"]

# scheme://host[:port], no path; "null" is what a page opened from file:// sends.
_ORIGIN_RE = re.compile(r"^[a-z][a-z0-9+.-]*://(\*\.)?[^/\s*?#@]+$")


def normalize_origin(origin: str) -> str:
    """Lower-case, no surrounding spaces, no trailing slash: how browsers serialize an origin."""
    return origin.strip().rstrip("/").lower()


def origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not a usable ``--allow-origin`` value, or None when it is fine."""
    value = normalize_origin(origin)
    if value in ("*", "null"):
        return None
    if not _ORIGIN_RE.match(value):
        from lokin_doctor.i18n import _

        return _(
            "{origin!r} is not an origin: write scheme://host[:port] with no path, e.g. https://lokin.app, http://localhost:8080, https://*.lokin.app, or null for file:// pages"
        ).format(origin=origin)
    return None


class OriginPolicy:
    """Decides whether a handshake's ``Origin`` is acceptable.

    Args:
        allowed: Exact origins, ``https://*.example.com`` wildcards (subdomains only), ``null``,
            or ``*`` for any. Empty means any origin (the original server.js behaviour).
    """

    def __init__(self, allowed: tuple[str, ...] = ()) -> None:
        self.allowed = tuple(normalize_origin(o) for o in allowed)
        self._exact = {o for o in self.allowed if "*" not in o}
        self._patterns = [
            re.compile(re.escape(o).replace(r"\*", r"[a-z0-9-]+(?:\.[a-z0-9-]+)*"))
            for o in self.allowed
            if "*" in o and o != "*"
        ]
        self.any = not self.allowed or "*" in self.allowed

    def allows(self, origin: str | None) -> bool:
        """Whether a handshake with this Origin header (None: no header) is accepted."""
        if self.any or origin is None:
            return True
        value = normalize_origin(origin)
        return value in self._exact or any(p.fullmatch(value) for p in self._patterns)

    def describe(self) -> str:
        """One line for the banner."""
        from lokin_doctor.i18n import _

        if self.any:
            return _("any origin (no --allow-origin)")
        return _("only {origins} (requests without Origin, i.e. non-browser clients, too)").format(
            origins=", ".join(self.allowed)
        )
