"""``hold``: placeholder until the production-path checks land (issue 4)."""

from __future__ import annotations

from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, skip


async def check(ctx: Context) -> CheckResult:
    return skip("hold", "skipped: not implemented yet")
