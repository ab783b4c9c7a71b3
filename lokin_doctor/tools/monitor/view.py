"""``lokin-doctor monitor`` output: rich Live on a terminal, plain snapshots when piped, JSON for scripts."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lokin_doctor.tools.monitor.engine import Monitor, render

#: With --once the CPU % is measured over this much time (psutil needs two readings).
ONCE_CPU_SAMPLE_S = 0.2


def main(*, port: int, interval: float, count: int | None, once: bool, json_out: bool, health: bool) -> int:
    mon = Monitor(port, health=health)
    try:
        if once:
            listeners, _, _ = mon.sockets()
            pids = [li["pid"] for li in listeners if li["pid"] is not None]
            if pids:
                mon.prime(pids)
                time.sleep(ONCE_CPU_SAMPLE_S)
            doc = mon.snapshot()
            if json_out:
                sys.stdout.write(json.dumps(doc, indent=2) + "\n")
            else:
                _console().print(render(doc))
            return 0 if doc["listening"] else 1
        if json_out:
            n = 0
            while count is None or n < count:
                t0 = time.monotonic()
                sys.stdout.write(json.dumps(mon.snapshot()) + "\n")
                sys.stdout.flush()
                n += 1
                if count is None or n < count:
                    time.sleep(max(0.0, interval - (time.monotonic() - t0)))
            return 0
        return _live(mon, interval, count)
    except KeyboardInterrupt:
        return 130


def _console() -> Any:
    from rich.console import Console  # noqa: TID251 - monitor is a live view

    return Console(highlight=False)


def _live(mon: Monitor, interval: float, count: int | None) -> int:
    from rich.live import Live  # noqa: TID251 - monitor is a live view

    console = _console()
    if not console.is_terminal:
        n = 0
        while count is None or n < count:
            t0 = time.monotonic()
            console.print(render(mon.snapshot()))
            n += 1
            if count is None or n < count:
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        return 0
    with Live(console=console, auto_refresh=False, transient=False) as live:
        n = 0
        while count is None or n < count:
            t0 = time.monotonic()
            live.update(render(mon.snapshot()), refresh=True)
            n += 1
            if count is None or n < count:
                time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    return 0
