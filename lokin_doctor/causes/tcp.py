"""Cause codes of the tcp layer (see lokin_doctor/causes/__init__.py)."""

from __future__ import annotations

from lokin_doctor.causes import Layer, Tag, cause  # noqa: F401
from lokin_doctor.i18n import N_

L = Layer.TCP

TCP_ERROR = cause(
    "tcp.error",
    L,
    N_("another connect error (mixed outcomes)"),
    N_("check the address and port in the client URL and the network path"),
)
TCP_LOCALHOST_FAMILY = cause(
    "tcp.localhost-family",
    L,
    N_(
        "localhost (or the name) gives both ::1 and 127.0.0.1 and only one of them answers: clients that try the other first (Node >= 17) fail"
    ),
    N_(
        "make the server listen on both (host '::' with dual stack, or both addresses), or put the working address in the client URL"
    ),
    warn=True,
    fail=False,
)
TCP_REFUSED = cause(
    "tcp.refused",
    L,
    N_("every address refuses the TCP connect: nothing accepts connections on the port"),
    N_(
        "start the WebSocket server on that port (node server.js, or lokin-doctor serve --port PORT), or fix the port in the client URL"
    ),
    tags=(Tag.NOTHING_LISTENS,),
)
TCP_SOME_ADDRESSES_FAIL = cause(
    "tcp.some-addresses-fail",
    L,
    N_("some of the name's addresses refuse or drop"),
    N_(
        "clients given a failing address cannot connect: fix or remove those DNS records, or start the server on those hosts"
    ),
    warn=True,
    fail=False,
)
TCP_TIMEOUT = cause(
    "tcp.timeout",
    L,
    N_("no answer to the TCP connect: packets are dropped by a firewall, or the host is down"),
    N_("open the port in the firewall (ufw allow PORT/tcp, security group) or check the host is up"),
    tags=(Tag.DROPPED,),
)
TCP_UNREACHABLE = cause(
    "tcp.unreachable",
    L,
    N_("no route to the host"),
    N_("check the address, the network, or a firewall that rejects with host-unreachable"),
)
