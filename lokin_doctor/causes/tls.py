"""Cause codes of the tls layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.TLS

TLS_CIPHER_MISMATCH = cause(
    "tls.cipher-mismatch",
    L,
    N_(
        "the server shares no cipher suite with this client; the summary names the suite it chose when offered every one"
    ),
    N_('configure a modern cipher list (Mozilla "intermediate") and keep TLS 1.3 on'),
)
TLS_CLIENT_CERT_REJECTED = cause(
    "tls.client-cert-rejected",
    L,
    N_("the server asked for a client certificate (mutual TLS) and refused the one offered"),
    N_(
        "offer a certificate the server's CA signed (--client-cert/--client-key), or check its ssl_client_certificate"
    ),
)
TLS_CLIENT_CERT_REQUIRED = cause(
    "tls.client-cert-required",
    L,
    N_("the server requires a client certificate (mutual TLS) and none was offered"),
    N_("offer one with --client-cert/--client-key, or turn off ssl_verify_client for the WebSocket location"),
)
TLS_EXPIRED = cause(
    "tls.expired",
    L,
    N_("the certificate's notAfter is past"),
    N_("renew it (certbot renew...), reload the server/proxy, check the renewal timer"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_EXPIRES_SOON = cause(
    "tls.expires-soon",
    L,
    N_("the certificate expires in fewer than 14 days"),
    N_("renew it now and check the renewal job (certbot renew --dry-run)"),
    warn=True,
    fail=False,
    tags=(Tag.NOT_A_URL_PROBLEM,),
)
TLS_H2_ONLY = cause(
    "tls.h2-only",
    L,
    N_(
        "the server refuses ALPN `http/1.1` (no_application_protocol) and selects `h2` when offered: WebSocket needs HTTP/1.1 (or RFC 8441)"
    ),
    N_("enable http/1.1 in the server's/edge's ALPN"),
)
TLS_HANDSHAKE_FAILED = cause(
    "tls.handshake-failed",
    L,
    N_("the TLS handshake failed for a reason with no code of its own"),
    N_("check the server's TLS configuration and its error log"),
)
TLS_HOSTNAME_MISMATCH = cause(
    "tls.hostname-mismatch",
    L,
    N_("the certificate's names do not include the host"),
    N_("issue one with the host in subjectAltName, or use one of its names"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_INCOMPLETE_CHAIN = cause(
    "tls.incomplete-chain",
    L,
    N_(
        "the server sends its certificate without the intermediate: Node and Python fail, a browser may still work (it fetches the intermediate from the AIA URL or has it cached)"
    ),
    N_("serve the full chain (nginx `ssl_certificate fullchain.pem`, not `cert.pem`)"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_NOT_TLS = cause(
    "tls.not-tls",
    L,
    N_("the port answers plain HTTP (or another protocol), not TLS"),
    N_("use `ws://` for that port, or put TLS in front of it and use `wss://` on 443"),
)
TLS_NOT_YET_VALID = cause(
    "tls.not-yet-valid",
    L,
    N_("the certificate's notBefore is in the future"),
    N_("check the clocks (timedatectl) or install a certificate valid now"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_PROTOCOL_VERSION = cause(
    "tls.protocol-version",
    L,
    N_(
        "the server speaks only TLS 1.0/1.1 (or SSLv3); the summary names what it speaks and what this client offers (TLSv1.2-TLSv1.3, as browsers)"
    ),
    N_("enable TLS 1.2 and 1.3 (nginx `ssl_protocols TLSv1.2 TLSv1.3;`, Node `minVersion: 'TLSv1.2'`)"),
)
TLS_RESET = cause(
    "tls.reset",
    L,
    N_(
        "the server accepted TCP, then reset the connection before the TLS handshake finished (and the port does not answer plain HTTP either); worded the same on every run, wherever the RST lands"
    ),
    N_("read the server's log; check connection limits and firewall rules"),
)
TLS_SELF_SIGNED = cause(
    "tls.self-signed",
    L,
    N_("the certificate is its own issuer"),
    N_("use a CA-issued certificate; for a private setup, a private CA passed with `--ca-file`"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_TIMEOUT = cause(
    "tls.timeout",
    L,
    N_("the port accepts TCP but never answers the ClientHello"),
    N_("check what listens there; if it speaks plain ws://, drop the s"),
)
TLS_UNKNOWN_CA = cause(
    "tls.unknown-ca",
    L,
    N_("the chain ends at a CA this machine does not trust"),
    N_("a public CA, or `--ca-file` with the private CA (installed on every client too)"),
    tags=(
        Tag.NOT_A_URL_PROBLEM,
        Tag.CERTIFICATE,
    ),
)
TLS_NO_SNI = cause(
    "tls.no-sni",
    L,
    N_(
        "the server refused the TLS handshake because the client sent no server name (SNI): the URL names an IP address, and the server serves only named hosts (nginx ssl_reject_handshake on)"
    ),
    N_(
        "use the host name in the URL; to reach a given address with that name, --resolve HOST:PORT:ADDR (curl's syntax)"
    ),
)
TLS_UNKNOWN_NAME = cause(
    "tls.unknown-name",
    L,
    N_(
        "the server refused the TLS handshake for the server name sent (SNI): it has no certificate or server block for that name (an unrecognized_name alert, or an end right after the ClientHello)"
    ),
    N_(
        "use a host name the server is configured for, or add this name to its configuration (nginx server_name with its ssl_certificate)"
    ),
)
