"""What a run of the CLI talks to: its streams, its environment variables, whether stdout is a terminal.

:func:`lokin_doctor.cli.main` takes one, so tests run the CLI in-process with a :class:`MockEnvironment`
and read what it wrote (model: httpie's ``Environment`` / ``MockEnvironment``). Standard library only.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Environment:
    """The process's own streams and variables (the default)."""

    stdin: IO[str] = field(default_factory=lambda: sys.stdin)
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdout_isatty: bool | None = None

    def __post_init__(self) -> None:
        if self.stdout_isatty is None:
            isatty = getattr(self.stdout, "isatty", None)
            self.stdout_isatty = bool(isatty and isatty())

    @property
    def colors(self) -> bool:
        """Colour only on a terminal, never under NO_COLOR (https://no-color.org) or TERM=dumb."""
        return bool(
            self.stdout_isatty and self.environ.get("NO_COLOR") is None and self.environ.get("TERM") != "dumb"
        )


class MockEnvironment(Environment):
    """In-memory streams, a given set of variables (default: none but a C locale), not a terminal."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        stdin: str = "",
        stdout_isatty: bool = False,
    ) -> None:
        super().__init__(
            stdin=io.StringIO(stdin),
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            environ=dict(environ if environ is not None else {"LANG": "C.UTF-8"}),
            stdout_isatty=stdout_isatty,
        )

    @property
    def out(self) -> str:
        assert isinstance(self.stdout, io.StringIO)
        return self.stdout.getvalue()

    @property
    def err(self) -> str:
        assert isinstance(self.stderr, io.StringIO)
        return self.stderr.getvalue()


#: The environment of the run under way (``cli.main`` sets it); renderers ask it about colour and width.
_current: Environment | None = None


def current() -> Environment:
    return _current if _current is not None else Environment()


def set_current(env: Environment | None) -> None:
    global _current
    _current = env
