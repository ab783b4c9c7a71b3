"""``lokin-doctor serve`` in the foreground: run until SIGTERM/SIGINT, then stop gracefully.

Exit codes: 0 after a clean stop (signal), 1 when the server cannot start (one line on stderr).
"""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import Any

from lokin_doctor.server.app import LokinServer
from lokin_doctor.server.config import ServerConfig
from lokin_doctor.server.logs import EventLog, one_line


def _exception_handler(log: EventLog) -> Any:
    """A loop exception handler that logs one line instead of asyncio's traceback."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message") or "unexpected error in the event loop")
        if isinstance(exc, BaseException):
            message = f"{message}: {one_line(exc)}"
            if isinstance(exc, OSError) and exc.errno == 24:  # EMFILE while accepting
                message += " (raise the open files limit: ulimit -n)"
        log.emit("asyncio", message, level="error")

    return handle


#: Generation-0 threshold of the serve process (bench/RESULTS.md, R1). Python's default (700)
#: runs a collection every 700 container allocations, and with thousands of open connections the
#: older generations walk every object of every connection: 35-40 % of serve's CPU at 10k.
#: Connections free their objects by reference counting; cycles are still collected, less often.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc_for_serving() -> None:
    """Raise the GC thresholds of this process (the ``serve`` command only, not in-process servers)."""
    gc.set_threshold(*GC_THRESHOLDS)


async def serve_until_signal(config: ServerConfig, *, tune_gc: bool = False) -> int:
    """Start the server, wait for SIGTERM or SIGINT, stop it gracefully.

    A second signal during the stop cuts the remaining connections at once.

    Args:
        config: The server configuration.
        tune_gc: Freeze the start-up objects once listening (with :func:`tune_gc_for_serving`).

    Returns:
        The process exit code: 0 after a clean stop, 1 when the server could not start.
    """
    loop = asyncio.get_running_loop()
    log = EventLog(config.log_format, quiet=config.quiet)
    loop.set_exception_handler(_exception_handler(log))
    app = LokinServer(config)
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            log.emit("shutdown", f"{signum.name} again: cutting every connection now", level="warning")
            app.abort()
            return
        log.emit("signal", f"received {signum.name}", signal=signum.name)
        stop.set()

    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            pass
    try:
        # Handlers are in place before the ready line, so a supervisor that signals as soon as
        # it reads "ready" always gets the graceful stop.
        await app.start()  # ServerStartError goes up to the command's entry point, which says it (exit 1)
        if tune_gc:
            # Everything allocated at start-up (modules, the app, the page) moves to the permanent
            # generation: the collector never walks it again (bench/RESULTS.md, R1).
            gc.collect()
            gc.freeze()
        try:
            await stop.wait()
        finally:
            await app.close()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
    return 0


def loop_factory() -> object | None:
    # uvloop is optional (the "speed" extra); the standard loop works the same, only slower.
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
