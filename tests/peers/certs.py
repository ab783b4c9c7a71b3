"""Test certificates: a trustme CA and leaves that are good, expired, not yet valid, for the wrong host,
self-signed, or issued by an intermediate the server forgets to send."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GOOD_NAMES = ("localhost", "lokin.test", "*.lokin.test", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertPair:
    """A certificate chain file and its private key, as a server would load them.

    Attributes:
        name: which case it is ("good", "expired", ...).
        certfile: PEM chain the server sends (leaf first).
        keyfile: PEM private key.
        names: the identities in the leaf's subjectAltName.
        not_before, not_after: the leaf's validity window (UTC).
    """

    name: str
    certfile: str
    keyfile: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class Certs:
    """Everything the ``certs`` fixture provides.

    Attributes:
        ca_file: PEM of the root CA that issued every certificate except ``self_signed``.
        ca: the :class:`trustme.CA` itself (to issue more).
        good: valid for localhost, lokin.test, *.lokin.test, 127.0.0.1, ::1.
        expired: same names, expired yesterday.
        not_yet_valid: same names, valid from 30 days on.
        wrong_host: valid, for wrong.example only.
        self_signed: valid dates and names, but its own issuer (made with cryptography).
        missing_intermediate: leaf issued by an intermediate CA, chain file WITHOUT the intermediate.
        full_chain: the same leaf and key with leaf + intermediate in the chain file.
        intermediate_ca_file: PEM of that intermediate.
    """

    ca_file: str
    ca: trustme.CA = field(repr=False)
    good: CertPair
    expired: CertPair
    not_yet_valid: CertPair
    wrong_host: CertPair
    self_signed: CertPair
    missing_intermediate: CertPair
    full_chain: CertPair
    intermediate_ca_file: str

    def client_context(self) -> ssl.SSLContext:
        """A client SSL context that trusts :attr:`ca_file`."""
        return ssl.create_default_context(cafile=self.ca_file)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o644)
    return str(path)


def _leaf(
    directory: Path,
    name: str,
    leaf: trustme.LeafCert,
    names: tuple[str, ...],
    *,
    with_chain: bool = True,
) -> CertPair:
    pems = leaf.cert_chain_pems if with_chain else leaf.cert_chain_pems[:1]
    cert = x509.load_pem_x509_certificate(pems[0].bytes())
    return CertPair(
        name=name,
        certfile=_write(directory / f"{name}.crt", b"".join(p.bytes() for p in pems)),
        keyfile=_write(directory / f"{name}.key", leaf.private_key_pem.bytes()),
        names=names,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _self_signed(directory: Path, names: tuple[str, ...], now: dt.datetime) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LOK IN self-signed"),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]
    )
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertPair(
        name="self_signed",
        certfile=_write(directory / "self_signed.crt", cert.public_bytes(serialization.Encoding.PEM)),
        keyfile=_write(directory / "self_signed.key", key_pem),
        names=names,
        not_before=not_before,
        not_after=not_after,
    )


def make_certs(directory: Path) -> Certs:
    """Issue every test certificate into ``directory`` (~0.2 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ca = trustme.CA(organization_name="LOK IN test CA")
    ca_file = _write(directory / "ca.pem", ca.cert_pem.bytes())

    good = _leaf(directory, "good", ca.issue_cert(*GOOD_NAMES), GOOD_NAMES)

    exp_nb, exp_na = now - dt.timedelta(days=90), now - dt.timedelta(days=1)
    expired = _leaf(
        directory,
        "expired",
        ca.issue_cert(*GOOD_NAMES, not_before=exp_nb, not_after=exp_na),
        GOOD_NAMES,
    )

    nyv_nb, nyv_na = now + dt.timedelta(days=30), now + dt.timedelta(days=120)
    not_yet_valid = _leaf(
        directory,
        "not_yet_valid",
        ca.issue_cert(*GOOD_NAMES, not_before=nyv_nb, not_after=nyv_na),
        GOOD_NAMES,
    )

    wrong_host = _leaf(directory, "wrong_host", ca.issue_cert("wrong.example"), ("wrong.example",))

    self_signed = _self_signed(directory, GOOD_NAMES, now)

    intermediate = ca.create_child_ca()
    intermediate_ca_file = _write(directory / "intermediate.pem", intermediate.cert_pem.bytes())
    chained = intermediate.issue_cert(*GOOD_NAMES)
    missing_intermediate = _leaf(directory, "missing_intermediate", chained, GOOD_NAMES, with_chain=False)
    full_chain = _leaf(directory, "full_chain", chained, GOOD_NAMES)

    return Certs(
        ca_file=ca_file,
        ca=ca,
        good=good,
        expired=expired,
        not_yet_valid=not_yet_valid,
        wrong_host=wrong_host,
        self_signed=self_signed,
        missing_intermediate=missing_intermediate,
        full_chain=full_chain,
        intermediate_ca_file=intermediate_ca_file,
    )
