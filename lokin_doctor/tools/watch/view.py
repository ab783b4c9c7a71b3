"""``lokin-doctor watch`` around the engine: options, output (text or JSON lines), exit code."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

from lokin_doctor.tools.common import ToolError
from lokin_doctor.tools.watch.engine import WatchConfig, Watcher, format_event


def main(
    url: str,
    *,
    retries: int,
    delay: float,
    factor: float,
    forever: bool,
    max_delay: float,
    max_time: float | None,
    timeout: float,
    origin: str | None,
    ca_file: str | None,
    insecure: bool,
    json_out: bool,
) -> int:
    """Run the watch; 0 ended connected, 1 gave up / ended disconnected, 130 interrupted."""
    from lokin_doctor.target import TargetError, parse_target

    try:
        target = parse_target(url)
        config = WatchConfig(
            target=target,
            retries=retries,
            delay=delay,
            factor=factor,
            forever=forever,
            max_delay=max_delay,
            max_time=max_time,
            timeout=timeout,
            origin=origin,
            ca_file=ca_file,
            insecure=insecure,
        )
    except (TargetError, ValueError) as exc:
        raise ToolError(str(exc)) from None

    def emit(ev: dict[str, Any]) -> None:
        if json_out:
            sys.stdout.write(json.dumps(ev, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write("\n".join(format_event(ev)) + "\n")
        sys.stdout.flush()

    watcher = Watcher(config, emit)
    summary: dict[str, Any] | None = None

    async def run_until_signal() -> dict[str, Any]:
        # SIGTERM (systemd, docker stop, kill) ends the watch as Ctrl-C does: summary, then exit 130.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        try:
            if task is not None:
                loop.add_signal_handler(signal.SIGTERM, task.cancel)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
        try:
            return await watcher.run()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    # The standard loop: wire.py times handshakes with loop.time(), which uvloop rounds to milliseconds.
    with asyncio.Runner() as runner:
        try:
            summary = runner.run(run_until_signal())
        except KeyboardInterrupt:
            summary = None
    if summary is None:  # interrupted before the engine could write its summary
        watcher.state.result = "interrupted"
        summary = watcher.summary()
    if summary["result"] == "interrupted":
        return 130
    return 0 if summary["result"] == "connected" else 1
