"""A small HTTP/1.1 GET over asyncio streams (TLS for https), bounded by a deadline.

Enough to read a page's status, headers and the start of its body (CSP headers and ``<meta>`` tags);
``Connection: close``, no keep-alive, no compression, chunked bodies decoded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

MAX_BODY = 256 * 1024
MAX_REDIRECTS = 3


class FetchError(Exception):
    """The page could not be fetched; the message says why, in words."""


@dataclass
class Page:
    url: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    address: str = ""
    redirects: list[str] = field(default_factory=list)

    def header_values(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]


Resolver = Callable[[str], Awaitable[list[str]]]


async def system_resolve(host: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    out: list[str] = []
    for *_, sockaddr in infos:
        if str(sockaddr[0]) not in out:
            out.append(str(sockaddr[0]))
    return out


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    rest = data
    while rest:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


async def _get_once(url: str, deadline: float, ssl_context: ssl.SSLContext | None, resolve: Resolver) -> Page:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"not an http(s) URL: {url}")
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        async with asyncio.timeout_at(deadline):
            addresses = await resolve(host)
    except TimeoutError:
        raise FetchError(f"resolving {host} took longer than the deadline") from None
    except OSError as exc:
        raise FetchError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    if not addresses:
        raise FetchError(f"{host} has no address")
    address = addresses[0]
    use_ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
    loop = asyncio.get_running_loop()
    host_header = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: lokin-doctor\r\n"
        "Accept: text/html,*/*;q=0.8\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=use_ssl,
                server_hostname=host if use_ssl else None,
                ssl_handshake_timeout=max(0.01, deadline - loop.time()) if use_ssl else None,
            )
    except TimeoutError:
        raise FetchError(f"no answer from {address}:{port} within the deadline") from None
    except ssl.SSLCertVerificationError as exc:
        raise FetchError(f"the page's certificate is rejected: {exc.verify_message}") from None
    except ssl.SSLError as exc:
        raise FetchError(f"TLS failed with {address}:{port}: {exc.reason or exc}") from None
    except OSError as exc:
        raise FetchError(f"cannot connect to {address}:{port}: {exc.strerror or exc}") from None
    data = bytearray()
    try:
        writer.write(request)
        async with asyncio.timeout_at(deadline):
            while len(data) < MAX_BODY:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0 and _complete(bytes(data), head_end):
                    break
    except TimeoutError:
        if b"\r\n\r\n" not in data:
            raise FetchError(f"{address}:{port} sent no complete HTTP reply within the deadline") from None
    except (OSError, ssl.SSLError) as exc:
        if b"\r\n\r\n" not in data:
            raise FetchError(f"{address}:{port} closed the connection: {exc}") from None
    finally:
        writer.close()
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    if not sep:
        raise FetchError(
            f"{address}:{port} did not answer with HTTP" + (f": {bytes(data[:40])!r}" if data else "")
        )
    lines = head.decode("latin-1").split("\r\n")
    status_parts = lines[0].split(" ", 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/") or not status_parts[1].isdigit():
        raise FetchError(f"{address}:{port} did not answer with HTTP: {lines[0][:60]!r}")
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    page = Page(
        url, int(status_parts[1]), status_parts[2] if len(status_parts) > 2 else "", headers, body, address
    )
    if any(v.lower() == "chunked" for v in page.header_values("transfer-encoding")):
        page.body = _dechunk(body)
    return page


def _complete(data: bytes, head_end: int) -> bool:
    head = data[:head_end].decode("latin-1").lower()
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip() == "content-length" and v.strip().isdigit():
            return len(data) - head_end - 4 >= int(v.strip())
    return False


async def get(
    url: str,
    *,
    deadline: float,
    ssl_context: ssl.SSLContext | None = None,
    resolve: Resolver = system_resolve,
) -> Page:
    """GET ``url`` following up to :data:`MAX_REDIRECTS` redirects; raise :class:`FetchError`."""
    redirects: list[str] = []
    current = url
    while True:
        page = await _get_once(current, deadline, ssl_context, resolve)
        location = page.header_values("location")
        if page.status in (301, 302, 303, 307, 308) and location and len(redirects) < MAX_REDIRECTS:
            redirects.append(current)
            current = urljoin(current, location[0])
            continue
        page.redirects = redirects
        return page
