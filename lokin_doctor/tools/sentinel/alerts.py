"""Alerts on change, not on every run: the confirmed state of each target, the webhook, ``--on-change``.

**State.** A target is ``up`` or ``down``; ``unknown`` before its first confirmed state (a fresh history). A
failing run counts towards ``down``, a healthy one (ok or warn) towards ``up``. The state changes after
``confirm_down`` consecutive failing runs (``--confirm``, default 2: one blip is not an outage) and after
``confirm_up`` consecutive healthy runs (1: the first success ends the outage, as it is when users get back).
A restarted sentinel picks up the state of the target's latest row in the history, so a restart neither
repeats an alert nor forgets an outage. The first confirmed state of a new target alerts only when it is
``down`` (a target that starts healthy is no news).

**Delivery.** Each change goes to every sink in the background, in order, through a bounded queue: a webhook
that is slow or down never delays a probe. A webhook call has its own timeout and is retried a bounded number
of times with exponential backoff; what cannot be delivered is logged (one line on stderr) and dropped.
``--on-change`` runs a command (no shell: ``shlex.split``) with the JSON report on stdin and ``LOKIN_TARGET``,
``LOKIN_STATE``, ``LOKIN_PREVIOUS_STATE``, ``LOKIN_CODE``, ``LOKIN_RUN_ID`` in its environment, killed (by its
pid) past its time limit. The payload is documented in ``docs/sentinel.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lokin_doctor import __version__
from lokin_doctor.i18n import _
from lokin_doctor.tools.sentinel.records import Run

UP, DOWN, UNKNOWN = "up", "down", "unknown"

#: Webhook delivery: per-call timeout, attempts, first backoff (doubled each time).
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF_S = 1.0
#: ``--on-change``: the command's time limit.
COMMAND_TIMEOUT_S = 30.0
#: Changes waiting for delivery; past that the oldest waiting one is dropped (and logged).
QUEUE_SIZE = 100
#: At the stop, how long the queue may still drain.
DRAIN_S = 5.0

FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Change:
    """A confirmed change of a target's state, with the run that confirmed it."""

    target: str
    state: str
    previous: str
    run: Run
    #: For a recovery: the failing run that opened the outage (its root cause is what ended).
    opener: Run | None = None


class StateTracker:
    """The confirmed state of one target (see the module's docstring)."""

    def __init__(self, confirm_down: int = 2, confirm_up: int = 1, initial: str | None = None) -> None:
        self.confirm_down = max(1, confirm_down)
        self.confirm_up = max(1, confirm_up)
        self.state = initial if initial in (UP, DOWN) else UNKNOWN
        self._streak = 0  # consecutive runs that disagree with the state
        self.opener: Run | None = None  # the first failing run of the current outage (or of the streak)

    def update(self, run: Run) -> tuple[str, str | None]:
        """The state after ``run`` and the previous state when it changed (else None)."""
        wanted = UP if run.healthy else DOWN
        if not run.healthy and (self.state != DOWN and self._streak == 0):
            self.opener = run
        if wanted == self.state:
            self._streak = 0
            return self.state, None
        self._streak += 1
        needed = self.confirm_up if wanted == UP else self.confirm_down
        if self._streak < needed:
            return self.state, None
        previous, self.state, self._streak = self.state, wanted, 0
        return self.state, previous


def payload(change: Change, report_url: str | None = None) -> dict[str, Any]:
    """The webhook's JSON body (``--webhook-format json``); ``text`` is the one-line message."""
    run = change.run
    cause_run = run if change.state == DOWN else (change.opener or run)
    code = cause_run.root_cause
    meaning = fix = None
    if code:
        from lokin_doctor import causes

        found = causes.get(code)
        if found is not None:
            meaning, fix = found.meaning_text(), found.fix_text()
    body: dict[str, Any] = {
        "tool": "lokin-doctor",
        "version": __version__,
        "event": "sentinel.change",
        "target": change.target,
        "state": change.state,
        "previous_state": change.previous,
        "root_cause": code,
        "failing_check": cause_run.failing_check,
        "summary": run.summary,
        "fix": (run.hint or fix) if change.state == DOWN else None,
        "meaning": meaning,
        "time": iso(run.started),
        "started": run.started,
        "run_id": run.id,
        "report_url": report_url,
        "text": text(change, report_url),
    }
    if change.state == UP and change.opener is not None:
        body["outage"] = {
            "start": iso(change.opener.started),
            "seconds": round(run.started - change.opener.started, 1),
            "root_cause": change.opener.root_cause,
            "summary": change.opener.summary,
        }
    return body


def text(change: Change, report_url: str | None = None) -> str:
    """The alert in one line of the user's language (Slack's and Mattermost's ``text``)."""
    run = change.run
    if change.state == DOWN:
        line = _("{target} is DOWN: {code}: {summary}").format(
            target=change.target, code=run.root_cause or "?", summary=run.summary
        )
        if run.hint:
            line += " " + _("Fix: {hint}").format(hint=run.hint)
    else:
        opener = change.opener
        line = _("{target} is back UP").format(target=change.target)
        if opener is not None and change.previous == DOWN:
            line += " " + _("after {seconds:.0f} s down ({code})").format(
                seconds=run.started - opener.started, code=opener.root_cause or "?"
            )
    if report_url:
        line += " " + _("Report: {url}").format(url=report_url)
    return line


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def webhook_body(change: Change, fmt: str, report_url: str | None) -> bytes:
    body = payload(change, report_url)
    if fmt == "slack":  # Slack's and Mattermost's incoming webhooks both take {"text": ...}
        return json.dumps({"text": body["text"]}, ensure_ascii=False).encode("utf-8")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def post(url: str, body: bytes, timeout: float) -> int:
    """One POST (blocking: run in a thread); the HTTP status, or an exception."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"lokin-doctor/{__version__}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the user's URL
        response.read(65536)
        return int(response.status)


Log = Callable[[str], None]


class Alerter:
    """Delivers each change to the webhook and the ``--on-change`` command, in the background."""

    def __init__(
        self,
        *,
        webhook: str | None = None,
        webhook_format: str = "json",
        on_change: Sequence[str] | None = None,
        log: Log,
        report_url: Callable[[Run], str | None] | None = None,
        attempts: int = WEBHOOK_ATTEMPTS,
        backoff: float = WEBHOOK_BACKOFF_S,
        timeout: float = WEBHOOK_TIMEOUT_S,
        command_timeout: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self.webhook = webhook
        self.webhook_format = webhook_format
        self.on_change = list(on_change) if on_change else None
        self.log = log
        self.report_url = report_url or (lambda run: None)
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self.command_timeout = command_timeout
        self.queue: asyncio.Queue[Change] = asyncio.Queue(QUEUE_SIZE)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._worker: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.webhook or self.on_change)

    def start(self) -> None:
        if self.active and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="sentinel-alerts")

    def notify(self, change: Change) -> None:
        """Queue ``change``; never waits (a full queue drops its oldest change, logged)."""
        if not self.active:
            return
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                old = self.queue.get_nowait()
                self.queue.task_done()
                self.dropped += 1
                self.log(
                    _("alerts: too many changes waiting; dropped the one of {target} ({state})").format(
                        target=old.target, state=old.state
                    )
                )
        self.queue.put_nowait(change)

    async def stop(self, drain: float = DRAIN_S) -> None:
        """Let the queue drain for at most ``drain`` seconds, then cancel what is left (logged)."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), drain)
        left = self.queue.qsize()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
        if left:
            self.dropped += left
            self.log(_("alerts: stopped with {n} change(s) not delivered").format(n=left))

    async def _work(self) -> None:
        while True:
            change = await self.queue.get()
            try:
                if self.webhook:
                    await self._send(change)
                if self.on_change:
                    await self._run_command(change)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one broken alert must not stop the next ones
                self.log(_("alerts: {error}").format(error=f"{type(exc).__name__}: {exc}"))
            finally:
                self.queue.task_done()

    async def _send(self, change: Change) -> None:
        assert self.webhook is not None
        body = webhook_body(change, self.webhook_format, self.report_url(change.run))
        delay = self.backoff
        error = ""
        for attempt in range(1, self.attempts + 1):
            try:
                status = await asyncio.wait_for(
                    asyncio.to_thread(post, self.webhook, body, self.timeout), self.timeout + 1.0
                )
                if 200 <= status < 300:
                    self.sent += 1
                    return
                error = f"HTTP {status}"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses this request: sending it again changes nothing
            except (TimeoutError, OSError, ValueError, urllib.error.URLError) as exc:
                error = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        self.failed += 1
        self.log(
            _("webhook {url}: the {state} alert of {target} was not delivered ({error})").format(
                url=_short(self.webhook), state=change.state, target=change.target, error=error
            )
        )

    async def _run_command(self, change: Change) -> None:
        assert self.on_change is not None
        run = change.run
        env = {
            **os.environ,
            "LOKIN_TARGET": change.target,
            "LOKIN_STATE": change.state,
            "LOKIN_PREVIOUS_STATE": change.previous,
            "LOKIN_CODE": (run if change.state == DOWN else (change.opener or run)).root_cause or "",
            "LOKIN_RUN_ID": str(run.id or ""),
        }
        stdin = json.dumps(run.report or payload(change, self.report_url(run)), ensure_ascii=False).encode()
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.on_change,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None,
                env=env,
            )
        except OSError as exc:
            self.log(
                _("--on-change {cmd}: cannot start it ({error})").format(
                    cmd=self.on_change[0], error=exc.strerror or exc
                )
            )
            return
        try:
            await asyncio.wait_for(proc.communicate(stdin), self.command_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # this process's own child, by its pid
            await proc.wait()
            self.log(
                _("--on-change {cmd}: killed after {seconds:g} s").format(
                    cmd=self.on_change[0], seconds=self.command_timeout
                )
            )
            return
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        if proc.returncode:
            self.log(
                _("--on-change {cmd}: exit {code} after {seconds:.1f} s").format(
                    cmd=self.on_change[0], code=proc.returncode, seconds=time.monotonic() - started
                )
            )


def _short(url: str) -> str:
    """The webhook's URL without its path (Slack's secret is in the path)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}/…"
