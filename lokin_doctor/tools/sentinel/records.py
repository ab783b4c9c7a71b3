"""What the sentinel keeps: one run of one target, an incident, a target's current state. Pure data.

The history (``history.py``) stores and reads these; the engine makes them; the metrics, the status page and
the alerts read them. Times are Unix seconds (UTC); durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The phases of the chain whose durations the sentinel records, by the check id that measures each, under
#: blackbox_exporter's phase names where one exists (``probe_..._duration_seconds{phase=...}``).
PHASES: dict[str, str] = {
    "dns": "resolve",
    "tcp": "connect",
    "tls": "tls",
    "handshake": "handshake",
    "session": "first_message",
}


@dataclass(frozen=True)
class Run:
    """One diagnosis of one target.

    Attributes:
        target: the target as the sentinel names it (the URL, credentials redacted).
        started: when the run began.
        duration: its wall time.
        status: the report's status: ``ok``, ``warn`` or ``fail``.
        root_cause: the root cause's code (``tcp.refused``), None when healthy.
        failing_check: the id of the check the root cause came from (``tcp``), None when healthy.
        summary: the root cause's one sentence, or the healthy summary, in the language of the run.
        hint: the root cause's fix, None when healthy.
        phases: seconds per phase (keys of :data:`PHASES`' values) for the checks that ran.
        cert_not_after: the server certificate's expiry time, when the run saw one.
        report: the whole JSON report (``formats`` schema); None for a folded repeat.
        repeats: how many identical consecutive healthy runs this row stands for (compact storage).
        last_started: when the last of those repeats began (== started when repeats == 1).
        id: the history's row id, None before it is stored.
        state: the sentinel's confirmed state after this run, ``up`` or ``down`` (``--confirm``: one blip does
            not make a target down); None when not known (the run's own status then stands for it).

    ``status`` is ``cut`` for a run the sentinel's stop cut before it finished (kept, never a state change).
    """

    target: str
    started: float
    duration: float
    status: str
    root_cause: str | None = None
    failing_check: str | None = None
    summary: str = ""
    hint: str | None = None
    phases: dict[str, float] = field(default_factory=dict)
    cert_not_after: float | None = None
    report: dict[str, Any] | None = None
    repeats: int = 1
    last_started: float | None = None
    id: int | None = None
    state: str | None = None

    @property
    def healthy(self) -> bool:
        """A run that would not alert: ok or warn (warnings are not an outage; a cut run is no verdict)."""
        return self.status != "fail"


@dataclass(frozen=True)
class Incident:
    """A failure and the recovery that ended it (``end`` None while it lasts).

    ``root_cause``/``failing_check`` are those of the first failing run; ``causes`` every distinct root cause
    seen during the incident, in order; ``runs`` how many failing runs it spans.
    """

    target: str
    start: float
    end: float | None
    root_cause: str | None
    failing_check: str | None
    summary: str
    hint: str | None
    first_run: int
    last_run: int
    runs: int
    causes: tuple[str, ...] = ()

    @property
    def ongoing(self) -> bool:
        return self.end is None

    def length(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start
