"""A third backplane, written from docs/architecture.md's "new backend" recipe and nothing else.

It keeps everything in plain dictionaries, so it is no real backend: it exists to show that
the :class:`~proxy.backplane.interface.Backplane` protocol is all a backend must offer (the
contract tests and the version store run on it as on memory and Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from proxy.backplane.interface import Appended, LogAppend, LogKeys, LogState
from proxy.backplane.topics import Topics


class MinimalBackplane:
    """Values with a deadline, numbered logs as lists, announcements in this process."""

    def __init__(self) -> None:
        """Start empty."""
        self.values: dict[str, tuple[bytes, float]] = {}
        self.logs: dict[str, tuple[str | None, int, list[bytes], dict[int, bytes]]] = {}
        self.topics = Topics()

    @property
    def state(self) -> str:
        """Never failing."""
        return "ok"

    def _value(self, key: str) -> tuple[bytes, float] | None:
        found = self.values.get(key)
        return found if found is not None and found[1] > time.monotonic() else None

    async def get(self, key: str) -> bytes | None:
        """The live value."""
        found = self._value(key)
        return None if found is None else found[0]

    async def get_with_ttl(self, key: str) -> tuple[bytes, float] | None:
        """The live value and its seconds left."""
        found = self._value(key)
        return None if found is None else (found[0], found[1] - time.monotonic())

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        self.values[key] = (value, time.monotonic() + ttl)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Keep ``value`` unless a live one exists."""
        if self._value(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete_if_equal(self, key: str, value: bytes) -> bool:
        """Delete while it holds ``value``."""
        found = self._value(key)
        if found is None or found[0] != value:
            return False
        del self.values[key]
        return True

    async def ttl(self, key: str) -> float:
        """Seconds left, 0 when absent."""
        found = self._value(key)
        return 0.0 if found is None else found[1] - time.monotonic()

    async def hold(self, key: str, ttl: float) -> None:
        """Live at least ``ttl`` more seconds."""
        found = self._value(key)
        deadline = time.monotonic() + ttl
        if found is None or found[1] < deadline:
            self.values[key] = (b"1" if found is None else found[0], deadline)

    async def log_read(self, log: LogKeys, count: int) -> LogState:
        """The log's epoch, last number and newest items."""
        epoch, last, items, _ = self.logs.get(log.head, (None, 0, [], {}))
        return LogState(epoch, last, tuple(items[:count]))

    async def log_snapshot(self, log: LogKeys, number: int) -> bytes | None:
        """One item's snapshot."""
        return self.logs.get(log.head, (None, 0, [], {}))[3].get(number)

    async def log_append(self, log: LogKeys, append: LogAppend) -> tuple[Appended, str]:
        """Compare-and-append, then trim the oldest past the limits."""
        epoch, last, items, snapshots = self.logs.get(log.head, (None, 0, [], {}))
        if (append.epoch, append.last) != (epoch, last):
            return Appended.CONFLICT, epoch or ""
        epoch, last = epoch or append.new_epoch, last + 1
        items, snapshots = [append.item, *items], {**snapshots, last: append.snapshot}
        while len(items) > 1 and (
            len(items) > append.max_items or sum(map(len, snapshots.values())) > append.max_bytes
        ):
            snapshots.pop(last - len(items) + 1, None)
            items.pop()
        self.logs[log.head] = (epoch, last, items, snapshots)
        return Appended.RECORDED, epoch

    async def publish(self, topic: str) -> None:
        """Wake this process's waiters and listeners."""
        self.topics.wake(topic)

    def waiter(self, topic: str) -> asyncio.Event:
        """The event the next announcement sets."""
        return self.topics.waiter(topic)

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement."""
        self.topics.on(topic, listener)

    async def ping(self) -> bool:
        """Always reachable."""
        return True

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""
