"""TLS for ``serve``: the server SSL context (one-line errors naming the bad file) and the
certificate summary printed in the banner."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

from lokin_doctor.server.config import ServerStartError
from lokin_doctor.server.logs import one_line


def build_ssl_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """A server TLS context, or ServerStartError with a message that names the bad file."""

    def read(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read(1 << 20)
        except FileNotFoundError:
            raise ServerStartError(f"TLS {what} file not found: {path}") from None
        except IsADirectoryError:
            raise ServerStartError(f"TLS {what} file is a directory: {path}") from None
        except OSError as exc:
            raise ServerStartError(f"cannot read TLS {what} file {path}: {exc.strerror or exc}") from None

    cert = read(certfile, "certificate")
    key = read(keyfile, "key") if keyfile else cert
    key_path = keyfile or certfile
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ServerStartError(
            f"{certfile} is not a PEM certificate (no '-----BEGIN CERTIFICATE-----'); "
            f"convert a DER file with: openssl x509 -inform der -in {certfile} -out cert.pem"
        )
    if b"PRIVATE KEY-----" not in key:
        hint = "" if keyfile else ": give it with --keyfile"
        raise ServerStartError(f"no PEM private key in {key_path}{hint}")
    if b"ENCRYPTED" in key:
        raise ServerStartError(
            f"the private key in {key_path} is protected by a passphrase; decrypt it for the server "
            f"(openssl pkey -in {key_path} -out key.pem)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # The password callback stops OpenSSL from prompting on the terminal of a service.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as exc:
        text = f"{exc.reason or ''} {exc}"
        if "KEY_VALUES_MISMATCH" in text:
            raise ServerStartError(
                f"the private key in {key_path} does not match the certificate in {certfile}"
            ) from None
        raise ServerStartError(
            f"cannot load TLS certificate {certfile}"
            + (f" / key {keyfile}" if keyfile else "")
            + f": {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ServerStartError(f"cannot load TLS certificate {certfile}: {exc.strerror or exc}") from None
    return context


def certificate_summary(certfile: str) -> tuple[str, str | None]:
    """(one-line description, warning or None) of the served certificate, for the banner."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        with open(certfile, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
            names += [str(n) for n in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        issuer = cert.issuer.rfc4514_string() or "?"
        expires = cert.not_valid_after_utc
        text = f"{', '.join(names) or '?'} (issuer {issuer}, expires {expires:%Y-%m-%d})"
        left = (expires - datetime.now(UTC)).total_seconds()
        if left < 0:
            return text, f"the certificate EXPIRED on {expires:%Y-%m-%d}: browsers will refuse wss://"
        if left < 14 * 86400:
            return text, f"the certificate expires in {left / 86400:.0f} day(s)"
        if cert.issuer == cert.subject:
            return text, "self-signed certificate: browsers will refuse wss:// unless they trust it"
        return text, None
    except Exception as exc:  # informative only: the TLS context already loaded it
        return f"(not parsed: {one_line(exc)})", None
