"""Causes of the doctor itself: a check that crashed or ran out of time."""

from __future__ import annotations

from lokin_doctor.causes import Cause, Layer, cause, get
from lokin_doctor.i18n import N_

INTERNAL_ERROR = cause(
    "internal-error",
    Layer.INTERNAL,
    N_("one of lokin-doctor's checks crashed; the other checks' findings still stand"),
    N_("re-run with --debug to see the traceback, and report it"),
)


def check_timeout(check_id: str) -> Cause:
    """The cause of a check that gave no result in time: its own ``<id>.timeout``, declared on first use for
    a check the registry does not list (a test's or a plug-in's)."""
    return get(f"{check_id}.timeout") or _check_timeout(check_id)


def _check_timeout(check_id: str) -> Cause:
    return cause(
        f"{check_id}.timeout",
        Layer.INTERNAL,
        N_("the check gave no result within the run's deadline (--timeout)"),
        N_("the host or this machine is too slow to answer; raise --timeout or check the network path"),
    )


# dns, tcp and tls have a timeout cause of their own (their layers); the others share this wording.
for _id in (
    "dns-records",
    "process",
    "port",
    "nginx",
    "supervisor",
    "firewall",
    "handshake",
    "session",
    "backends",
    "proxy",
    "variants",
    "page",
    "origins",
    "hold",
    "browser",
):
    _check_timeout(_id)
