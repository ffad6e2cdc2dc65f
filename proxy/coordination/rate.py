"""At most one action per interval, per process or across the deployment."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from proxy.coordination.client import RedisGuard


class RateGate(Protocol):
    """Lets an action through at most once per interval."""

    async def admit(self) -> float:
        """Return 0 when the action may go ahead (and mark it), else seconds until it may."""
        ...


class LocalRateGate:
    """A gate for one process."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        """Allow one action per ``interval`` seconds."""
        self._interval = interval
        self._clock = clock
        self._next = 0.0

    async def admit(self) -> float:
        """Return 0 and mark, or the seconds left."""
        now = self._clock()
        if now < self._next:
            return self._next - now
        self._next = now + self._interval
        return 0.0


class RedisRateGate:
    """A gate for the deployment: a Redis key that exists for one interval after an action.

    When Redis cannot be asked, the process's own gate decides, so the limit still holds
    per replica.
    """

    def __init__(self, guard: RedisGuard, key: str, interval: float) -> None:
        """Allow one action per ``interval`` seconds across every replica using ``key``."""
        self._guard = guard
        self._key = key
        self._interval = interval
        self._fallback = LocalRateGate(interval)

    async def admit(self) -> float:
        """Return 0 and mark, or the seconds left (from the key's remaining life)."""
        if self._interval <= 0:
            return 0.0
        millis = max(int(self._interval * 1000), 1)
        client = self._guard.client

        async def mark() -> bool:
            return bool(await client.set(self._key, b"1", nx=True, px=millis))

        taken = await self._guard.call("rate", mark, None)
        if taken is None:
            return await self._fallback.admit()
        if taken:
            return 0.0
        left = await self._guard.call("rate", lambda: client.pttl(self._key), None)
        return max(float(left) / 1000, 0.001) if isinstance(left, int) and left > 0 else 0.001
