"""Pure data shared by every layer: statuses, check results, exit codes. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lokin_doctor.causes import Cause


class Status(str, enum.Enum):
    """Outcome of one check. Ordered from best to worst by :attr:`rank`."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"

    @property
    def rank(self) -> int:
        return {"skip": 0, "ok": 1, "warn": 2, "fail": 3}[self.value]


class ExitCode(enum.IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    PROBLEM = 1
    USAGE = 2
    INTERRUPTED = 130


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: a fact, a stable cause code and the next thing to do.

    Attributes:
        id: kebab-case check id, stable (``tcp``, ``handshake``...).
        status: ok, warn, fail or skip.
        summary: one plain sentence of fact.
        code: stable cause code (``layer.cause``) for warn/fail; CI scripts match on it.
        hint: the next thing to do, imperative; required for warn/fail.
        evidence: plain facts (status line, errno, addresses, pid, headers).
        duration_ms: wall time of the check, filled in by the runner.
        note: an advisory on an ok result (normal here, worth knowing elsewhere); never a warning.
    """

    id: str
    status: Status
    summary: str
    code: str | None = None
    hint: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    note: str | None = None

    def __post_init__(self) -> None:
        if self.status in (Status.WARN, Status.FAIL) and not (self.code and self.hint):
            raise ValueError(f"{self.id}: a {self.status.value} result needs a code and a hint")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "code": self.code,
            "hint": self.hint,
            "evidence": self.evidence,
            "duration_ms": round(self.duration_ms, 1),
        }
        if self.note:  # a new key only when there is one: the schema stays what it was
            out["note"] = self.note
        return out


def ok(check_id: str, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check_id, Status.OK, summary, evidence=evidence)


def noted(check_id: str, summary: str, note: str, **evidence: Any) -> CheckResult:
    """A pass with an advisory (normal here, worth knowing elsewhere), shown in text, Markdown and JUnit
    ``<system-out>``; never a warning, never a JUnit failure, never a non-zero exit."""
    return CheckResult(check_id, Status.OK, summary, evidence=evidence, note=note)


def _code(cause: Cause) -> str:
    # A code is declared once in lokin_doctor/causes, never written in place (mypy says so too).
    # A Cause is a str that carries its diagnosis: a bare string has none (no import: model is the leaf).
    if not isinstance(cause, str) or getattr(cause, "layer", None) is None:
        raise TypeError(f"a result's cause must be a registry Cause (lokin_doctor.causes), not {cause!r}")
    return cause.code


def warn(check_id: str, cause: Cause, summary: str, hint: str, **evidence: Any) -> CheckResult:
    """A warning of a registry cause (``lokin_doctor.causes``)."""
    return CheckResult(check_id, Status.WARN, summary, code=_code(cause), hint=hint, evidence=evidence)


def fail(check_id: str, cause: Cause, summary: str, hint: str, **evidence: Any) -> CheckResult:
    """A failure of a registry cause (``lokin_doctor.causes``)."""
    return CheckResult(check_id, Status.FAIL, summary, code=_code(cause), hint=hint, evidence=evidence)


def skip(check_id: str, summary: str, **evidence: Any) -> CheckResult:
    return CheckResult(check_id, Status.SKIP, summary, evidence=evidence)


@dataclass(frozen=True)
class RootCause:
    check: str
    code: str
    summary: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "code": self.code, "summary": self.summary, "hint": self.hint}


@dataclass(frozen=True)
class Report:
    """What a run found: every result in chain order and the one root cause."""

    target: str
    results: tuple[CheckResult, ...]
    root_cause: RootCause | None
    duration_ms: float

    @property
    def status(self) -> Status:
        worst = max((r.status for r in self.results), key=lambda s: s.rank, default=Status.OK)
        return Status.OK if worst is Status.SKIP else worst

    def exit_code(self, strict: bool = False) -> ExitCode:
        if self.status is Status.FAIL or (strict and self.status is Status.WARN):
            return ExitCode.PROBLEM
        return ExitCode.OK
