"""``tls.handshake-failed``: a TLS handshake that fails for a reason no narrower tls.* code names, against
real ``openssl s_server`` peers: a TLS 1.3-only server whose cipher suites no client offers (even the
legacy probe that offers everything fails), and a certificate whose RSA key is too weak to verify."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.helpers import run_cli
from tests.peers.certs import CertPair


def _run(port: int, ca_file: str) -> Any:
    return run_cli(
        "all",
        f"wss://localhost:{port}/",
        "--ca-file",
        ca_file,
        "--json",
        "--no-variants",
        "--timeout",
        "4",
        "--lang",
        "en",
    )


def test_no_cipher_suite_in_common_even_offering_everything(openssl_server: Any, certs: Any) -> None:
    # TLS 1.3 with CCM suites only: neither Python's default list nor browsers offer them.
    port = openssl_server(certs.good, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
    run = _run(port, certs.ca_file)
    tls = run.check("tls")
    assert tls["code"] == "tls.handshake-failed", tls
    assert run.root_code == "tls.handshake-failed"
    assert "alert handshake failure" in tls["summary"]
    assert tls["summary"].startswith(f"the TLS handshake with localhost (127.0.0.1:{port}) failed")
    assert "share no cipher suite" in tls["hint"]
    assert run.check("handshake")["status"] == "skip"


def _weak_leaf(certs: Any, directory: Path) -> CertPair:
    """A leaf for localhost with a 1024-bit RSA key, issued by the test CA."""
    ca_key = serialization.load_pem_private_key(certs.ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(certs.ca.cert_pem.bytes())
    key = rsa.generate_private_key(65537, 1024)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    certfile, keyfile = directory / "weak.crt", directory / "weak.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return CertPair(
        "weak", str(certfile), str(keyfile), ("localhost", "127.0.0.1"), now, now + dt.timedelta(days=30)
    )


def test_a_certificate_key_too_weak_to_verify(openssl_server: Any, certs: Any, tmp_path: Path) -> None:
    # The server loads it at security level 0; the client (level 2, as browsers) rejects it.
    port = openssl_server(_weak_leaf(certs, tmp_path), "-cipher", "DEFAULT:@SECLEVEL=0")
    run = _run(port, certs.ca_file)
    tls = run.check("tls")
    assert tls["code"] == "tls.handshake-failed", tls
    assert tls["evidence"]["verify_code"] == 66
    assert "EE certificate key too weak" in tls["summary"]
    assert "RSA 2048 bits or more" in tls["hint"]
    assert tls["evidence"]["certificate"]["subject_cn"] == "localhost"  # the served leaf was read
