"""The deployment's catalog entry in the shared store, read on this replica's clock."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import structlog

from proxy.backplane.interface import Backplane
from proxy.cache.clock import OwnClock
from proxy.cache.entry import CatalogEntry, CorruptEntryError
from proxy.coordination.singleflight import SingleFlight
from proxy.observability.metrics import Metrics

logger = structlog.get_logger(__name__)


class SharedEntry:
    """Reads and writes the one entry every replica shares, under ``key`` in ``store``.

    Concurrent reads share one round trip. An entry read is stamped on this replica's clock
    (:class:`~proxy.cache.clock.OwnClock`, known by ETag and stamp: a later fetch of the same
    bytes is the refresh it is, while the same entry read again never looks newer). It also
    remembers which catalog the store held when last read or written here (:attr:`etag`).
    """

    def __init__(
        self,
        store: Backplane,
        key: str,
        *,
        retention: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """Keep entries for ``retention`` seconds; ``clock`` reads stamps, ``timer`` reads."""
        self._store = store
        self._key = key
        self._retention = retention
        self._metrics = metrics
        self._timer = timer
        self._stamps: OwnClock[tuple[str, float]] = OwnClock(on_skew=self._skewed, clock=clock)
        self._reads: SingleFlight[bytes | None] = SingleFlight()
        self._etag: str | None = None
        self.read_at = -math.inf
        """When the store was last read, on the ``timer`` clock (``-inf``: never)."""

    @property
    def store(self) -> Backplane:
        """The store the entry lives in."""
        return self._store

    @property
    def etag(self) -> str | None:
        """The ETag of the catalog the store held when this replica last read or wrote it.

        The deployment's current catalog as far as this replica knows: an entry held here with
        another ETag is one this replica has not caught up from (its clock may judge the
        store's newer entry older), and is not news to anyone.
        """
        return self._etag

    async def read(self) -> CatalogEntry | None:
        """Return the stored entry on this replica's clock; None if absent or unreadable."""
        raw, _ = await self._reads.run(self._read_raw)
        self.read_at = self._timer()
        if raw is None:
            return None
        try:
            entry = CatalogEntry.from_bytes(raw)
        except CorruptEntryError:
            logger.warning("cache_entry_unreadable", key=self._key)
            return None
        self._etag = entry.etag
        stamp = self._stamps.read((entry.etag, entry.fetched_at), entry.fetched_at)
        return entry if stamp == entry.fetched_at else dataclasses.replace(entry, fetched_at=stamp)

    async def write(self, entry: CatalogEntry) -> None:
        """Store ``entry`` for every replica (best effort, as every store write)."""
        await self._store.set(self._key, entry.to_bytes(), self._retention)
        self._etag = entry.etag

    async def close(self) -> None:
        """Stop a read still running."""
        await self._reads.close()

    async def _read_raw(self) -> bytes | None:
        return await self._store.get(self._key)

    def _skewed(self, identity: tuple[str, float], ahead: float) -> None:
        self._metrics.clock_skew()
        logger.warning("clock_skew", etag=identity[0], ahead_seconds=round(ahead, 3))
