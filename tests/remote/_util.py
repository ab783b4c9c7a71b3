"""Run the checklist in-process and look at the result by check id."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from lokin_doctor import render
from lokin_doctor.model import CheckResult, Report
from lokin_doctor.runner import run_report
from lokin_doctor.settings import build_settings


@dataclass
class Run:
    report: Report
    seconds: float

    @property
    def data(self) -> dict[str, Any]:
        """The JSON report, as CI scripts see it."""
        return json.loads(render.to_json(self.report))  # type: ignore[no-any-return]

    def __getitem__(self, check_id: str) -> CheckResult:
        for r in self.report.results:
            if r.id == check_id:
                return r
        raise KeyError(f"{check_id} not in {[r.id for r in self.report.results]}")

    @property
    def root(self) -> str | None:
        rc = self.report.root_cause
        return rc.code if rc else None

    @property
    def root_check(self) -> str | None:
        rc = self.report.root_cause
        return rc.check if rc else None

    def codes(self) -> dict[str, str | None]:
        return {r.id: r.code for r in self.report.results}

    def explain(self) -> str:
        return "\n".join(f"{r.id}: {r.status.value} {r.code} {r.summary}" for r in self.report.results)


def doctor(url: str | None, only: list[str] | None = None, **options: Any) -> Run:
    """``lokin-doctor all URL [--only ...] [options]`` in-process."""
    options.setdefault("timeout", 3.0)
    settings = build_settings(url, **options)
    t0 = time.monotonic()
    report = run_report(settings, only=only)
    return Run(report, time.monotonic() - t0)
