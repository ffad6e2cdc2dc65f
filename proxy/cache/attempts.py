"""Fetching the catalog from its loader, and what the last attempt left: a backoff, a failure."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from proxy.backoff import Backoff
from proxy.upstream.errors import UpstreamError, back_off

RETRY_FIRST = 1.0
"""Seconds before the first retry of a failed load (then doubling)."""
RETRY_MAX = 30.0
"""Retries are never more than this many seconds apart."""


class Payload(Protocol):
    """What a loader returns: the bytes to serve and their content type."""

    @property
    def body(self) -> bytes:
        """The exact body bytes."""
        ...

    @property
    def content_type(self) -> str:
        """The content type to serve the body with."""
        ...


class LoadAttempts:
    """Runs the loader; after a failure, knows what failed and when the next attempt may go.

    Failed loads back off from `RETRY_FIRST` doubling to `RETRY_MAX`, jittered, and never
    inside a ``Retry-After`` window the failure named.
    """

    def __init__(
        self,
        loader: Callable[[], Awaitable[Payload]],
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load through ``loader``; ``timer`` (monotonic) paces the retries."""
        self._loader = loader
        self._timer = timer
        self._backoff = Backoff(first=RETRY_FIRST, cap=RETRY_MAX, clock=timer)
        self._failure: UpstreamError | None = None

    @property
    def failure(self) -> UpstreamError | None:
        """What the last attempt failed with; None once one succeeded (here or elsewhere)."""
        return self._failure

    def delay(self) -> float:
        """Seconds until the next attempt may go (0: now)."""
        return self._backoff.delay()

    async def load(self) -> Payload:
        """Run the loader once; on failure, remember it and back off, then raise it."""
        try:
            payload = await self._loader()
        except Exception as exc:
            back_off(self._backoff, exc, self._timer())
            self._failure = (
                exc if isinstance(exc, UpstreamError) else UpstreamError(f"load failed: {exc}")
            )
            raise
        self.succeeded()
        return payload

    def succeeded(self) -> None:
        """Note a success: a load here, or another replica's fresh entry (the upstream answers)."""
        self._backoff.succeeded()
        self._failure = None

    def failed_unseen(self) -> None:
        """Back off after a fill that failed before the loader ran (no tight retry loop)."""
        if self._backoff.delay() <= 0:
            self._backoff.failed()
