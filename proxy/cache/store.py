"""The small key-value interface the cache needs, and its in-process backend."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Store(Protocol):
    """Where catalog entries (and, later, tokens) are shared.

    Implementations never raise on backend trouble: a failed read is a miss, a failed write
    is dropped, and :attr:`state` says so for readiness and metrics.
    """

    @property
    def state(self) -> str:
        """``ok``, ``degraded`` (backend failing, calls skipped or erroring) or ``memory``."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``, or ``None`` when absent, expired or unreadable."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (best effort)."""
        ...

    async def ping(self) -> bool:
        """Check the backend now; used by ``/readyz``."""
        ...

    async def close(self) -> None:
        """Release the backend's connections."""
        ...


class MemoryStore:
    """A process-local store, used when no Redis is configured."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """Create an empty store."""
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}

    @property
    def state(self) -> str:
        """Always ``memory``: there is no backend to lose."""
        return "memory"

    async def get(self, key: str) -> bytes | None:
        """Return the live value under ``key``."""
        item = self._items.get(key)
        if item is None:
            return None
        value, expires_at = item
        if self._clock() >= expires_at:
            del self._items[key]
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds."""
        self._items[key] = (value, self._clock() + ttl)

    async def ping(self) -> bool:
        """Report reachable: memory always is."""
        return True

    async def close(self) -> None:
        """Drop everything."""
        self._items.clear()
