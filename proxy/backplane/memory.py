"""The in-process backplane: one replica alone, no Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.backplane.interface import Appended, LogAppend, LogKeys, LogState
from proxy.backplane.topics import Topics


@dataclass
class _Log:
    epoch: str | None = None
    last: int = 0
    items: list[bytes] = field(default_factory=list)
    snapshots: dict[int, bytes] = field(default_factory=dict)


class MemoryBackplane:
    """:class:`~proxy.backplane.interface.Backplane` in this process's memory.

    Used when no Redis is configured. It can never fail, so ``None`` ("unknown") is never
    answered; expired values are dropped when read.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty backplane; ``clock`` is monotonic seconds."""
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self._logs: dict[str, _Log] = {}
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

    async def log_read(self, log: LogKeys, count: int) -> LogState:
        """Return the log as kept."""
        kept = self._logs.get(log.head, _Log())
        return LogState(kept.epoch, kept.last, tuple(kept.items[:count]))

    async def log_snapshot(self, log: LogKeys, number: int) -> bytes | None:
        """Return a kept snapshot."""
        kept = self._logs.get(log.head)
        return None if kept is None else kept.snapshots.get(number)

    async def log_append(self, log: LogKeys, append: LogAppend) -> tuple[Appended, str]:
        """Append the next item if the log is as read, trimming the oldest past the limits."""
        kept = self._logs.setdefault(log.head, _Log())
        if append.epoch != kept.epoch or append.last != kept.last:
            return Appended.CONFLICT, kept.epoch or ""
        if kept.epoch is None:
            kept.epoch = append.new_epoch
        kept.last += 1
        kept.items.insert(0, append.item)
        kept.snapshots[kept.last] = append.snapshot
        size = sum(map(len, kept.snapshots.values()))
        while len(kept.items) > 1 and (
            len(kept.items) > append.max_items or size > append.max_bytes
        ):
            kept.items.pop()
            size -= len(kept.snapshots.pop(kept.last - len(kept.items), b""))
        return Appended.RECORDED, kept.epoch

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
        self._logs.clear()
