"""What a check receives: the settings, the run's one deadline, and facts earlier checks found."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lokin_doctor.model import CheckResult
from lokin_doctor.settings import Settings
from lokin_doctor.target import Target

T = TypeVar("T")


@dataclass
class Context:
    """Shared by the checks of one run.

    ``facts`` is how a check hands data to the checks that depend on it (the addresses DNS found,
    the addresses TCP reached, the open connection of the handshake...). Keys are documented where
    they are written.
    """

    settings: Settings
    deadline: float
    debug: bool = False
    facts: dict[str, Any] = field(default_factory=dict)
    results: dict[str, CheckResult] = field(default_factory=dict)
    _memo: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return self.settings.target

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    async def once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once per run and share its result (psutil scans, TLS contexts...)."""
        fut = self._memo.get(key)
        if fut is None:
            fut = asyncio.ensure_future(fn())
            self._memo[key] = fut
        return await asyncio.shield(fut)

    async def blocking(self, key: str, fn: Callable[[], T]) -> T:
        """Run a blocking call once per run, in a thread."""

        async def call() -> T:
            return await asyncio.to_thread(fn)

        return await self.once(key, call)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = self.facts.get("_ssl_context")
        if ctx is None:
            from lokin_doctor.instruments.wire import make_ssl_context

            s = self.settings
            ctx = make_ssl_context(s.ca_file, s.insecure, s.client_cert, s.client_key)
            self.facts["_ssl_context"] = ctx
        return ctx
