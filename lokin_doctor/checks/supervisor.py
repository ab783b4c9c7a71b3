"""``supervisor``: placeholder."""

from __future__ import annotations

from lokin_doctor.context import Context
from lokin_doctor.model import CheckResult, skip


async def check(ctx: Context) -> CheckResult:
    return skip("supervisor", "not applicable: not written yet", applicable=False)
