"""Option values checked before any traffic: each function returns the one-line problem, or None.

Shared by the check commands (:mod:`lokin_doctor.settings`) and the operator tools (load, watch,
monitor), so every command refuses the same bad values with the same words. Standard library only
(start-up time); ``ssl`` is imported where a PEM file is read.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re

from lokin_doctor.i18n import N_, _

#: The longest duration any option accepts, in seconds (one day): ``serve``'s timeouts, the tools' durations.
MAX_SECONDS = 86400.0


class UsageError(Exception):
    """A bad input: one line naming the option and what a valid value looks like (exit 2).

    Raised wherever a value is checked (settings, the tools, ``serve``); only :func:`lokin_doctor.cli.main`
    prints it, as ``lokin-doctor: error: MESSAGE``.
    """

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.message = message


class CommandError(Exception):
    """A command that cannot do its job for a reason the user can act on (the port is already in use, a
    worker could not start): one line, exit 1. Raised by the commands; only :func:`lokin_doctor.cli.main`
    prints it, as ``lokin-doctor: error: MESSAGE``."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


#: RFC 9110 token (header names, subprotocol names).
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: RFC 9110 field-value as this tool sends it: visible ASCII, spaces and tabs inside (no CR, LF, NUL,
#: no other control, no non-ASCII: obs-text is obsolete and browsers' fetch() refuses it too).
FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?|")


#: The units callers pass to :func:`number`, marked for translation (translated where the message is made).
UNITS = (N_("seconds"), N_("milliseconds"), N_("handshakes per second"))


def url_argument(url: str | None) -> str | None:
    """The problem with a URL argument that is given but empty (``""`` or an empty ``LOKIN_URL``)."""
    if url is not None and not url.strip():
        return _(
            "empty URL argument (or LOKIN_URL); give a target such as ws://localhost:8080/, or leave it out for the default"
        )
    return None


def number(
    option: str,
    value: float,
    *,
    low: float = 0.0,
    high: float = 3600.0,
    low_ok: bool = False,
    unit: str = "seconds",
) -> str | None:
    """``option`` must be finite and within [low, high] (``low`` excluded unless ``low_ok``)."""
    if math.isfinite(value) and (value > low or (low_ok and value == low)) and value <= high:
        return None
    above = _("{low:g} or more").format(low=low) if low_ok else _("above {low:g}").format(low=low)
    what = _("a number of {unit}").format(unit=_(unit)) if unit else _("a number")
    return _("{option} must be {what}, {above} and at most {high:g}, not {value!r}").format(
        option=option, what=what, above=above, high=high, value=value
    )


def integer(option: str, value: int, *, low: int, high: int) -> str | None:
    if low <= value <= high:
        return None
    return _("{option} must be a whole number from {low} to {high}, not {value}").format(
        option=option, low=low, high=high, value=value
    )


def header(text: str) -> tuple[tuple[str, str] | None, str | None]:
    """Parse ``Name: value`` as RFC 9110 allows: ((name, value), None) or (None, problem)."""
    name, sep, value = text.partition(":")
    example = _(
        "write it as 'Name: value' with a token name and printable ASCII value, e.g. 'Authorization: Bearer x'"
    )
    if not sep or not TOKEN.fullmatch(name.strip()) or name != name.lstrip():
        return None, _("invalid --header {text!r}: bad header name; {example}").format(
            text=text, example=example
        )
    value = value.strip(" \t")
    if not FIELD_VALUE.fullmatch(value):
        bad = next((c for c in value if not (" " <= c <= "~" or c == "\t")), "?")
        return (
            None,
            _(
                "invalid --header {text!r}: the value contains {bad!r} (CR, LF, controls and non-ASCII are not allowed); {example}"
            ).format(text=text, bad=bad, example=example),
        )
    return (name.strip(), value), None


def subprotocol(value: str) -> str | None:
    if TOKEN.fullmatch(value):
        return None
    return _(
        "invalid --subprotocol {value!r}; a subprotocol is an RFC 9110 token (letters, digits, - . _ ~ ...), e.g. chat.v1"
    ).format(value=value)


def origin(value: str) -> str | None:
    if re.fullmatch(r"(null|[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/]+)", value) and value.isascii():
        return None
    return _("invalid --origin {value!r}; an origin looks like https://example.com (no path)").format(
        value=value
    )


def ca_file(path: str, option: str = "--ca-file") -> str | None:
    """A readable file of PEM CA certificates that OpenSSL loads."""
    import ssl

    if not os.path.isfile(path):
        return _(
            "{option} {path!r} does not exist or is not a file; give a PEM file of CA certificates"
        ).format(option=option, path=path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    except OSError as exc:
        return _(
            "{option} {path!r} cannot be read ({strerror}); give a readable PEM file of CA certificates"
        ).format(option=option, path=path, strerror=exc.strerror)
    if b"-----BEGIN CERTIFICATE-----" not in head:
        return _(
            "{option} {path!r} holds no PEM certificate; give a PEM file ('-----BEGIN CERTIFICATE-----' blocks)"
        ).format(option=option, path=path)
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        return _(
            "{option} {path!r} is not a valid PEM file of CA certificates ({exc}); check its contents"
        ).format(option=option, path=path, exc=exc)
    return None


def client_cert(cert: str | None, key: str | None) -> str | None:
    """``--client-cert`` (PEM, may hold the key too) and ``--client-key`` that OpenSSL pairs."""
    import ssl

    if key is not None and cert is None:
        return _("--client-key needs --client-cert: give the client certificate (PEM) it belongs to")
    if cert is None:
        return None
    for option, path in (("--client-cert", cert), ("--client-key", key)):
        if path is not None and not os.path.isfile(path):
            return _("{option} {path!r} does not exist or is not a file; give a PEM file").format(
                option=option, path=path
            )

    def no_password() -> str:
        raise ValueError("encrypted")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=no_password)
    except ValueError:
        return _(
            "--client-key {value!r} is encrypted; give an unencrypted PEM key (openssl pkey -in K -out K2)"
        ).format(value=key or cert)
    except (ssl.SSLError, OSError) as exc:
        return _(
            "--client-cert {cert!r}{value} cannot be loaded ({value2}); give a PEM certificate and its matching PEM private key"
        ).format(
            cert=cert,
            value=f" / --client-key {key!r}" if key else "",
            value2=getattr(exc, "reason", None) or exc,
        )
    return None


def dns_server(text: str) -> tuple[tuple[str, int] | None, str | None]:
    """``IP``, ``IP:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` (a bare IPv6 address has no port).

    Names are refused: the DNS server is where names get resolved, so it is given by address.
    """
    value = text.strip()
    example = _("use IP or IP:PORT, IPv6 in brackets, e.g. 127.0.0.1:5353 or [::1]:53")
    host, port_text = value, ""
    if value.startswith("["):
        inner, close, rest = value[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            return None, _("invalid --dns-server {text!r}; {example}").format(text=text, example=example)
        host, port_text = inner, rest[1:] if rest else ""
        if rest == ":":
            return None, _("invalid --dns-server {text!r}: empty port; {example}").format(
                text=text, example=example
            )
    elif value.count(":") == 1:
        host, __, port_text = value.partition(":")
        if not port_text:
            return None, _("invalid --dns-server {text!r}: empty port; {example}").format(
                text=text, example=example
            )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (
            None,
            _(
                "invalid --dns-server {text!r}: {host!r} is not an IP address (names are not accepted); {example}"
            ).format(text=text, host=host, example=example),
        )
    if value.startswith("[") and address.version != 6:
        return None, _("invalid --dns-server {text!r}: brackets are for IPv6 addresses; {example}").format(
            text=text, example=example
        )
    port = 53
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            return (
                None,
                _(
                    "invalid --dns-server {text!r}: the port must be a number from 1 to 65535; {example}"
                ).format(text=text, example=example),
            )
        port = int(port_text)
    return (str(address), port), None


#: A host name as --resolve takes it (letters, digits, dots, hyphens, underscores).
_RESOLVE_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def resolve(text: str) -> tuple[tuple[str, int, tuple[str, ...]] | None, str | None]:
    """curl's ``--resolve HOST:PORT:ADDR[,ADDR...]`` (IPv6 addresses may be in brackets): connecting to
    HOST:PORT goes to ADDR while the host name is still the one sent (TLS SNI, the Host header)."""
    example = _("use HOST:PORT:ADDR as curl does, e.g. example.com:443:127.0.0.1 or example.com:443:[::1]")
    host, sep1, rest = text.strip().partition(":")
    port_text, sep2, addrs_text = rest.partition(":")
    if not (sep1 and sep2) or not host or not addrs_text:
        return None, _("invalid --resolve {text!r}; {example}").format(text=text, example=example)
    if not _RESOLVE_HOST.fullmatch(host):
        return None, _("invalid --resolve {text!r}: {host!r} is not a host name; {example}").format(
            text=text, host=host, example=example
        )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return None, _(
            "invalid --resolve {text!r}: the port must be a number from 1 to 65535; {example}"
        ).format(text=text, example=example)
    addresses: list[str] = []
    for raw in addrs_text.split(","):
        value = raw.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        try:
            addresses.append(str(ipaddress.ip_address(value)))
        except ValueError:
            return None, _("invalid --resolve {text!r}: {value!r} is not an IP address; {example}").format(
                text=text, value=raw, example=example
            )
    return (host.lower().rstrip("."), int(port_text), tuple(addresses)), None
