"""``serve --workers N``: N serving processes on one port under a small parent.

Processes, not threads (the websockets deployment guide's advice: one event loop per core). Each
worker is a full ``serve`` (``python -m lokin_doctor.server.workers``, its configuration in the
environment) that binds the port with ``SO_REUSEPORT``: the kernel spreads new connections over the
workers' listening sockets. Broadcasts cross workers through Redis (``--redis``, mandatory with
more than one worker), exactly as they cross hosts.

The parent:

* reserves the port (with ``--port 0`` it picks it: a bound, non-listening ``SO_REUSEPORT``
  socket holds the number until the end, and receives no connections);
* starts the workers in their own process group (a Ctrl-C on the terminal reaches the parent only,
  which forwards it once) and waits until each has written its first status file;
* restarts a worker that dies (after 0.5 s, doubling up to 10 s when it keeps dying within 10 s);
* forwards SIGTERM/SIGINT: every worker closes its clients with 1001 within ``--shutdown-timeout``,
  the parent kills what is left after that and exits 0; a second signal is forwarded too (the
  workers then cut their connections at once);
* shares a status directory with the workers, from which any worker answers ``/health`` and
  ``/metrics`` for the whole set (:mod:`lokin_doctor.server.cluster`).

A worker whose parent disappears (SIGKILL) notices within a second and stops gracefully.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lokin_doctor.i18n import _
from lokin_doctor.server.cluster import worker_file, write_parent
from lokin_doctor.server.config import ServerConfig, ServerStartError
from lokin_doctor.server.logs import EventLog

__all__ = ["WORKER_ENV", "Worker", "auto_workers", "run_workers"]

#: The environment variable that carries a worker's ServerConfig (JSON).
WORKER_ENV = "LOKIN_SERVE_WORKER"

RESTART_MIN = 0.5
RESTART_MAX = 10.0
#: A worker that lived less than this is "dying quickly": its restart delay doubles.
QUICK_DEATH = 10.0
#: Seconds a worker has to bind and write its first status file.
START_TIMEOUT = 20.0


def auto_workers() -> int:
    """``--workers auto``: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    delay: float = RESTART_MIN
    restart_at: float = 0.0
    restarts: int = 0
    history: list[int] = field(default_factory=list)  # pids, oldest first

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _reserve_port(host: str, port: int) -> tuple[socket.socket | None, int, str | None]:
    """(holder socket or None, the port, error) before any worker starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return None, port, f"cannot listen on --host {host!r}: {exc.strerror or exc}"
    family, _type, _proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if port == 0:
            # Holds the number the workers bind; a socket that does not listen gets no connections.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            return sock, int(sock.getsockname()[1]), None
        # A plain bind: fails if anything listens there already, even another SO_REUSEPORT set
        # (which the kernel would otherwise let the workers join silently).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.close()
        return None, port, None
    except OSError as exc:
        sock.close()
        holder = None
        with contextlib.suppress(Exception):
            from lokin_doctor.instruments.sysinfo import describe_holder

            holder = describe_holder(port)
        if exc.errno == errno.EADDRINUSE:
            who = (
                _("by {holder}").format(holder=holder)
                if holder
                else _("by another process (run as root to see which)")
            )
            return (
                None,
                port,
                _("port {port} is already in use {who}; stop it or choose another port with --port").format(
                    port=port, who=who
                ),
            )
        return (
            None,
            port,
            _("cannot listen on {where}: {error}").format(where=f"{host}:{port}", error=exc.strerror or exc),
        )


class Parent:
    """The supervising process of ``serve --workers N``."""

    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.log = EventLog(config.log_format, quiet=config.quiet)
        self.workers = [Worker(i) for i in range(count)]
        self.directory = tempfile.mkdtemp(prefix="lokin-workers-")
        self.wake = threading.Event()
        self.signals: list[signal.Signals] = []
        self.restarts = 0
        self.port = config.port

    # -- workers ---------------------------------------------------------------------------------

    def _spawn(self, worker: Worker) -> None:
        cfg = dataclasses.replace(
            self.config,
            port=self.port,
            reuse_port=True,
            workers_dir=self.directory,
            worker_index=worker.index,
        )
        env = {**os.environ, WORKER_ENV: json.dumps(dataclasses.asdict(cfg)), "PYTHONUNBUFFERED": "1"}
        with contextlib.suppress(FileNotFoundError):
            worker_file(self.directory, worker.index).unlink()
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "lokin_doctor.server.workers"],
            env=env,
            stdin=subprocess.DEVNULL,
            process_group=0,  # a terminal's Ctrl-C reaches the parent only; it forwards the signal once
        )
        worker.started = time.monotonic()
        worker.ready = False
        worker.history.append(worker.proc.pid)
        self._write_parent()

    def _is_ready(self, worker: Worker) -> bool:
        try:
            doc = json.loads(worker_file(self.directory, worker.index).read_text())
        except (OSError, ValueError):
            return False
        return bool(doc.get("pid") == worker.pid)

    def _write_parent(self) -> None:
        with contextlib.suppress(OSError):
            write_parent(
                self.directory,
                {
                    "pid": os.getpid(),
                    "workers_wanted": self.count,
                    "restarts": self.restarts,
                    "port": self.port,
                    "workers": [
                        {"index": w.index, "pid": w.pid, "restarts": w.restarts} for w in self.workers
                    ],
                },
            )

    def _signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signal.Signals(signum))
        self.wake.set()

    def _forward(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            if worker.alive():
                assert worker.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signum)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> int:
        holder, self.port, error = _reserve_port(self.config.host, self.config.port)
        if error:
            raise ServerStartError(error)
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            if holder is not None:
                holder.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self) -> int:
        cfg = self.config
        self.log.emit(
            "workers",
            f"starting {self.count} worker processes on port {self.port} (SO_REUSEPORT)",
            workers=self.count,
            port=self.port,
            redis=cfg.redis,
        )
        for worker in self.workers:
            self._spawn(worker)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(w.ready for w in self.workers):
            for worker in self.workers:
                if not worker.ready and self._is_ready(worker):
                    worker.ready = True
                elif not worker.alive():
                    code = worker.proc.returncode if worker.proc is not None else None
                    message = _("worker {index} could not start (exit {code})").format(
                        index=worker.index, code=code
                    )
                    self._stop(signal.SIGTERM, log=False)
                    raise ServerStartError(message)
            if self.signals or time.monotonic() > deadline:
                self._stop(signal.SIGTERM, log=False)
                if not self.signals:
                    raise ServerStartError(
                        _("the workers did not start within {seconds:g} s").format(seconds=START_TIMEOUT)
                    )
                return 0
            self.wake.wait(0.05)
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "") else ("::1" if cfg.host == "::" else cfg.host)
        host = f"[{host}]" if ":" in host else host
        scheme = "wss" if cfg.tls else "ws"
        self.log.emit(
            "ready",
            f"{self.count} workers accepting WebSocket connections",
            url=f"{scheme}://{host}:{self.port}/",
            port=self.port,
            pid=os.getpid(),
            workers=",".join(str(w.pid) for w in self.workers),
        )
        while not self.signals:
            self.wake.wait(0.1)
            self.wake.clear()
            now = time.monotonic()
            for worker in self.workers:
                if self.signals:
                    break
                if worker.proc is not None and not worker.alive():
                    self._died(worker, now)
                elif worker.proc is None and now >= worker.restart_at:
                    self._spawn(worker)
                elif worker.proc is not None and not worker.ready and self._is_ready(worker):
                    worker.ready = True
                    self.log.emit(
                        "workers", f"worker {worker.index} restarted", worker=worker.index, pid=worker.pid
                    )
        return self._stop(self.signals[0])

    def _died(self, worker: Worker, now: float) -> None:
        assert worker.proc is not None
        code = worker.proc.returncode
        lived = now - worker.started
        if lived >= QUICK_DEATH:
            worker.delay = RESTART_MIN  # it had been running fine: restart soon
        wait = worker.delay
        worker.delay = min(RESTART_MAX, wait * 2)  # the next quick death waits twice as long
        worker.restart_at = now + wait
        self.log.emit(
            "workers",
            f"worker {worker.index} (pid {worker.pid}) exited with {code} after {lived:.1f} s; "
            f"restarting in {wait:g} s",
            level="warning",
            worker=worker.index,
            pid=worker.pid,
            code=code,
        )
        with contextlib.suppress(FileNotFoundError):
            worker_file(self.directory, worker.index).unlink()
        worker.proc = None
        worker.restarts += 1
        self.restarts += 1
        self._write_parent()

    def _stop(self, signum: signal.Signals, *, log: bool = True) -> int:
        """Forward ``signum`` to every worker, wait for them (shutdown_timeout), kill the rest; exit 0."""
        cfg = self.config
        if log:
            self.log.emit(
                "signal", f"received {signum.name}: stopping {self.count} workers", signal=signum.name
            )
        self._forward(signum)
        forwarded = 1
        deadline = time.monotonic() + cfg.shutdown_timeout + 1.0
        while any(w.alive() for w in self.workers) and time.monotonic() < deadline:
            if len(self.signals) > forwarded:  # a second Ctrl-C: the workers cut their connections
                forwarded = len(self.signals)
                self._forward(self.signals[-1])
            self.wake.wait(0.05)
            self.wake.clear()
        left = [w for w in self.workers if w.alive()]
        for worker in left:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()
        for worker in self.workers:
            if worker.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(2)
        if log:
            self.log.emit(
                "stopped",
                f"{self.count} workers stopped"
                + (f" ({len(left)} killed after the timeout)" if left else ""),
                restarts=self.restarts,
            )
        return 0


def run_workers(config: ServerConfig, count: int) -> int:
    """Run ``count`` workers on ``config.port`` until SIGTERM/SIGINT; the process exit code."""
    return Parent(config, count).run()


# -- the worker process ------------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """Stop this worker (SIGTERM to itself) when its parent is gone."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _worker_main() -> int:
    import asyncio

    from lokin_doctor.server.run import loop_factory, serve_until_signal, tune_gc_for_serving

    fields = json.loads(os.environ.pop(WORKER_ENV))
    fields["allow_origins"] = tuple(fields.get("allow_origins") or ())
    config = ServerConfig(**fields)
    EventLog.context = {"worker": config.worker_index}
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    tune_gc_for_serving()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:  # type: ignore[arg-type]
            return runner.run(serve_until_signal(config, tune_gc=True))
    except ServerStartError as exc:
        # A worker is a process of its own, not a command: its entry point says why it could not start,
        # the parent (whose error cli.main prints) then names the worker.
        sys.stderr.write("lokin-doctor: " + _("error: {message}").format(message=exc) + "\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(_worker_main())
