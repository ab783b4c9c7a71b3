"""Parse what the user typed into a :class:`Target`; derive the URL a browser page would use.

Accepted: ``ws://``, ``wss://``, ``http://`` and ``https://`` URLs (http maps to ws, https to wss),
``host:port``, a bare ``host`` (port 8080, the LOK IN default) and a bare ``port`` (on localhost).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "ws://localhost:8080/"
DEFAULT_PORT = 8080
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
EXAMPLES = "ws://localhost:8080/, wss://example.com/ws, localhost:8080"


class TargetError(ValueError):
    """The user's target cannot be used; the message says what is wrong and what is valid."""


@dataclass(frozen=True)
class Target:
    scheme: str  # "ws" or "wss"
    host: str  # without brackets for IPv6
    port: int
    resource: str  # path plus query, at least "/"
    explicit_port: bool = True

    @property
    def secure(self) -> bool:
        return self.scheme == "wss"

    @property
    def host_for_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        default = 443 if self.secure else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host_for_url}{port}{self.resource}"

    @property
    def http_origin(self) -> str:
        """The Origin a page served from the same host would send."""
        scheme = "https" if self.secure else "http"
        default = 443 if self.secure else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{self.host_for_url}{port}"

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _check_host(host: str, raw: str) -> str:
    if not host:
        raise TargetError(f"no host in {raw!r}; a valid target looks like {EXAMPLES}")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.rstrip(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise TargetError(f"invalid host name {host!r}; a valid target looks like {EXAMPLES}") from None
    if len(ascii_name) > 253 or not all(_HOST_LABEL.match(label) for label in ascii_name.split(".")):
        raise TargetError(f"invalid host name {host!r}; a valid target looks like {EXAMPLES}")
    return host.lower()


def _check_port(text: str, raw: str) -> int:
    if not text.isdigit():
        raise TargetError(f"invalid port {text!r} in {raw!r}; a port is a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise TargetError(f"port {port} is out of range in {raw!r}; a port is a number from 1 to 65535")
    return port


def parse_target(raw: str) -> Target:
    """Turn user input into a Target, or raise :class:`TargetError` with a one-line reason."""
    text = raw.strip()
    if not text:
        raise TargetError(f"empty target; a valid target looks like {EXAMPLES}")
    if any(c.isspace() for c in text):
        raise TargetError(f"a target cannot contain spaces: {raw!r}; a valid target looks like {EXAMPLES}")
    if text.isdigit():
        return Target("ws", "localhost", _check_port(text, raw), "/")
    if "://" not in text:
        scheme_like = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!\d)", text)
        if scheme_like and not text.startswith("["):
            raise TargetError(
                f"unsupported scheme {scheme_like.group(1)!r} in {raw!r}; use ws://, wss://, http:// or https://"
            )
        text = "ws://" + text
        implicit_scheme = True
    else:
        implicit_scheme = False
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise TargetError(
            f"unsupported scheme {scheme + '://'!r} in {raw!r}; use ws://, wss://, http:// or https://"
        )
    if not rest or rest.startswith("/"):
        raise TargetError(f"no host in {raw!r}; a valid target looks like {EXAMPLES}")
    try:
        parts = urlsplit(text)
        netloc_port = parts.netloc.rpartition("@")[2]
        host = parts.hostname or ""
    except ValueError as exc:
        raise TargetError(f"malformed URL {raw!r} ({exc}); a valid target looks like {EXAMPLES}") from None
    if parts.fragment or "#" in text:
        raise TargetError(f"a WebSocket URL cannot have a #fragment: {raw!r}")
    if netloc_port.startswith("["):
        if "]" not in netloc_port:
            raise TargetError(f"malformed IPv6 address in {raw!r}; write it as ws://[::1]:8080/")
        port_text = netloc_port.partition("]")[2]
    elif netloc_port.count(":") > 1:
        raise TargetError(f"an IPv6 address must be in brackets in {raw!r}; write it as ws://[::1]:8080/")
    else:
        port_text = netloc_port.partition(":")[2] if ":" in netloc_port else ""
    port_text = port_text.lstrip(":") if port_text.startswith(":") else port_text
    host = _check_host(host, raw)
    ws_scheme = _SCHEMES[scheme]
    if port_text:
        port, explicit = _check_port(port_text, raw), True
    elif ":" in netloc_port.rpartition("]")[2]:
        raise TargetError(f"empty port in {raw!r}; a port is a number from 1 to 65535")
    elif implicit_scheme:
        port, explicit = DEFAULT_PORT, False
    else:
        port, explicit = (443 if ws_scheme == "wss" else 80), False
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return Target(ws_scheme, host, port, resource, explicit)


def page_websocket_url(page_url: str, path: str = "/ws") -> Target:
    """The URL the fixed LOK IN client derives from its page: same host, https -> wss.

    Mirrors script.js: on ``localhost`` the client uses ``localhost:8080``; elsewhere the page's host.
    """
    page = urlsplit(page_url.strip())
    if page.scheme not in ("http", "https") or not page.hostname:
        raise TargetError(f"invalid page URL {page_url!r}; a valid page URL looks like https://example.com/")
    scheme = "wss" if page.scheme == "https" else "ws"
    if page.hostname == "localhost":
        return parse_target(f"{scheme}://localhost:8080/")
    return parse_target(f"{scheme}://{page.netloc.rpartition('@')[2]}{path}")
