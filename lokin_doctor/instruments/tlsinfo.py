"""TLS probing and certificate reading for the ``tls`` check (and anyone who needs a served chain).

:func:`probe` makes one TLS connection (no HTTP) bounded by a deadline and keeps what a diagnosis
needs: the verify error with its OpenSSL code, or the version, cipher, ALPN and the chain **as the
server sent it**. Python 3.11 has no public API for the served chain; ``_ssl._SSLSocket`` has had
``get_unverified_chain()`` privately since 3.10 (public on ``SSLObject`` from 3.13). We use the public
method when it exists, then the private one, and fall back to the leaf alone
(``getpeercert(binary_form=True)``), so a Python without either still works, with less evidence.

Certificates are parsed with ``cryptography``; nothing here verifies anything itself except the
leaf's names and dates, which we read to say *what else* is wrong next to OpenSSL's first error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lokin_doctor.i18n import _

if TYPE_CHECKING:
    from lokin_doctor.instruments.proxyenv import Route

#: OpenSSL X509_V_ERR_* codes the tls check names.
V_UNABLE_TO_GET_ISSUER_CERT = 2
V_CERT_NOT_YET_VALID = 9
V_CERT_HAS_EXPIRED = 10
V_DEPTH_ZERO_SELF_SIGNED_CERT = 18
V_SELF_SIGNED_CERT_IN_CHAIN = 19
V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
V_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
V_HOSTNAME_MISMATCH = 62
V_IP_ADDRESS_MISMATCH = 64
#: EE key too small, CA key too small, CA md too weak: a certificate below the security level.
V_TOO_WEAK = (66, 67, 68)

#: ``_ssl.ENCODING_DER``, for the private ``Certificate.public_bytes`` of Python < 3.13.
_ENCODING_DER = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)


@dataclass
class TlsProbe:
    """One TLS handshake attempt.

    ``kind``: ``ok``, ``verify`` (certificate rejected: see ``verify_code``), ``alpn`` (the server
    sent no_application_protocol), ``unrecognized-name`` (the server sent unrecognized_name: it serves
    nothing for the SNI sent, or none), ``wrong-version`` (the reply is not TLS: often plain HTTP),
    ``eof`` (closed during the handshake), ``reset``, ``timeout``, ``refused``, ``error``.
    """

    kind: str
    error: str | None = None
    verify_code: int | None = None
    verify_message: str | None = None
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    chain: list[bytes] = field(default_factory=list)
    ms: float | None = None
    #: The server sent a CertificateRequest (it wants, maybe requires, a client certificate).
    cert_requested: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


#: TLS record content type "handshake" and handshake message type "certificate_request".
_HANDSHAKE, _CERTIFICATE_REQUEST = 22, 13


def watch_cert_requests(ctx: ssl.SSLContext) -> None:
    """Note on ``ctx`` (and on each connection) when a server sends a CertificateRequest.

    Uses ``SSLContext._msg_callback`` (CPython's TLS message tracing hook, private but present since
    3.8): it is the only way to see that the server asked for a client certificate, which in TLS 1.3
    happens inside a handshake that then *succeeds* on the client side.
    """
    ctx._lokin_cert_requested = False  # type: ignore[attr-defined]

    def callback(
        conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: Any
    ) -> None:
        if direction == "read" and int(content_type) == _HANDSHAKE and int(msg_type) == _CERTIFICATE_REQUEST:
            ctx._lokin_cert_requested = True  # type: ignore[attr-defined]
            try:
                _REQUESTED.add(conn)
            except TypeError:
                pass

    try:
        ctx._msg_callback = callback  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass


def cert_requested(ctx: ssl.SSLContext | None = None, sslobj: Any = None) -> bool:
    """Whether a server asked for a client certificate: on this connection, or on any of ``ctx``'s."""
    if sslobj is not None:
        try:
            if sslobj in _REQUESTED:
                return True
        except TypeError:
            pass
    return bool(getattr(ctx, "_lokin_cert_requested", False))


_REQUESTED: weakref.WeakSet[Any] = weakref.WeakSet()


def sni_for(host: str) -> str | None:
    """The server name a TLS client sends for ``host``: none for an IP address (RFC 6066 3 forbids
    literal addresses in SNI; Python, browsers and curl send nothing), else the name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.rstrip(".")
    return None


def load_client_cert(ctx: ssl.SSLContext, cert: str | None, key: str | None) -> None:
    if cert:
        ctx.load_cert_chain(cert, key)


def legacy_context() -> ssl.SSLContext:
    """A non-verifying context that offers every protocol version and cipher this OpenSSL has, to learn
    what an old or narrow server does speak (never used for the verdict's own connection)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def offered_versions(ctx: ssl.SSLContext) -> str:
    """``TLSv1.2-TLSv1.3``: the versions a context offers (OpenSSL's defaults when unset)."""
    low = ctx.minimum_version
    high = ctx.maximum_version
    names = {
        ssl.TLSVersion.MINIMUM_SUPPORTED: "TLSv1.2",
        ssl.TLSVersion.MAXIMUM_SUPPORTED: "TLSv1.3",
    }
    lo = names.get(low, getattr(low, "name", str(low)).replace("_", "."))
    hi = names.get(high, getattr(high, "name", str(high)).replace("_", "."))
    return lo if lo == hi else f"{lo}-{hi}"


def client_context(
    ca_file: str | None,
    *,
    verify: bool,
    alpn: list[str] | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    """A client context: the system CAs plus ``ca_file`` when ``verify``, else no verification at all;
    with ``client_cert`` it offers that certificate (mutual TLS)."""
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        if ca_file:
            try:
                ctx.load_default_certs()
            except ssl.SSLError:
                pass
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn or ["http/1.1"])
    load_client_cert(ctx, client_cert, client_key)
    watch_cert_requests(ctx)
    return ctx


def served_chain(sslobj: Any) -> list[bytes]:
    """The certificates the server sent (DER, leaf first), as far as this Python can tell."""
    getter = getattr(sslobj, "get_unverified_chain", None)  # Python >= 3.13
    if getter is None:
        getter = getattr(getattr(sslobj, "_sslobj", None), "get_unverified_chain", None)
    if getter is not None:
        try:
            certs = getter() or []
            out = []
            for c in certs:
                out.append(bytes(c) if isinstance(c, bytes | bytearray) else c.public_bytes(_ENCODING_DER))
            if out:
                return out
        except (AttributeError, ValueError, ssl.SSLError):
            pass
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


async def probe(
    address: str,
    port: int,
    *,
    server_hostname: str,
    ssl_context: ssl.SSLContext,
    deadline: float,
    route: Route | None = None,
) -> TlsProbe:
    """One TLS handshake with ``address:port`` (SNI ``server_hostname``), never raising for network trouble;
    ``route`` goes through its forward proxy (CONNECT ``server_hostname:port``)."""
    result = await _probe(
        address,
        port,
        server_hostname=server_hostname,
        ssl_context=ssl_context,
        deadline=deadline,
        route=route,
    )
    result.cert_requested = cert_requested(ssl_context)
    return result


async def _probe(
    address: str,
    port: int,
    *,
    server_hostname: str,
    ssl_context: ssl.SSLContext,
    deadline: float,
    route: Route | None = None,
) -> TlsProbe:
    from lokin_doctor.instruments.tunnel import open_stream

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        async with asyncio.timeout_at(deadline):
            __, writer = await open_stream(
                server_hostname if route is not None and route.proxy is not None else address,
                port,
                address=address,
                route=route,
                deadline=deadline,
                ssl_context=ssl_context,
                server_hostname=server_hostname,
            )
    except TimeoutError:
        return TlsProbe("timeout", _("no TLS answer (ServerHello) within the deadline"))
    except ssl.SSLCertVerificationError as exc:
        return TlsProbe(
            "verify",
            exc.verify_message or str(exc),
            verify_code=exc.verify_code,
            verify_message=exc.verify_message,
        )
    except ssl.SSLError as exc:
        text = str(exc)
        low = text.lower()
        if "no application protocol" in low or "no_application_protocol" in low:
            return TlsProbe(
                "alpn", _("the server sent a no_application_protocol alert (it rejects ALPN http/1.1)")
            )
        if "unrecognized name" in low or "unrecognized_name" in low:
            return TlsProbe(
                "unrecognized-name",
                _("the server sent an unrecognized_name alert (it has nothing for the server name sent)"),
            )
        if "wrong version number" in low or "packet length too long" in low or "record layer failure" in low:
            return TlsProbe(
                "wrong-version", _("the reply is not TLS ({value})").format(value=exc.reason or text)
            )
        if isinstance(exc, ssl.SSLEOFError) or "eof" in low:
            return TlsProbe("eof", _("the server closed the connection during the TLS handshake"))
        return TlsProbe("error", re.sub(r"\s*\(_ssl\.c:\d+\)", "", text) or str(exc.reason))
    except ConnectionRefusedError as exc:
        return TlsProbe("refused", str(exc) or _("connection refused"))
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        # asyncio words it "Connect call failed" or "Connection reset by peer" depending on when the RST
        # lands: one wording, so the same server gets the same verdict every run.
        return TlsProbe("reset", _("the server reset the connection during the TLS handshake"))
    except OSError as exc:
        return TlsProbe("error", exc.strerror or str(exc))
    try:
        sslobj = writer.get_extra_info("ssl_object")
        cipher = sslobj.cipher() if sslobj is not None else None
        return TlsProbe(
            "ok",
            version=sslobj.version() if sslobj is not None else None,
            cipher=cipher[0] if cipher else None,
            alpn=sslobj.selected_alpn_protocol() if sslobj is not None else None,
            chain=served_chain(sslobj) if sslobj is not None else [],
            ms=(loop.time() - t0) * 1000,
        )
    finally:
        writer.close()


# --------------------------------------------------------------------------- certificates


def load(der: bytes) -> Any:
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def _cn(name: Any) -> str | None:
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def short_name(name: Any) -> str:
    """The common name, else the whole DN."""
    return _cn(name) or name.rfc4514_string()


def sans(cert: Any) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the subjectAltName extension."""
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return list(ext.get_values_for_type(x509.DNSName)), [
        str(i) for i in ext.get_values_for_type(x509.IPAddress)
    ]


def aia_ca_issuers(cert: Any) -> list[str]:
    """The caIssuers URLs of the Authority Information Access extension (what browsers fetch)."""
    from cryptography import x509
    from cryptography.x509.oid import AuthorityInformationAccessOID

    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        str(d.access_location.value)
        for d in ext
        if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def name_matches(host: str, dns_names: list[str], ips: list[str]) -> bool:
    """RFC 6125 matching as browsers do it: exact name, or one leftmost ``*`` label; IPs exactly."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(i) == ip for i in ips)
    h = host.lower().rstrip(".")
    for name in dns_names:
        n = name.lower().rstrip(".")
        if n == h:
            return True
        if n.startswith("*.") and "." in h and h.split(".", 1)[1] == n[2:]:
            return True
    return False


def describe(der: bytes, host: str | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Plain facts about one certificate: subject, names, issuer, validity, days left."""
    cert = load(der)
    now = now or dt.datetime.now(dt.UTC)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    dns_names, ips = sans(cert)
    info: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "subject_cn": short_name(cert.subject),
        "issuer": cert.issuer.rfc4514_string(),
        "issuer_cn": short_name(cert.issuer),
        "sans": dns_names + ips,
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "days_left": round((not_after - now).total_seconds() / 86400, 1),
        "self_issued": cert.subject == cert.issuer,
        "serial": format(cert.serial_number, "x"),
    }
    aia = aia_ca_issuers(cert)
    if aia:
        info["aia_ca_issuers"] = aia
    if host is not None:
        info["matches_host"] = name_matches(host, dns_names, ips)
    return info


def served_path(chain: list[bytes]) -> list[Any]:
    """The served chain walked from the leaf through issuers the server also sent (order-independent)."""
    certs = [load(d) for d in chain]
    if not certs:
        return []
    path = [certs[0]]
    rest = certs[1:]
    while True:
        top = path[-1]
        if top.issuer == top.subject:
            break
        nxt = next((c for c in rest if c.subject == top.issuer and c not in path), None)
        if nxt is None:
            break
        path.append(nxt)
    return path


def trusted_subjects(ctx: ssl.SSLContext) -> set[bytes]:
    """DER-encoded subjects of the CA certificates a context trusts (those loaded from files)."""
    import warnings

    out: set[bytes] = set()
    with warnings.catch_warnings():
        # Some old roots in system stores have non-positive serials; cryptography warns about them.
        warnings.simplefilter("ignore")
        for der in ctx.get_ca_certs(binary_form=True):
            try:
                out.add(load(der).subject.public_bytes())
            except ValueError:
                continue
    return out


def file_subjects(path: str) -> list[Any]:
    """The subjects of the certificates in a PEM file (``--ca-file``)."""
    from cryptography import x509

    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return [c.subject for c in x509.load_pem_x509_certificates(data)]
    except ValueError:
        return []
