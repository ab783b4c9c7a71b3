"""Open a byte stream to the target: directly, or through the forward proxy of the run's route.

:func:`open_stream` is what the checks use instead of :func:`asyncio.open_connection`: the same
arguments and exceptions when the route is direct; through an HTTP(S) proxy it connects to the proxy,
sends ``CONNECT host:port`` and, on a 2xx, runs TLS with the target inside the tunnel (SOCKS5: the
RFC 1928 CONNECT). A proxy that refuses raises :class:`ProxyError`, whose :attr:`ProxyError.answer`
and :attr:`ProxyError.kind` the ``forward`` check turns into a cause. :func:`http_get` is a bounded
GET over such a stream (the Socket.IO polling probe).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lokin_doctor.i18n import _

if TYPE_CHECKING:
    from lokin_doctor.instruments.proxyenv import ProxyAnswer, Route

#: The largest CONNECT answer head read from a proxy.
MAX_PROXY_HEAD = 64 * 1024
#: The largest body kept from a proxy's refusal page or a GET answer.
MAX_BODY = 64 * 1024


class ProxyError(OSError):
    """The forward proxy did not give a tunnel.

    ``kind``: ``refused`` / ``timeout`` / ``unreachable`` / ``error`` (connecting to the proxy itself),
    ``tls`` (TLS with an https:// proxy), ``status`` (it answered CONNECT with a non-2xx: see
    ``answer``), ``closed`` (it closed without an answer), ``not-http`` (its answer is not HTTP),
    ``socks`` (a SOCKS5 refusal; ``detail`` says which).
    """

    def __init__(self, kind: str, detail: str, answer: ProxyAnswer | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.answer = answer


@dataclass
class Tunnel:
    """Timings of the last tunnel: connecting to the proxy, then its answer to CONNECT."""

    proxy_connect_ms: float | None = None
    connect_answer_ms: float | None = None
    answer: ProxyAnswer | None = None
    extra: dict[str, object] = field(default_factory=dict)


async def _connect_proxy(route: Route, deadline: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP to the proxy, then TLS with an https:// proxy: two steps, so a proxy that accepts TCP but does
    not speak TLS (an http:// proxy named https://) is not read as a proxy that is down."""
    from lokin_doctor.instruments import proxyenv

    proxy = route.proxy
    assert proxy is not None
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    except TimeoutError:
        raise ProxyError(
            "timeout", _("no answer from the proxy {proxy} within the deadline").format(proxy=proxy.display)
        ) from None
    except ConnectionRefusedError:
        raise ProxyError(
            "refused", _("the proxy {proxy} refused the connection").format(proxy=proxy.display)
        ) from None
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            kind = "unresolved"
        else:
            kind = "unreachable" if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
        raise ProxyError(
            kind,
            _("cannot connect to the proxy {proxy}: {error}").format(
                proxy=proxy.display, error=exc.strerror or str(exc) or type(exc).__name__
            ),
        ) from None
    if proxy.scheme != "https":
        return reader, writer
    try:
        async with asyncio.timeout_at(deadline):
            await writer.start_tls(
                proxyenv.proxy_ssl_context(),
                server_hostname=proxy.host,
                # past the deadline: the deadline's TimeoutError is what says "no TLS answer"
                ssl_handshake_timeout=max(0.01, deadline - loop.time()) + 1.0,
            )
    except ssl.SSLError as exc:
        writer.close()
        raise ProxyError(
            "tls",
            _("TLS with the proxy {proxy} failed: {error}").format(
                proxy=proxy.display, error=exc.reason or exc
            ),
        ) from None
    except (TimeoutError, OSError) as exc:
        writer.close()
        # asyncio's TLS says nothing more when the peer hangs up on the ClientHello or never answers it.
        what = (
            _("it accepted TCP but sent no TLS answer within the deadline")
            if isinstance(exc, TimeoutError)
            else _("it closed the connection during the TLS handshake")
        )
        raise ProxyError(
            "tls",
            _(
                "TLS with the proxy {proxy} failed: {what}; does it speak TLS? most proxies are http://"
            ).format(proxy=proxy.display, what=what),
        ) from None
    return reader, writer


async def _http_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    route: Route,
    host: str,
    port: int,
    deadline: float,
    tunnel: Tunnel,
) -> None:
    from lokin_doctor.instruments import proxyenv

    assert route.proxy is not None
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    writer.write(proxyenv.connect_request(route.proxy, host, port))
    data = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            while b"\r\n\r\n" not in data and len(data) < MAX_PROXY_HEAD:
                chunk = await reader.read(4096)
                if not chunk:
                    break
                data += chunk
            head_end = data.find(b"\r\n\r\n")
            answer = proxyenv.parse_connect_answer(bytes(data)) if head_end >= 0 else None
            if answer is not None and not answer.ok:
                # A refusal page: read its body while it comes (bounded), for the proxy's own words.
                want = answer.content_length if answer.content_length is not None else MAX_BODY
                while len(data) - head_end - 4 < min(want, MAX_BODY):
                    try:
                        async with asyncio.timeout_at(min(deadline, loop.time() + 0.3)):
                            chunk = await reader.read(4096)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    data += chunk
                answer = proxyenv.parse_connect_answer(bytes(data))
    except TimeoutError:
        if b"\r\n\r\n" not in data:
            raise ProxyError(
                "timeout",
                _("the proxy {proxy} did not answer CONNECT {host}:{port} within the deadline").format(
                    proxy=route.proxy.display, host=host, port=port
                ),
            ) from None
    except (ConnectionError, OSError) as exc:
        if b"\r\n\r\n" not in data:
            raise ProxyError(
                "closed",
                _("the proxy {proxy} closed the connection on CONNECT: {error}").format(
                    proxy=route.proxy.display, error=exc
                ),
            ) from None
    tunnel.connect_answer_ms = (loop.time() - t0) * 1000
    answer = proxyenv.parse_connect_answer(bytes(data))
    if answer is None:
        if not data:
            raise ProxyError(
                "closed",
                _("the proxy {proxy} closed the connection without answering CONNECT").format(
                    proxy=route.proxy.display
                ),
            )
        raise ProxyError(
            "not-http",
            _("the proxy {proxy} answered CONNECT with {first!r}").format(
                proxy=route.proxy.display, first=bytes(data[:40])
            ),
        )
    tunnel.answer = answer
    if not answer.ok:
        raise ProxyError(
            "status",
            _("the proxy {proxy} answered {line}").format(proxy=route.proxy.display, line=answer.status_line),
            answer,
        )


_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


async def _socks5_connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    route: Route,
    host: str,
    port: int,
    deadline: float,
    tunnel: Tunnel,
) -> None:
    """RFC 1928 CONNECT (and RFC 1929 user/password when the proxy URL has credentials)."""
    proxy = route.proxy
    assert proxy is not None
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    try:
        async with asyncio.timeout_at(deadline):
            writer.write(b"\x05" + bytes([len(methods)]) + methods)
            ver, method = await reader.readexactly(2)
            if ver != 5:
                raise ProxyError(
                    "not-http", _("the proxy {proxy} does not speak SOCKS5").format(proxy=proxy.display)
                )
            if method == 0xFF:
                raise ProxyError(
                    "socks-auth",
                    _("the SOCKS5 proxy {proxy} accepts none of the offered methods{required}").format(
                        proxy=proxy.display,
                        required=_(" (credentials required)") if proxy.username is None else "",
                    ),
                )
            if method == 2:
                user = (proxy.username or "").encode()
                password = (proxy.password or "").encode()
                writer.write(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
                __, status = await reader.readexactly(2)
                if status != 0:
                    raise ProxyError(
                        "socks-auth",
                        _("the SOCKS5 proxy {proxy} rejected the credentials").format(proxy=proxy.display),
                    )
            try:
                ip = ipaddress.ip_address(host)
                addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
            except ValueError:
                name = host.encode("idna")
                addr = b"\x03" + bytes([len(name)]) + name
            writer.write(b"\x05\x01\x00" + addr + struct.pack(">H", port))
            ver, rep, __, atyp = await reader.readexactly(4)
            size = {1: 4, 4: 16}.get(atyp)
            if size is None:
                size = (await reader.readexactly(1))[0]
            await reader.readexactly(size + 2)
    except TimeoutError:
        raise ProxyError(
            "timeout",
            _("the SOCKS5 proxy {proxy} did not answer within the deadline").format(proxy=proxy.display),
        ) from None
    except asyncio.IncompleteReadError:
        raise ProxyError(
            "closed", _("the SOCKS5 proxy {proxy} closed the connection").format(proxy=proxy.display)
        ) from None
    tunnel.connect_answer_ms = (loop.time() - t0) * 1000
    if rep != 0:
        raise ProxyError(
            "socks",
            _("the SOCKS5 proxy {proxy} refused CONNECT {host}:{port}: {reply}").format(
                proxy=proxy.display, host=host, port=port, reply=_SOCKS_REPLIES.get(rep, f"reply {rep}")
            ),
        )


async def open_stream(
    host: str,
    port: int,
    *,
    deadline: float,
    address: str | None = None,
    route: Route | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    tunnel: Tunnel | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to ``host:port`` (TLS with ``ssl_context``), bounded by ``deadline``.

    Direct (no route, or a direct one): :func:`asyncio.open_connection` to ``address`` (default
    ``host``), raising what it raises. Through a proxy: CONNECT ``host:port`` (the proxy resolves the
    name, as curl and browsers let it), :class:`ProxyError` when the proxy refuses; TLS errors with the
    target raise :class:`ssl.SSLError` as a direct connection would.
    """
    loop = asyncio.get_running_loop()
    tls_timeout = max(0.01, deadline - loop.time()) if ssl_context else None
    if route is None or route.proxy is None:
        async with asyncio.timeout_at(deadline):
            return await asyncio.open_connection(
                address or host,
                port,
                ssl=ssl_context,
                server_hostname=(server_hostname or host) if ssl_context else None,
                ssl_handshake_timeout=tls_timeout,
            )
    tunnel = tunnel if tunnel is not None else Tunnel()
    t0 = loop.time()
    reader, writer = await _connect_proxy(route, deadline)
    tunnel.proxy_connect_ms = (loop.time() - t0) * 1000
    try:
        if route.proxy.scheme.startswith("socks"):
            await _socks5_connect(reader, writer, route, host, port, deadline, tunnel)
        else:
            await _http_connect(reader, writer, route, host, port, deadline, tunnel)
        if ssl_context is not None:
            async with asyncio.timeout_at(deadline):
                await writer.start_tls(
                    ssl_context,
                    server_hostname=server_hostname or host,
                    ssl_handshake_timeout=max(0.01, deadline - loop.time()),
                )
    except BaseException:
        writer.close()
        raise
    return reader, writer


@dataclass
class Answer:
    """A GET's answer: status, reason, headers, the start of the body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


async def http_get(
    host: str,
    port: int,
    resource: str,
    *,
    deadline: float,
    address: str | None = None,
    route: Route | None = None,
    ssl_context: ssl.SSLContext | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    method: str = "GET",
    body: bytes | None = None,
) -> Answer:
    """``GET resource`` (``Connection: close``; ``method``/``body`` for a POST of a small text body),
    the answer's body bounded by :data:`MAX_BODY`; OSError / TimeoutError / ssl.SSLError /
    :class:`ProxyError` when no HTTP answer came."""
    from lokin_doctor.instruments.httpget import _complete, _dechunk
    from lokin_doctor.instruments.observer import parse_head

    reader, writer = await open_stream(
        host, port, deadline=deadline, address=address, route=route, ssl_context=ssl_context
    )
    default = 443 if ssl_context else 80
    host_header = (f"[{host}]" if ":" in host else host) + ("" if port == default else f":{port}")
    lines = [
        f"{method} {resource} HTTP/1.1",
        f"Host: {host_header}",
        "User-Agent: lokin-doctor",
        "Accept: */*",
    ]
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None:
        lines += ["Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(body)}"]
    lines += ["Accept-Encoding: identity", "Connection: close", "", ""]
    data = bytearray()
    try:
        writer.write("\r\n".join(lines).encode("latin-1") + (body or b""))
        async with asyncio.timeout_at(deadline):
            while len(data) < MAX_BODY:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
                end = data.find(b"\r\n\r\n")
                if end >= 0 and (_complete(bytes(data), end) or data.endswith(b"0\r\n\r\n")):
                    break
    except (TimeoutError, OSError, ssl.SSLError):
        if b"\r\n\r\n" not in data:
            raise
    finally:
        writer.close()
    parsed = parse_head(bytes(data))
    if parsed is None:
        raise OSError(f"no HTTP answer: {bytes(data[:40])!r}")
    status, reason, head, body = parsed
    answer = Answer(status, reason, head, body)
    if (answer.header("transfer-encoding") or "").lower() == "chunked":
        answer.body = _dechunk(body)
    return answer
