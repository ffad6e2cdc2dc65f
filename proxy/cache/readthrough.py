"""The catalog cache: in-process copy in front of a shared store, filled through one loader."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog

from proxy.cache.coalesce import SingleFlight
from proxy.cache.entry import CatalogEntry, CorruptEntryError
from proxy.cache.freshness import Freshness
from proxy.cache.store import Store

logger = structlog.get_logger(__name__)

# A failed background refresh is retried after this pause, doubling up to the cap.
REFRESH_RETRY_FIRST = 1.0
REFRESH_RETRY_MAX = 60.0


class Payload(Protocol):
    """What a loader returns: the bytes to serve and their content type."""

    @property
    def body(self) -> bytes:
        """The exact body bytes."""
        ...

    @property
    def content_type(self) -> str:
        """The content type to serve the body with."""
        ...


class Outcome(StrEnum):
    """How a lookup was answered, in RFC 9211 terms."""

    HIT = "hit"
    MISS = "miss"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Lookup:
    """An entry to serve, how it was obtained, and its age and freshness left at that moment."""

    entry: CatalogEntry
    outcome: Outcome
    age: float
    ttl_left: float
    collapsed: bool = False


class CatalogCache:
    """Serves the catalog from cache and fills it through ``loader`` when it must.

    - fresh in this process: answered with no I/O at all;
    - otherwise the shared store is read (another replica may have refreshed it);
    - stale but within ``stale_ttl``: served at once, one background refresh starts;
    - nothing usable: concurrent callers share one load; a failed load raises and
      replaces nothing.
    """

    def __init__(
        self,
        *,
        store: Store,
        key: str,
        freshness: Freshness,
        loader: Callable[[], Awaitable[Payload]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wire the cache to its store, key and loader; ``clock`` is wall time (shared)."""
        self._store = store
        self._key = key
        self._freshness = freshness
        self._loader = loader
        self._clock = clock
        self._local: CatalogEntry | None = None
        self._flight: SingleFlight[CatalogEntry] = SingleFlight()
        self._retry_pause = 0.0
        self._retry_at = 0.0

    @property
    def freshness(self) -> Freshness:
        """The policy entries are judged by."""
        return self._freshness

    @property
    def local(self) -> CatalogEntry | None:
        """The entry this process holds, if any (possibly stale)."""
        return self._local

    @property
    def refreshing(self) -> bool:
        """Whether a load (foreground or background) is in flight."""
        return self._flight.running

    @property
    def store(self) -> Store:
        """The shared store behind the in-process copy."""
        return self._store

    async def get(self) -> Lookup:
        """Return a servable entry, loading one only when nothing usable is cached."""
        local = self._local
        now = self._clock()
        if local is not None and self._freshness.is_fresh(local, now):
            return self._lookup(local, Outcome.HIT, now)
        if local is not None and self._flight.running and self._freshness.is_usable(local, now):
            # A refresh is already on its way; asking the store meanwhile would only add load.
            return self._lookup(local, Outcome.STALE, now)
        entry = await self._newest_shared(local)
        now = self._clock()
        if entry is not None and self._freshness.is_fresh(entry, now):
            return self._lookup(entry, Outcome.HIT, now)
        if entry is not None and self._freshness.is_usable(entry, now):
            self._refresh_in_background(now)
            return self._lookup(entry, Outcome.STALE, now)
        return await self.refresh()

    async def refresh(self) -> Lookup:
        """Load now, joining a load already in flight."""
        entry, joined = await self._flight.run(self._load)
        return self._lookup(entry, Outcome.MISS, self._clock(), collapsed=joined)

    def _lookup(
        self, entry: CatalogEntry, outcome: Outcome, now: float, *, collapsed: bool = False
    ) -> Lookup:
        return Lookup(
            entry=entry,
            outcome=outcome,
            age=self._freshness.age(entry, now),
            ttl_left=self._freshness.ttl_left(entry, now),
            collapsed=collapsed,
        )

    async def close(self) -> None:
        """Stop a background refresh still running."""
        await self._flight.close()

    async def _newest_shared(self, local: CatalogEntry | None) -> CatalogEntry | None:
        raw = await self._store.get(self._key)
        if raw is None:
            return local
        try:
            shared = CatalogEntry.from_bytes(raw)
        except CorruptEntryError:
            logger.warning("cache_entry_unreadable", key=self._key)
            return local
        if local is None or shared.fetched_at > local.fetched_at:
            self._local = shared
            return shared
        return local

    def _refresh_in_background(self, now: float) -> None:
        if self._flight.running or now < self._retry_at:
            return
        logger.info("catalog_refresh_started", reason="stale")
        self._flight.start(self._load)

    async def _load(self) -> CatalogEntry:
        try:
            payload = await self._loader()
        except Exception:
            self._retry_pause = (
                min(self._retry_pause * 2, REFRESH_RETRY_MAX)
                if self._retry_pause
                else REFRESH_RETRY_FIRST
            )
            self._retry_at = self._clock() + self._retry_pause
            raise
        self._retry_pause = 0.0
        self._retry_at = 0.0
        entry = CatalogEntry.create(payload.body, payload.content_type, self._clock())
        self._local = entry
        await self._store.set(self._key, entry.to_bytes(), self._freshness.retention)
        logger.info("catalog_stored", etag=entry.etag, size=len(entry.body))
        return entry
