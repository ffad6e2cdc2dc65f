"""The in-process backplane: one replica alone, no Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from proxy.backplane.topics import Topics


class MemoryBackplane:
    """:class:`~proxy.backplane.interface.Backplane` in this process's memory.

    Used when no Redis is configured. It can never fail, so ``None`` ("unknown") is never
    answered; expired values are dropped when read.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty backplane; ``clock`` is monotonic seconds."""
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self._topics = Topics()

    @property
    def state(self) -> str:
        """Always ``memory``: there is no backend to lose."""
        return "memory"

    def _live(self, key: str) -> tuple[bytes, float] | None:
        item = self._items.get(key)
        if item is not None and self._clock() >= item[1]:
            del self._items[key]
            return None
        return item

    async def get(self, key: str) -> bytes | None:
        """Return the live value under ``key``."""
        item = self._live(key)
        return None if item is None else item[0]

    async def get_with_ttl(self, key: str) -> tuple[bytes, float] | None:
        """Return the live value and its seconds left."""
        item = self._live(key)
        return None if item is None else (item[0], item[1] - self._clock())

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        self._items[key] = (value, self._clock() + ttl)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Keep ``value`` unless a live value exists."""
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete ``key`` while it holds ``value``."""
        item = self._live(key)
        if item is None or item[0] != value:
            return False
        del self._items[key]
        return True

    async def ttl(self, key: str) -> float:
        """Seconds ``key`` has left, 0 when absent."""
        item = self._live(key)
        return 0.0 if item is None else item[1] - self._clock()

    async def hold(self, key: str, ttl: float) -> None:
        """Make ``key`` live at least ``ttl`` more seconds."""
        item = self._live(key)
        until = self._clock() + ttl
        if item is None or item[1] < until:
            self._items[key] = (b"1" if item is None else item[0], until)

    async def publish(self, topic: str) -> None:
        """Wake this process's waiters on ``topic`` (there is nobody else)."""
        self._topics.wake(topic)

    def waiter(self, topic: str) -> asyncio.Event:
        """Return the event the next announcement of ``topic`` sets."""
        return self._topics.waiter(topic)

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement of ``topic``."""
        self._topics.on(topic, listener)

    async def ping(self) -> bool:
        """Report reachable: memory always is."""
        return True

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Drop everything."""
        self._items.clear()
