"""What every backplane offers: values with expiry, atomic helpers, a numbered log, pub/sub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True, slots=True)
class LogKeys:
    """Where one numbered log lives: its name and three keys in one Cluster slot."""

    name: str
    """What the log is, for metrics (``history``: operations ``history_read``...)."""
    head: str
    """The epoch, the last number given and the bytes of snapshots kept."""
    items: str
    """The items kept, newest first."""
    snapshots: str
    """Each kept item's snapshot, by number."""


@dataclass(frozen=True, slots=True)
class LogState:
    """A numbered log as read: its epoch (None: never written, or lost), last number, items.

    ``items`` are the newest first; item ``i`` (from 0) is number ``last - i``.
    """

    epoch: str | None
    last: int
    items: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LogAppend:
    """One compare-and-append: the log as the appender read it, and what it adds."""

    epoch: str | None
    """The epoch read (None: the log was empty, and ``new_epoch`` starts one)."""
    last: int
    """The last number read: the item becomes number ``last + 1``."""
    new_epoch: str
    """The epoch to start when the log is empty (and anything left of an older one goes)."""
    item: bytes
    snapshot: bytes
    max_items: int
    """The oldest items (and their snapshots) go while more are kept (the newest stays)..."""
    max_bytes: int
    """... or while their snapshots add up to more bytes than this."""


class Appended(Enum):
    """What an append did: recorded the item, or lost a race and changed nothing."""

    RECORDED = "recorded"
    CONFLICT = "conflict"


class Backplane(Protocol):
    """Where replicas share state, and how they wake each other.

    Implementations: in process (:class:`~proxy.backplane.memory.MemoryBackplane`, one replica
    alone) and Redis (:class:`~proxy.backplane.redis_backplane.RedisBackplane`: one server by
    URL, Sentinel, or Cluster). Everything the service shares goes through these methods and
    nothing else (no backend is ever asked what it is), so a new backend that implements them
    all, and passes ``tests/integration/test_backplane_contract.py``, runs the service.

    Every operation is bounded in time and never raises on backend trouble: a failed read is
    a miss (``None``), a failed write is dropped, an atomic operation that could not be asked
    answers ``None`` ("unknown"), and :attr:`state` says so for readiness and metrics. Keys
    are built by :class:`~proxy.backplane.keys.KeySpace`.
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

    async def log_read(self, log: LogKeys, count: int) -> LogState | None:
        """Return the log's epoch, last number and up to ``count`` newest items."""
        ...

    async def log_snapshot(self, log: LogKeys, number: int) -> bytes | None:
        """Return the snapshot of item ``number``; None when gone or unreadable."""
        ...

    async def log_append(self, log: LogKeys, append: LogAppend) -> tuple[Appended, str] | None:
        """Append atomically if the log is still as ``append`` read it; trim past its limits.

        Returns the outcome and the log's epoch, or None when the backend could not be asked.
        Replicas appending to one log race through this: the loser changes nothing.
        """
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


# A Protocol, so the key is typed by annotation rather than by a class at run time.
BACKPLANE: web.AppKey[Backplane] = web.AppKey("backplane")
"""Where an application keeps its backplane."""
