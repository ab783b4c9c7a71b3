"""Causes of the doctor itself: a check that crashed or ran out of time."""

from __future__ import annotations

from lokin_doctor.causes import Layer, cause
from lokin_doctor.i18n import N_

INTERNAL_ERROR = cause(
    "internal-error",
    Layer.INTERNAL,
    N_("one of lokin-doctor's checks crashed; the other checks' findings still stand"),
    N_("re-run with --debug to see the traceback, and report it"),
)


def _check_timeout(check_id: str) -> None:
    cause(
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
