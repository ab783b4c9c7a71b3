"""Cause codes of the dns layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.DNS

DNS_ERROR = cause(
    "dns.error",
    L,
    N_("the resolver failed with an error other than unknown host or timeout"),
    N_("check the DNS records of the name and /etc/resolv.conf"),
)
DNS_NO_ADDRESS = cause(
    "dns.no-address", L, N_("the name exists but has no address"), N_("add an A/AAAA record")
)
DNS_NO_ANSWER = cause(
    "dns.no-answer",
    L,
    N_("--dns-server: the name has no A or AAAA record"),
    N_("add an A/AAAA record, or ask the right server"),
)
DNS_NO_CONFIG = cause(
    "dns.no-config",
    L,
    N_("this machine has no usable resolver configuration (/etc/resolv.conf)"),
    N_("fix /etc/resolv.conf, or give --dns-server"),
)
DNS_NXDOMAIN = cause(
    "dns.nxdomain",
    L,
    N_("--dns-server: the name does not exist (NXDOMAIN)"),
    N_("fix the record, or ask the right server"),
)
DNS_REFUSED = cause(
    "dns.refused",
    L,
    N_("--dns-server: the server refused or failed (REFUSED, SERVFAIL)"),
    N_("ask a DNS server that serves this zone"),
)
DNS_RESOLVERS_DISAGREE = cause(
    "dns.resolvers-disagree",
    L,
    N_(
        "DNS and this machine's resolver give different answers: an /etc/hosts line (shown), split-horizon DNS, or a name only this machine knows"
    ),
    N_("remove/fix the hosts line, or align the resolvers: browsers elsewhere see the DNS answer"),
    warn=True,
    fail=False,
)
DNS_TEMPORARY_FAILURE = cause(
    "dns.temporary-failure",
    L,
    N_("the resolver did not answer (EAI_AGAIN)"),
    N_("check the network and /etc/resolv.conf"),
)
DNS_TIMEOUT = cause(
    "dns.timeout",
    L,
    N_("the resolver gave no answer within the deadline"),
    N_("check that the DNS server in /etc/resolv.conf (or --dns-server) answers, or raise --timeout"),
)
DNS_UNKNOWN_HOST = cause(
    "dns.unknown-host",
    L,
    N_("the system resolver does not know the name"),
    N_("fix the host in the client URL, the DNS records or /etc/hosts; `--dns-server` for split horizon"),
)
