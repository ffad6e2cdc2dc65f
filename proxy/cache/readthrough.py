"""The catalog cache: in-process copy in front of a shared store, filled once per deployment."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import structlog

from proxy.cache.coalesce import SingleFlight
from proxy.cache.entry import CatalogEntry, CorruptEntryError
from proxy.cache.freshness import Freshness
from proxy.cache.store import Store
from proxy.coordination.lock import Coordinator, LocalCoordinator
from proxy.observability.metrics import Metrics

logger = structlog.get_logger(__name__)

# A failed background refresh is retried after this pause, doubling up to the cap.
REFRESH_RETRY_FIRST = 1.0
REFRESH_RETRY_MAX = 60.0
# A replica waiting on another's fetch re-checks at least this often, in case the
# announcement was lost (pub/sub down): a slow poll as a fallback, never a tight one.
WAIT_SLICE = 0.5


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


class Lookup(NamedTuple):
    """An entry to serve, how it was obtained, and its age and freshness left at that moment.

    A named tuple: one is made for every request, and it is the cheapest immutable record.
    """

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
    - nothing usable: concurrent callers share one fill; a failed load raises and
      replaces nothing.

    A fill is coordinated across replicas: the one that gets the turn loads, stores and
    announces; the others wait for the announcement (re-checking every ``WAIT_SLICE``) and
    take the stored entry. A replica that waited ``max_wait`` loads by itself rather than
    keep its callers waiting on a holder that is gone.
    """

    def __init__(
        self,
        *,
        store: Store,
        key: str,
        freshness: Freshness,
        loader: Callable[[], Awaitable[Payload]],
        coordinator: Coordinator | None = None,
        max_wait: float = 30.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wire the cache to its store, key and loader; ``clock`` is wall time (shared)."""
        self._store = store
        self._key = key
        self._freshness = freshness
        self._ttl = freshness.ttl
        self._loader = loader
        self._coordinator: Coordinator = coordinator or LocalCoordinator()
        self._max_wait = max_wait
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._local: CatalogEntry | None = None
        self._hit_memo: Lookup | None = None
        self._memo_from = self._memo_until = 0.0
        self._shared_changed = False
        self._flight: SingleFlight[CatalogEntry] = SingleFlight()
        self._reads: SingleFlight[bytes | None] = SingleFlight()
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
        """Whether a fill (foreground or background) is in flight."""
        return self._flight.running

    @property
    def store(self) -> Store:
        """The shared store behind the in-process copy."""
        return self._store

    def shared_changed(self) -> None:
        """Note that another replica stored a new entry: the next lookup reads the store."""
        self._shared_changed = True

    def hit(self) -> Lookup | None:
        """Return the in-process entry if it is fresh, else None (then ``get`` must be awaited).

        This is the cache hit, without a coroutine: it runs for every request answered. While
        the whole seconds of age and of freshness left stay the same, the same Lookup object
        is returned, so what is prepared from one (headers, bodies) is reused by identity.
        """
        local = self._local
        if local is None or self._shared_changed:
            return None
        now = self._clock()
        memo = self._hit_memo
        if memo is not None and memo.entry is local and self._memo_from < now < self._memo_until:
            self._metrics.lookup("hit")
            return memo
        # Freshness's arithmetic, inline: a method call per request costs more than this.
        age = now - local.fetched_at
        if age >= self._ttl:
            return None
        self._metrics.lookup("hit")
        if age < 0:
            # Another replica's clock is ahead: serve with age 0, but memoize nothing.
            return Lookup(local, Outcome.HIT, 0.0, self._ttl)
        lookup = Lookup(local, Outcome.HIT, age, self._ttl - age)
        # The span of ages around this one with the same int(age) and int(ttl - age).
        whole_left = math.floor(self._ttl - age)
        self._memo_from = local.fetched_at + max(math.floor(age), self._ttl - whole_left - 1)
        self._memo_until = local.fetched_at + min(math.floor(age) + 1, self._ttl - whole_left)
        self._hit_memo = lookup
        return lookup

    async def get(self) -> Lookup:
        """Return a servable entry, loading one only when nothing usable is cached."""
        hit = self.hit()
        if hit is not None:
            return hit
        try:
            lookup = await self._get()
        except Exception:
            self._metrics.lookup("error")
            raise
        result = "collapsed" if lookup.collapsed else lookup.outcome.value
        self._metrics.lookup(result)
        return lookup

    async def _get(self) -> Lookup:
        # hit() has already answered a fresh local entry the store has not superseded.
        local = self._local
        now = self._clock()
        if local is not None and self._flight.running and self._freshness.is_usable(local, now):
            # A fill is already on its way; asking the store meanwhile would only add load.
            return self._lookup(local, Outcome.STALE, now)
        self._shared_changed = False
        entry = await self._newest_shared()
        now = self._clock()
        if entry is not None and self._freshness.is_fresh(entry, now):
            return self._lookup(entry, Outcome.HIT, now)
        if entry is not None and self._freshness.is_usable(entry, now):
            self._refresh_in_background(now)
            return self._lookup(entry, Outcome.STALE, now)
        return await self._run_fill(self._fill_fresh)

    async def refresh(self) -> Lookup:
        """Fetch a new catalog now; joins a fill in flight, here or on another replica."""
        return await self._run_fill(self._fill_newer)

    async def _run_fill(self, fill: Callable[[], Coroutine[Any, Any, CatalogEntry]]) -> Lookup:
        entry, joined = await self._flight.run(fill)
        if joined:
            self._metrics.waiter("process")
        return self._lookup(entry, Outcome.MISS, self._clock(), collapsed=joined)

    async def close(self) -> None:
        """Stop a fill or store read still running."""
        await self._flight.close()
        await self._reads.close()

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

    async def _newest_shared(self) -> CatalogEntry | None:
        """Adopt the stored entry if it is newer than ours; return the newest of the two."""
        # Concurrent lookups share one store read: a cold burst costs one round trip.
        raw, _ = await self._reads.run(self._read_store)
        local = self._local
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

    async def _read_store(self) -> bytes | None:
        return await self._store.get(self._key)

    def _refresh_in_background(self, now: float) -> None:
        if self._flight.running or now < self._retry_at:
            return
        logger.info("catalog_refresh_started", reason="stale")
        self._flight.start(self._fill_fresh)

    async def _fill_fresh(self) -> CatalogEntry:
        return await self._fill(lambda entry: self._freshness.is_fresh(entry, self._clock()))

    async def _fill_newer(self) -> CatalogEntry:
        # Entries are stamped when their fetch completes, so one that completed after this
        # refresh was asked for (here or on another replica) answers it.
        asked_at = self._clock()
        return await self._fill(lambda entry: entry.fetched_at >= asked_at)

    async def _fill(self, good: Callable[[CatalogEntry], bool]) -> CatalogEntry:
        """Get an entry that is ``good``: from the store, by loading it, or from another replica."""
        give_up_at = time.monotonic() + self._max_wait
        waited = False
        while True:
            announced = self._coordinator.waiter()
            entry = await self._newest_shared()
            if entry is not None and good(entry):
                return entry
            async with self._coordinator.turn() as mine:
                if mine:
                    # The holder before us may have stored one just now.
                    entry = await self._newest_shared()
                    if entry is not None and good(entry):
                        return entry
                    return await self._load()
            if not waited:
                waited = True
                self._metrics.waiter("deployment")
            if time.monotonic() >= give_up_at:
                logger.warning("catalog_fill_wait_exceeded", waited=self._max_wait)
                return await self._load()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT_SLICE):
                    await announced.wait()

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
        await self._coordinator.announce()
        logger.info("catalog_stored", etag=entry.etag, size=len(entry.body))
        return entry
