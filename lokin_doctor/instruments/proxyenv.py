"""Forward proxies, sans I/O: which way a connection goes (direct or through which proxy, and why),
the CONNECT request, and the reading of the proxy's answer.

The choice follows what curl, requests and websockets 15+ do (websockets' ``get_proxy`` reads the same
variables through urllib):

* ``--no-proxy`` forces a direct connection; ``--proxy URL`` names the proxy; otherwise the environment:
  ``wss://`` uses ``https_proxy`` / ``HTTPS_PROXY``, ``ws://`` uses ``http_proxy`` / ``HTTP_PROXY``, and
  both fall back to ``all_proxy`` / ``ALL_PROXY`` (the lower-case name wins when both are set; an empty
  value counts as unset). A value without a scheme (``proxy:3128``) is ``http://``, as curl reads it.
* ``no_proxy`` / ``NO_PROXY`` (curl's rules, plus requests' CIDR blocks) bypasses the proxy, for
  ``--proxy`` too (curl does the same): a comma-separated list of ``*`` (everything), host names that
  match themselves and their subdomains (a leading ``.`` or ``*.`` is ignored), IP addresses, CIDR blocks
  (``10.0.0.0/8``, for IP hosts), each optionally with ``:port`` (then only that port bypasses).
  Host names are matched as written in the URL: no DNS look-up (``localhost`` does not match
  ``127.0.0.1``).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

#: Schemes a proxy URL may have.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


class ProxyUrlError(ValueError):
    """A proxy URL that cannot be used; the message says why and what is valid."""


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: where it is, its credentials, and where the doctor found it."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    #: ``--proxy`` or the environment variable it came from (``HTTPS_PROXY``...).
    source: str = "--proxy"

    @property
    def display(self) -> str:
        """``host:port`` (IPv6 in brackets), how the report names the proxy."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's URL, its password replaced by ``***``."""
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{self.scheme}://{user}{self.display}"


@dataclass(frozen=True)
class Route:
    """Which way the connections of a run go.

    ``proxy`` is None for a direct connection; ``why`` says what decided it: ``--no-proxy``, ``no proxy
    set``, ``NO_PROXY`` (``bypass`` is the matching entry), or the proxy's source.
    """

    proxy: Proxy | None
    why: str
    bypass: str | None = None
    #: A proxy variable that was set but cannot be used (its name and the problem).
    invalid: tuple[str, str] | None = None

    @property
    def direct(self) -> bool:
        return self.proxy is None


def parse_proxy_url(url: str, *, source: str = "--proxy", scheme_required: bool = True) -> Proxy:
    """A :class:`Proxy` from ``http://[user:pass@]host:port`` (https://, socks5://, socks5h:// too).

    ``scheme_required`` False (environment values) reads ``host:port`` as ``http://host:port``.
    """
    text = url.strip()
    if not text:
        raise ProxyUrlError("empty proxy URL")
    if "://" not in text:
        if scheme_required:
            raise ProxyUrlError(f"{url!r} has no scheme")
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProxyUrlError(f"{url!r} is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ProxyUrlError(f"{url!r}: scheme {scheme}:// is not a supported proxy")
    if not parts.hostname:
        raise ProxyUrlError(f"{url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyUrlError(f"{url!r}: a proxy URL has no path, query or fragment")
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme, 1080)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        password = ""
    return Proxy(scheme, parts.hostname.lower(), port, username, password, source)


def _env(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The (name, value) of a proxy variable, lower-case first; empty values are unset."""
    for key in (name.lower(), name.upper()):
        value = environ.get(key)
        if value is not None and value.strip():
            return key, value.strip()
    return None


def _split_host_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def no_proxy_match(host: str, port: int, no_proxy: str) -> str | None:
    """The NO_PROXY entry that makes ``host:port`` bypass the proxy, or None."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return raw.strip()
        name, entry_port = _split_host_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in name:
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if ip is not None and ip.version == network.version and ip in network:
                return raw.strip()
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            if ip is not None and ip == entry_ip:
                return raw.strip()
            continue
        name = name.removeprefix("*").removeprefix(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return raw.strip()
    return None


def choose(
    host: str,
    port: int,
    secure: bool,
    environ: Mapping[str, str],
    *,
    explicit: str | None = None,
    disabled: bool = False,
) -> Route:
    """The route to ``host:port`` (``secure``: wss://) under these settings and variables."""
    if disabled:
        return Route(None, "--no-proxy")
    proxy: Proxy | None = None
    if explicit is not None:
        proxy = parse_proxy_url(explicit)
    else:
        names = ("https_proxy", "all_proxy") if secure else ("http_proxy", "all_proxy")
        for name in names:
            found = _env(environ, name)
            if found is None:
                continue
            key, value = found
            try:
                proxy = parse_proxy_url(value, source=key, scheme_required=False)
            except ProxyUrlError as exc:
                return Route(None, "invalid", invalid=(key, str(exc)))
            break
    if proxy is None:
        return Route(None, "no proxy set")
    no_proxy = _env(environ, "no_proxy")
    if no_proxy is not None:
        entry = no_proxy_match(host, port, no_proxy[1])
        if entry is not None:
            return Route(None, no_proxy[0], bypass=entry)
    return Route(proxy, proxy.source)


def authority(host: str, port: int) -> str:
    """``host:port`` as a CONNECT request names it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    """The CONNECT request for ``host:port``, with Basic credentials when the proxy URL has them."""
    target = authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", "User-Agent: lokin-doctor"]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join([*lines, "", ""])).encode("utf-8")


@dataclass(frozen=True)
class Challenge:
    """One ``Proxy-Authenticate`` challenge: its scheme and realm."""

    scheme: str
    realm: str | None

    def __str__(self) -> str:
        return f'{self.scheme} realm="{self.realm}"' if self.realm is not None else self.scheme


def challenges(values: list[str]) -> list[Challenge]:
    """The schemes and realms of ``Proxy-Authenticate`` values (``Basic realm="tinyproxy"``...)."""
    out: list[Challenge] = []
    for value in values:
        for m in re.finditer(r'([A-Za-z][\w-]*)((?:\s+[\w-]+\s*=\s*(?:"[^"]*"|[^,\s]*)\s*,?)*)', value):
            params = m.group(2) or ""
            realm = re.search(r'realm\s*=\s*"([^"]*)"', params) or re.search(r"realm\s*=\s*([^,\s]+)", params)
            out.append(Challenge(m.group(1), realm.group(1) if realm else None))
    return out


@dataclass(frozen=True)
class ProxyAnswer:
    """A proxy's answer to CONNECT."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def status_line(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip()

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def challenges(self) -> list[Challenge]:
        return challenges(self.header_values("proxy-authenticate"))

    @property
    def software(self) -> str | None:
        """What the proxy says it is (``Server``, else ``Via``)."""
        return self.header("server") or self.header("via")

    def text(self, limit: int = 300) -> str:
        """The start of the refusal page as text: its ``<title>`` or first line."""
        body = self.body[:4096].decode("utf-8", "replace")
        title = re.search(r"<title>\s*(.*?)\s*</title>", body, re.I | re.S)
        if title:
            return title.group(1)[:limit]
        heading = re.search(r"<h1>\s*(.*?)\s*</h1>", body, re.I | re.S)
        if heading:
            return heading.group(1)[:limit]
        return re.sub(r"<[^>]+>", " ", body).strip().split("\n")[0][:limit]

    def evidence(self) -> dict[str, object]:
        keep = ("server", "via", "proxy-authenticate", "content-type", "x-squid-error", "proxy-status")
        ev: dict[str, object] = {"status_line": self.status_line}
        headers = {k: v for k, v in self.headers if k.lower() in keep}
        if headers:
            ev["headers"] = headers
        words = self.text()
        if words:
            ev["says"] = words
        return ev


def parse_connect_answer(data: bytes) -> ProxyAnswer | None:
    """The proxy's answer from the bytes read (None until a whole head is there, or when not HTTP)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip():
            headers.append((k.strip(), v.strip()))
    return ProxyAnswer(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body)


def proxy_ssl_context() -> ssl.SSLContext:
    """TLS with an https:// proxy: the system's CAs, as curl does."""
    return ssl.create_default_context()


#: The proxy variables worth showing in a report (their values with passwords hidden).
ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def proxy_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables set, passwords hidden (for the report's evidence)."""
    out: dict[str, str] = {}
    for name in ENV_NAMES:
        for key in (name, name.upper()):
            value = environ.get(key)
            if value:
                out[key] = re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", value)
    return out
