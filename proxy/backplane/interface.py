"""What every backplane offers: values with expiry, atomic helpers, and publish/subscribe."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol


class Backplane(Protocol):
    """Where replicas share state, and how they wake each other.

    Implementations: in process (:class:`~proxy.backplane.memory.MemoryBackplane`, one replica
    alone) and Redis (:class:`~proxy.backplane.redis.RedisBackplane`: one server by URL,
    Sentinel, or Cluster). Every operation is bounded in time and never raises on backend
    trouble: a failed read is a miss (``None``), a failed write is dropped, an atomic
    operation that could not be asked answers ``None`` ("unknown"), and :attr:`state` says so
    for readiness and metrics. Keys are built by :class:`~proxy.backplane.keys.KeySpace`.
    """

    @property
    def state(self) -> str:
        """``memory``, ``ok``, or ``degraded`` (the backend is failing; calls are skipped)."""
        ...

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``; None when absent, expired or unreadable."""
        ...

    async def get_with_ttl(self, key: str) -> tuple[bytes, float] | None:
        """Return the value under ``key`` and the seconds it has left, read together."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (best effort)."""
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool | None:
        """Store ``value`` for ``ttl`` seconds unless ``key`` exists; True if stored.

        None when the backend could not be asked.
        """
        ...

    async def delete_if_equal(self, key: str, value: bytes) -> bool | None:
        """Delete ``key`` only while it still holds ``value`` (compare-and-delete)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds ``key`` has left (0 when absent); None when the backend could not be asked."""
        ...

    async def hold(self, key: str, ttl: float) -> None:
        """Make ``key`` exist for at least ``ttl`` more seconds (never shorten it)."""
        ...

    async def publish(self, topic: str) -> None:
        """Announce ``topic`` to every replica, this one included (best effort)."""
        ...

    def waiter(self, topic: str) -> asyncio.Event:
        """Return the event the next announcement of ``topic`` sets (take it before reading)."""
        ...

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement of ``topic``, from any replica."""
        ...

    async def ping(self) -> bool:
        """Ask the backend now, past any breaker; used by ``/readyz``."""
        ...

    async def start(self) -> None:
        """Start listening for announcements."""
        ...

    async def close(self) -> None:
        """Stop listening and release connections."""
        ...
