"""``tls``: placeholder until the TLS diagnosis lands; the handshake reports TLS failures meanwhile."""

from __future__ import annotations

from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, skip


async def check(ctx: Context) -> CheckResult:
    return skip("tls", "skipped: TLS details not implemented yet; the handshake reports TLS failures")
