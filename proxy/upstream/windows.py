"""``Retry-After`` windows: after a 429, no request to that endpoint leaves the deployment."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import structlog

from proxy.backplane.interface import Backplane
from proxy.observability.metrics import Metrics
from proxy.upstream.errors import RateWindowOpen

logger = structlog.get_logger(__name__)

# When a 429 carries no usable Retry-After (missing, negative, garbage), stay away this long.
DEFAULT_RETRY_AFTER = 30.0


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or HTTP-date), within ``cap``.

    A missing, negative or unreadable value gets ``DEFAULT_RETRY_AFTER``; an HTTP-date in
    the past gets 0; nothing exceeds ``cap``. ``now`` is wall-clock time (dates are absolute).
    """
    seconds = DEFAULT_RETRY_AFTER
    text = (value or "").strip()
    if text.isdigit() and text.isascii():
        seconds = float(text)
    elif text:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None and when.tzinfo is not None:
            seconds = max(when.timestamp() - (time.time() if now is None else now), 0.0)
    return min(seconds, cap)


class RateWindows:
    """The windows one replica knows of, per upstream endpoint (``token``, ``products``).

    A window seen here is kept locally and written to the backplane as a key (``key(endpoint)``)
    with that expiry; replicas read its remaining life, never a timestamp, so every replica
    honours it whatever its clock says. While the backplane is unreachable each replica keeps
    the windows it has seen itself.
    """

    def __init__(
        self,
        *,
        backplane: Backplane,
        key: Callable[[str], str],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Track windows on ``clock`` (monotonic), shared through ``backplane``."""
        self._backplane = backplane
        self._key = key
        self._metrics = metrics
        self._clock = clock
        self._until: dict[str, float] = {}

    def left(self, endpoint: str) -> float:
        """Seconds left of the window this replica knows of for ``endpoint`` (0: none)."""
        return max(self._until.get(endpoint, 0.0) - self._clock(), 0.0)

    async def check(self, endpoint: str) -> None:
        """Raise :class:`RateWindowOpen` if a request to ``endpoint`` may not go out now."""
        left = self.left(endpoint)
        if left <= 0:
            remaining = await self._backplane.ttl(self._key(endpoint))
            if remaining:
                left = remaining
                self._until[endpoint] = self._clock() + remaining
                self._metrics.rate_limit_window(endpoint, "shared")
        if left > 0:
            raise RateWindowOpen(
                f"upstream {endpoint} rate limit in force for {left:.1f}s", retry_after=left
            )

    async def open(self, endpoint: str, seconds: float) -> None:
        """Record a 429's window for ``endpoint``, here and for the deployment."""
        until = self._clock() + seconds
        if until > self._until.get(endpoint, 0.0):
            self._until[endpoint] = until
        self._metrics.rate_limit_window(endpoint, "upstream")
        logger.warning("upstream_rate_limited", endpoint=endpoint, retry_after=round(seconds, 3))
        if seconds > 0:
            await self._backplane.hold(self._key(endpoint), seconds)
