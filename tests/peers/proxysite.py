"""A reverse proxy (HAProxy, Apache httpd, Caddy) started on a free loopback port with its configuration
in a temporary directory, in the foreground, stopped by its PID. Configurations are templates where
``{port}`` is the proxy's port and ``{dir}`` the directory (plain replacement: braces stay as written).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.peers._common import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    log_says_address_in_use,
    port_accepts,
)


def fill(template: str, port: int, directory: Path, **more: object) -> str:
    text = template.replace("{port}", str(port)).replace("{dir}", str(directory))
    for key, value in more.items():
        text = text.replace("{" + key + "}", str(value))
    return text


@dataclass
class ProxySite:
    kind: str
    port: int
    pid: int
    main: Path
    directory: Path
    texts: dict[Path, str] = field(default_factory=dict)
    proc: ManagedProcess | None = field(default=None, repr=False)
    #: What a proxy's peer adds (Caddy's admin port...).
    extra: dict[str, object] = field(default_factory=dict)

    def line_of(self, needle: str, nth: int = 1, file: Path | None = None) -> int:
        """1-based line of the ``nth`` line of ``file`` (default: the main file) containing ``needle``."""
        path = file or self.main
        hits = [i for i, line in enumerate(self.texts[path].splitlines(), 1) if needle in line]
        assert len(hits) >= nth, f"{needle!r} not in {path}:\n{self.texts[path]}"
        return hits[nth - 1]

    def where(self, needle: str, nth: int = 1, file: Path | None = None) -> str:
        return f"{file or self.main}:{self.line_of(needle, nth, file)}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def start_site(
    kind: str,
    directory: Path,
    write: Callable[[int], Mapping[Path, str]],
    argv: Callable[[int, Path], Sequence[str]],
    *,
    env: dict[str, str] | None = None,
    check: Callable[[Path], None] | None = None,
    ready_timeout: float = 10.0,
) -> ProxySite:
    """Write the files for a free port (the first is the main one), optionally ``check`` them (the proxy's
    own config test), start the proxy and wait until the port accepts; retries a port race twice."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        files = dict(write(port))
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        main = next(iter(files))
        if check is not None:
            check(main)
        proc = ManagedProcess(
            list(argv(port, main)), log=directory / f"{kind}-{attempt}.log", cwd=directory, env=env, name=kind
        ).start()
        if proc.wait_ready(partial(port_accepts, LOOPBACK, port), timeout=ready_timeout):
            assert proc.pid is not None
            return ProxySite(kind, port, proc.pid, main, directory, files, proc)
        if not proc.alive() and log_says_address_in_use(proc.log) and attempt < 2:
            proc.stop()
            continue
        proc.fail_start(f"port {port} not accepting")
    raise AssertionError("unreachable")
