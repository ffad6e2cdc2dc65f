"""The catalog cache: in-process copy in front of a shared store, filled once per deployment."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import NamedTuple, Protocol

import structlog

from proxy.backoff import Backoff
from proxy.backplane.interface import Backplane
from proxy.cache.clock import OwnClock
from proxy.cache.entry import CatalogEntry, CorruptEntryError
from proxy.cache.freshness import Freshness
from proxy.coordination.fill import CoordinatedFill
from proxy.coordination.singleflight import SingleFlight
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import Tracing
from proxy.upstream.errors import UpstreamError, back_off, replay

logger = structlog.get_logger(__name__)

# Retries of a failed fill, in the background: from 1 s, doubling, never more than 30 s apart.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# Without an announcement, the store is read at most this often for one replica's needs.
STORE_READ_INTERVAL = 1.0


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
    - otherwise the shared store is read (another replica may have refreshed it), at most
      once a second unless an announcement says it changed;
    - stale but within ``stale_ttl``: served at once, one background refresh starts;
    - nothing usable: concurrent callers share one fill; a failed load raises and
      replaces nothing.

    Fills go through a :class:`CoordinatedFill`, so a deployment loads once. Once the
    catalog is needed (warm-up asked for it, a caller asked, or this process has held one),
    a keeper task keeps it fresh: whenever the entry is stale or missing it reads the store
    about once a second and, when its backoff allows, fills, with no caller traffic needed
    (one upstream fetch per TTL for the deployment; the other replicas adopt the stored one).
    Failed loads back off (1 s doubling to 30 s, jittered, never inside a ``Retry-After``
    window); while they do, a caller with nothing servable gets 503 and ``Retry-After`` at
    once instead of another fill.
    """

    def __init__(
        self,
        *,
        store: Backplane,
        key: str,
        freshness: Freshness,
        loader: Callable[[], Awaitable[Payload]],
        metrics: Metrics,
        turns: Turns,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        """Wire the cache: ``clock`` stamps entries (wall time), ``timer`` paces retries.

        With ``tracing``, fills are spans, and callers that join one link to its starter.
        """
        self._store = store
        self._key = key
        self._freshness = freshness
        self._ttl = freshness.ttl
        self._loader = loader
        self._metrics = metrics
        self._clock = clock
        self._timer = timer
        self._fill = CoordinatedFill(
            name="catalog",
            read=self._newest_shared,
            load=self._load,
            store=self._write,
            coordinator=turns,
            max_wait=max_wait,
            metrics=metrics,
            clock=timer,
            tracing=tracing,
        )
        self.backoff = Backoff(first=RETRY_FIRST, cap=RETRY_MAX, clock=timer)
        self._local: CatalogEntry | None = None
        self._shared_etag: str | None = None
        self._memo: Lookup | None = None
        self._memo_result = Outcome.HIT.value
        self._memo_from = self._memo_until = 0.0
        self._shared_changed = False
        self._read_at = -math.inf
        self._stamps: OwnClock[tuple[str, float]] = OwnClock(on_skew=self._skewed, clock=clock)
        self._flight: SingleFlight[CatalogEntry] = SingleFlight(tracing=tracing)
        self._reads: SingleFlight[bytes | None] = SingleFlight()
        self._forced_since: float | None = None
        self._last_failure: UpstreamError | None = None
        self._needed = False
        self._wake = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    @property
    def freshness(self) -> Freshness:
        """The policy entries are judged by."""
        return self._freshness

    @property
    def local(self) -> CatalogEntry | None:
        """The entry this process holds, if any (possibly stale)."""
        return self._local

    @property
    def shared_etag(self) -> str | None:
        """The ETag of the catalog the shared store held when this replica last read or wrote it.

        The deployment's current catalog as far as this replica knows: an entry held here with
        another ETag is one this replica has not caught up from (its clock may judge the
        store's newer entry older), and is not news to anyone.
        """
        return self._shared_etag

    @property
    def refreshing(self) -> bool:
        """Whether a fill (foreground or background) is in flight."""
        return self._flight.running

    @property
    def store(self) -> Backplane:
        """The shared store behind the in-process copy."""
        return self._store

    def shared_changed(self) -> None:
        """Note that another replica stored a new entry: the next lookup reads the store."""
        self._shared_changed = True
        self._wake.set()

    def start(self, *, needed: bool) -> None:
        """Start the keeper; ``needed`` makes it fill at once (warm-up) rather than on demand."""
        if needed:
            self._need()
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def need(self) -> None:
        """Note that a catalog is wanted (a change feed listens): the keeper keeps one."""
        self._need()

    def hit(self) -> Lookup | None:
        """Return the in-process entry if it may be served now without I/O, else None.

        This is the cache hit, without a coroutine: it runs for every request answered. While
        the whole seconds of age and of freshness left stay the same, the same Lookup object
        is returned, so what is prepared from one (headers, bodies) is reused by identity
        (:class:`proxy.web.answers.Answers` is the consumer side of this contract). A stale
        entry served while the upstream fails is memoized the same way by ``get``.
        """
        local = self._local
        if local is None or self._shared_changed:
            return None
        now = self._clock()
        memo = self._memo
        if memo is not None and memo.entry is local and self._memo_from < now < self._memo_until:
            self._metrics.lookup(self._memo_result)
            return memo
        # Freshness's arithmetic, inline: a method call per request costs more than this.
        age = now - local.fetched_at
        if age >= self._ttl:
            return None
        self._metrics.lookup("hit")
        if age < 0:
            # Stamped slightly ahead of this clock (within the tolerance): age 0, no memo.
            return Lookup(local, Outcome.HIT, 0.0, self._ttl)
        lookup = Lookup(local, Outcome.HIT, age, self._ttl - age)
        # The span of ages around this one with the same int(age) and int(ttl - age).
        whole_left = math.floor(self._ttl - age)
        self._memo_from = local.fetched_at + max(math.floor(age), self._ttl - whole_left - 1)
        self._memo_until = local.fetched_at + min(math.floor(age) + 1, self._ttl - whole_left)
        self._memo_result = Outcome.HIT.value
        self._memo = lookup
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
        self._need()
        local = self._local
        now = self._clock()
        if (
            local is not None
            and not self._shared_changed
            and self._freshness.is_usable(local, now)
            and (self._flight.running or self._timer() - self._read_at < STORE_READ_INTERVAL)
        ):
            # A fill is on its way, or the store was read just now: asking it again would
            # only add load. hit() has already answered a fresh entry.
            self._refresh_in_background()
            return self._stale(local, now)
        entry = await self._newest_shared()
        now = self._clock()
        if entry is not None and self._freshness.is_fresh(entry, now):
            return self._lookup(entry, Outcome.HIT, now)
        if entry is not None and self._freshness.is_usable(entry, now):
            self._refresh_in_background()
            return self._stale(entry, now)
        delay = self.backoff.delay()
        failure = self._last_failure
        if delay > 0 and failure is not None and not self._flight.running:
            # A fill failed moments ago: callers hear so at once, rather than each sending
            # the upstream another fill (the keeper retries when the backoff allows).
            raise replay(failure, delay)
        entry, joined = await self._flight.run(self._fill_fresh)
        if joined:
            self._metrics.waiter("process")
        return self._lookup(entry, Outcome.MISS, self._clock(), collapsed=joined)

    async def refresh(self) -> Lookup:
        """Fetch a new catalog now: the answer's fetch started after this call began.

        A fill already in flight (here) started earlier, so it is waited out, not joined;
        concurrent refreshes that all began before a forced fill started share it.
        """
        asked = self._timer()
        while True:
            since = self._forced_since
            if not self._flight.running:
                self._forced_since = self._timer()
            elif since is None or since < asked:
                await self._flight.wait()
                continue
            entry, joined = await self._flight.run(self._fill_forced)
            return self._lookup(entry, Outcome.MISS, self._clock(), collapsed=joined)

    async def close(self) -> None:
        """Stop the keeper and any fill or store read still running."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._flight.close()
        await self._reads.close()

    def _need(self) -> None:
        if not self._needed:
            self._needed = True
            self._wake.set()

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

    def _stale(self, entry: CatalogEntry, now: float) -> Lookup:
        """Return a stale lookup, memoized like a hit until a whole second or a read is due."""
        lookup = self._lookup(entry, Outcome.STALE, now)
        if entry is not self._local or lookup.age <= 0:
            return lookup
        age = lookup.age
        # int(age) is constant between whole seconds of age; int(ttl_left), negative, between
        # whole seconds past the TTL; the memo covers where both hold, and no read is due.
        past = self._ttl + math.floor(age - self._ttl)
        low = max(math.floor(age), past)
        high = min(math.floor(age) + 1, past + 1, self._ttl + self._freshness.stale_ttl)
        read_due_at = now + max(self._read_at + STORE_READ_INTERVAL - self._timer(), 0.0)
        self._memo_from = entry.fetched_at + low
        self._memo_until = min(entry.fetched_at + high, read_due_at)
        self._memo_result = Outcome.STALE.value
        self._memo = lookup
        return lookup

    async def _newest_shared(self) -> CatalogEntry | None:
        """Adopt the stored entry if it is newer than ours; return the newest of the two.

        This read takes any announcement noted before it (:meth:`shared_changed`). When the
        store cannot be read, the announcement stays to be read (by the next lookup, or the
        keeper a moment later), so a Redis hiccup at the wrong moment does not keep the old
        catalog until its TTL.
        """
        announced, self._shared_changed = self._shared_changed, False
        # Concurrent lookups share one store read: a cold burst costs one round trip.
        raw, _ = await self._reads.run(self._read_store)
        self._read_at = self._timer()
        local = self._local
        if raw is None and announced and self._store.state == "degraded":
            self._shared_changed = True
        if raw is None:
            return local
        try:
            shared = CatalogEntry.from_bytes(raw)
        except CorruptEntryError:
            logger.warning("cache_entry_unreadable", key=self._key)
            return local
        self._shared_etag = shared.etag
        shared = self._on_own_clock(shared)
        if local is None or shared.fetched_at > local.fetched_at:
            self._adopt(shared)
            if self._freshness.is_fresh(shared, self._clock()):
                # Another replica just fetched: the upstream answers again.
                self.backoff.succeeded()
                self._last_failure = None
            return shared
        return local

    def _on_own_clock(self, entry: CatalogEntry) -> CatalogEntry:
        """Return ``entry`` stamped on this replica's clock (see :class:`OwnClock`).

        Known by ETag and stamp: a later fetch of the same bytes (a new stamp) is the refresh
        it is, while the same entry read again never looks newer.
        """
        stamp = self._stamps.read((entry.etag, entry.fetched_at), entry.fetched_at)
        return entry if stamp == entry.fetched_at else dataclasses.replace(entry, fetched_at=stamp)

    def _skewed(self, identity: tuple[str, float], ahead: float) -> None:
        self._metrics.clock_skew()
        logger.warning("clock_skew", etag=identity[0], ahead_seconds=round(ahead, 3))

    def _adopt(self, entry: CatalogEntry) -> None:
        self._local = entry
        self._need()

    async def _read_store(self) -> bytes | None:
        return await self._store.get(self._key)

    def _refresh_in_background(self) -> None:
        if self._flight.running or self.backoff.delay() > 0:
            return
        logger.info("catalog_refresh_started", reason="stale")
        self._flight.start(self._fill_fresh)

    async def _fill_fresh(self) -> CatalogEntry:
        return await self._fill.run(lambda entry: self._freshness.is_fresh(entry, self._clock()))

    async def _fill_forced(self) -> CatalogEntry:
        try:
            return await self._fill.run(lambda _entry: False, force=True)
        finally:
            self._forced_since = None

    async def _load(self) -> CatalogEntry:
        try:
            payload = await self._loader()
        except Exception as exc:
            back_off(self.backoff, exc, self._timer())
            self._last_failure = (
                exc if isinstance(exc, UpstreamError) else UpstreamError(f"load failed: {exc}")
            )
            # The keeper may be asleep on a stale entry: a failed refresh is its business now.
            self._wake.set()
            raise
        self.backoff.succeeded()
        self._last_failure = None
        entry = CatalogEntry.create(payload.body, payload.content_type, self._clock())
        self._adopt(entry)
        logger.info("catalog_stored", etag=entry.etag, size=len(entry.body))
        return entry

    async def _write(self, entry: CatalogEntry) -> None:
        await self._store.set(self._key, entry.to_bytes(), self._freshness.retention)
        self._shared_etag = entry.etag

    async def _keep(self) -> None:
        """Keep a usable, fresh catalog once one is needed; never ends but by cancellation."""
        while True:
            try:
                await self._keep_once()
            except Exception:
                # Fills log their own failures; this is what they did not foresee.
                logger.exception("catalog_keeper_failed")
                await self._sleep(RETRY_MAX)

    async def _keep_once(self) -> None:
        if not self._needed:
            await self._sleep(math.inf)
            return
        local = self._local
        now = self._clock()
        if local is not None and not self._shared_changed and self._freshness.is_fresh(local, now):
            # Refresh-ahead: once a catalog is needed, it is kept fresh with no traffic, one
            # fetch per TTL for the whole deployment (the others adopt it from the store).
            await self._sleep(self._freshness.ttl_left(local, now))
            return
        if self._shared_changed or self._timer() - self._read_at >= STORE_READ_INTERVAL:
            entry = await self._newest_shared()
            if self._shared_changed:
                # The announced entry could not be read: again in a moment, not in a loop.
                await self._sleep(STORE_READ_INTERVAL / 4)
                return
            if entry is not None and self._freshness.is_fresh(entry, self._clock()):
                return
        delay = self.backoff.delay()
        if delay > 0:
            await self._sleep(min(delay, STORE_READ_INTERVAL))
            return
        try:
            await self._flight.run(self._fill_fresh)
        except Exception:  # noqa: BLE001 - logged by the client, scheduled by the backoff
            if self.backoff.delay() <= 0:
                # A failure the loader did not see (it never ran): still no tight loop.
                self.backoff.failed()

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, or until woken (an announcement, a need, a poke)."""
        self._wake.clear()
        timeout = None if math.isinf(seconds) else max(seconds, 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
