"""The sentinel's and history's own option values: durations, sizes, --keep, --jitter, times, the webhook URL,
the --on-change command, the metrics address, the history path. Each parser returns the value or raises
:class:`~lokin_doctor.validate.UsageError` naming the option (exit 2, before any traffic)."""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil

from lokin_doctor.i18n import _
from lokin_doctor.validate import UsageError

_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
#: The smallest --keep size: SQLite's few pages plus a handful of reports.
MIN_KEEP_BYTES = 64 * 1024


def duration(text: str) -> float | None:
    """``90s``, ``15m``/``15min``, ``12h``, ``30d``, ``2w`` (a bare number is seconds); None if not one."""
    m = _AMOUNT.fullmatch(text)
    if not m:
        return None
    unit = m.group(2).lower() or "s"
    if unit not in _DURATION_UNITS:
        return None
    value = float(m.group(1)) * _DURATION_UNITS[unit]
    return value if math.isfinite(value) else None


def size(text: str) -> int | None:
    """``500MB``, ``2GB`` (powers of 1000), ``64KiB``, ``1GiB`` (powers of 1024); None if not one."""
    m = _AMOUNT.fullmatch(text)
    if not m or not m.group(2) or m.group(2).lower() not in _SIZE_UNITS:
        return None
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_keep(text: str) -> tuple[float | None, int | None]:
    """``--keep``: an age, a size, both (``30d,500MB``), or ``all``."""
    example = _("use an age (30d, 12h), a size (500MB, 1GiB), both (30d,500MB) or all")
    if text.strip().lower() in ("all", "forever"):
        return None, None
    age: float | None = None
    limit: int | None = None
    parts = [p for p in text.split(",")]
    if not text.strip() or len(parts) > 2:
        raise UsageError(
            _("invalid --keep {value!r}; {example}").format(value=text, example=example), "--keep"
        )
    for part in parts:
        as_size = size(part)
        as_age = duration(part) if as_size is None else None
        if as_size is not None and limit is None:
            if as_size < MIN_KEEP_BYTES:
                raise UsageError(
                    _("--keep {value!r}: a size of at least 64KiB, please").format(value=part.strip()),
                    "--keep",
                )
            limit = as_size
        elif as_age is not None and age is None and part.strip()[-1:].isalpha():
            if as_age < 60:
                raise UsageError(
                    _("--keep {value!r}: an age of at least 1 minute, please").format(value=part.strip()),
                    "--keep",
                )
            age = as_age
        else:
            raise UsageError(
                _("invalid --keep {value!r}; {example}").format(value=text, example=example), "--keep"
            )
    return age, limit


def parse_jitter(text: str) -> float:
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 0.5):
        raise UsageError(
            _("invalid --jitter {value!r}; give a fraction from 0 to 0.5 of --every (0.1 or 10%)").format(
                value=text
            ),
            "--jitter",
        )
    return value


def parse_time(text: str, option: str, now: float) -> float:
    """``--since``/``--until``: an ISO time (``2026-12-03``, ``2026-12-03T06:00``, local unless it says its
    zone) or an age back from now (``2h``, ``7d``, ``30min``)."""
    import datetime as dt

    age = duration(text)
    if age is not None and text.strip()[-1:].isalpha():
        return now - age
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            _(
                "invalid {option} {value!r}; give an ISO time (2026-12-03, 2026-12-03T06:00) or an age (2h, 7d)"
            ).format(option=option, value=text),
            option,
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as the list shows it
    return when.timestamp()


def webhook_url(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in url.strip()):
        raise UsageError(
            _(
                "invalid --webhook {value!r}; give an http:// or https:// URL, e.g. https://hooks.slack.com/..."
            ).format(value=url),
            "--webhook",
        )
    return url.strip()


def on_change_argv(text: str) -> tuple[str, ...]:
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise UsageError(
            _("invalid --on-change {value!r}: {error}").format(value=text, error=exc), "--on-change"
        ) from None
    if not argv:
        raise UsageError(_("--on-change is empty; give a command to run"), "--on-change")
    program = argv[0]
    found = (
        shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
    )
    if found is None or os.path.isdir(found):
        raise UsageError(
            _(
                "--on-change: {program!r} is not an executable program (found neither as a path nor in PATH)"
            ).format(program=program),
            "--on-change",
        )
    return tuple(argv)


def metrics_host(host: str) -> str:
    import ipaddress

    value = host.strip().strip("[]")
    if value == "localhost":
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise UsageError(
            _(
                "invalid --metrics-host {value!r}; give an IP address to listen on (127.0.0.1, ::1, 0.0.0.0)"
            ).format(value=host),
            "--metrics-host",
        ) from None


def history_path(value: str | None) -> str:
    from lokin_doctor.tools.sentinel.history import default_path

    if value is None:
        return str(default_path())
    if not value.strip():
        raise UsageError(_("--history is empty; give a file path"), "--history")
    if os.path.isdir(value):
        raise UsageError(
            _("--history {path!r} is a directory; give a file path (e.g. {path}/history.sqlite)").format(
                path=value
            ),
            "--history",
        )
    return value


def check_value(problem: str | None, option: str) -> None:
    if problem is not None:
        raise UsageError(problem, option)
