"""At most one action per interval across the deployment."""

from __future__ import annotations

import time
from collections.abc import Callable

from proxy.backplane.interface import Backplane


class RateGate:
    """Lets an action through at most once per ``interval``, deployment-wide.

    The mark is a key that lives for one interval after an action. When the backplane cannot
    be asked, this process's own mark decides, so the limit still holds per replica.
    """

    def __init__(
        self,
        backplane: Backplane,
        key: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Allow one action per ``interval`` seconds across every replica using ``key``."""
        self._backplane = backplane
        self._key = key
        self._interval = interval
        self._clock = clock
        self._local_next = 0.0

    async def admit(self) -> float:
        """Return 0 when the action may go ahead (and mark it), else seconds until it may."""
        if self._interval <= 0:
            return 0.0
        taken = await self._backplane.set_if_absent(self._key, b"1", self._interval)
        if taken is None:
            return self._admit_locally()
        if taken:
            return 0.0
        left = await self._backplane.ttl(self._key)
        return max(left or 0.0, 0.001)

    def _admit_locally(self) -> float:
        now = self._clock()
        if now < self._local_next:
            return self._local_next - now
        self._local_next = now + self._interval
        return 0.0
