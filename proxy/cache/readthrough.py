"""The catalog cache: in-process copy in front of a shared store, filled once per deployment."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from proxy.backplane.interface import Backplane
from proxy.cache.attempts import LoadAttempts, Payload
from proxy.cache.clock import Clocks
from proxy.cache.decision import STORE_READ_INTERVAL, Action, Asker, Situation, Step, decide
from proxy.cache.entry import CatalogEntry
from proxy.cache.fills import Fills
from proxy.cache.freshness import Freshness
from proxy.cache.keeper import Keeper
from proxy.cache.lookup import Lookup, Outcome, lookup_at
from proxy.cache.memo import LookupMemo
from proxy.cache.shared import SharedEntry
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.upstream.errors import replay

logger = structlog.get_logger(__name__)


class CatalogCache:
    """Serves the catalog from cache and fills it through ``loader`` when it must.

    What to do at each moment (serve fresh or stale, read the store, fill, replay a failure,
    wait) is :func:`~proxy.cache.decision.decide`'s; this class carries it out, for callers
    (:meth:`hit`, :meth:`lookup`) and for its keeper, and adopts newer shared entries. Fills go
    through a :class:`CoordinatedFill`, so a deployment loads once.
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
        clocks: Clocks = Clocks(),  # noqa: B008 - frozen, shared safely
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Wire the cache: ``clocks.wall`` stamps entries, ``clocks.monotonic`` paces retries.

        With ``tracing``, fills are spans, and callers that join one link to its starter.
        """
        clock, timer = clocks.wall, clocks.monotonic
        self._shared = SharedEntry(
            store, key, retention=freshness.retention, metrics=metrics, clock=clock, timer=timer
        )
        self._freshness = freshness
        self._ttl = freshness.ttl
        self._metrics = metrics
        self._clock = clock
        self._timer = timer
        self._fills = Fills(
            read=self._newest_shared,
            load=self._load,
            store=self._shared.write,
            turns=turns,
            metrics=metrics,
            is_fresh=lambda entry: freshness.is_fresh(entry, clock()),
            timer=timer,
            tracing=tracing,
        )
        self._attempts = LoadAttempts(loader, timer=timer)
        self._local: CatalogEntry | None = None
        self._memo = LookupMemo()
        self._shared_changed = False
        self._keeper = Keeper(self._keep_step)

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
        """The ETag of the deployment's current catalog, as far as this replica knows.

        See :attr:`~proxy.cache.shared.SharedEntry.etag`.
        """
        return self._shared.etag

    @property
    def refreshing(self) -> bool:
        """Whether a fill (foreground or background) is in flight."""
        return self._fills.running

    def shared_changed(self) -> None:
        """Note that another replica stored a new entry: the next lookup reads the store."""
        self._shared_changed = True
        self._keeper.wake()

    def start(self, *, needed: bool) -> None:
        """Start the keeper; ``needed`` makes it fill at once (warm-up) rather than on demand."""
        if needed:
            self._keeper.need()
        self._keeper.start()

    def need(self) -> None:
        """Note that a catalog is wanted (a change feed listens): the keeper keeps one."""
        self._keeper.need()

    def hit(self) -> Lookup | None:
        """Return the in-process entry if it may be served now without I/O, else None.

        This is the cache hit, without a coroutine: it runs for every request answered. While
        the whole seconds of age and of freshness left stay the same, the same Lookup object
        is returned (:class:`~proxy.cache.memo.LookupMemo`), so what is prepared from one
        (headers, bodies) is reused by identity (:class:`proxy.web.answers.Answers` is the
        consumer side of this contract). A stale entry served while the upstream fails is
        memoized the same way by ``lookup``. Past the memo, :func:`decide` says.
        """
        local = self._local
        if local is None or self._shared_changed:
            return None
        now = self._clock()
        memo = self._memo
        lookup = memo.lookup
        if lookup is not None and lookup.entry is local and memo.start < now < memo.end:
            self._metrics.lookup(memo.result)
            return lookup
        if self._decide(Asker.CALLER, now, read=False).step is not Step.SERVE_FRESH:
            return None
        self._metrics.lookup("hit")
        age = now - local.fetched_at
        if age < 0:
            # Stamped slightly ahead of this clock (within the tolerance): age 0, no memo.
            return Lookup(local, Outcome.HIT, 0.0, self._ttl)
        lookup = Lookup(local, Outcome.HIT, age, self._ttl - age)
        memo.keep_fresh(lookup, self._ttl)
        return lookup

    async def lookup(self) -> Lookup:
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
        self._keeper.need()
        read = False
        while True:
            now = self._clock()
            action = self._decide(Asker.CALLER, now, read=read)
            if action.step is Step.READ_STORE:
                await self._newest_shared()
                read = True
                continue
            local = self._local
            if action.step is Step.SERVE_FRESH and local is not None:
                return lookup_at(local, Outcome.HIT, now, self._freshness)
            if action.step is Step.SERVE_STALE and local is not None:
                if action.refresh:
                    logger.info("catalog_refresh_started", reason="stale")
                    self._fills.start()
                return self._stale(local, now)
            failure = self._attempts.failure
            if action.step is Step.REPLAY_FAILURE and failure is not None:
                raise replay(failure, action.seconds)
            entry, joined = await self._fills.fresh()
            if joined:
                self._metrics.waiter("process")
            return lookup_at(entry, Outcome.MISS, self._clock(), self._freshness, collapsed=joined)

    def _decide(self, asker: Asker, now: float, *, read: bool) -> Action:
        """Ask :func:`decide` with what this replica knows now."""
        situation = Situation(
            asker=asker,
            entry=self._local,
            now=now,
            announced=self._shared_changed,
            since_read=self._timer() - self._shared.read_at,
            read=read,
            filling=self._fills.running,
            backoff=self._attempts.delay(),
            failure=self._attempts.failure is not None,
            needed=self._keeper.needed,
        )
        return decide(situation, self._freshness)

    async def refresh(self) -> Lookup:
        """Fetch a new catalog now: the answer's fetch started after this call began."""
        entry, joined = await self._fills.forced()
        return lookup_at(entry, Outcome.MISS, self._clock(), self._freshness, collapsed=joined)

    async def close(self) -> None:
        """Stop the keeper and any fill or store read still running."""
        await self._keeper.close()
        await self._fills.close()
        await self._shared.close()

    def _stale(self, entry: CatalogEntry, now: float) -> Lookup:
        """Return a stale lookup, memoized like a hit until a whole second or a read is due."""
        lookup = lookup_at(entry, Outcome.STALE, now, self._freshness)
        if entry is self._local and lookup.age > 0:
            read_due_at = now + max(self._shared.read_at + STORE_READ_INTERVAL - self._timer(), 0)
            self._memo.keep_stale(lookup, self._ttl, self._freshness.stale_ttl, read_due_at)
        return lookup

    async def _newest_shared(self) -> CatalogEntry | None:
        """Adopt the stored entry if it is newer than ours; return the newest of the two.

        This read takes any announcement noted before it (:meth:`shared_changed`). When the
        store cannot be read, the announcement stays to be read (by the next lookup, or the
        keeper a moment later), so a Redis hiccup at the wrong moment does not keep the old
        catalog until its TTL.
        """
        announced, self._shared_changed = self._shared_changed, False
        shared = await self._shared.read()
        local = self._local
        if shared is None:
            if announced and self._shared.store.state == "degraded":
                self._shared_changed = True
            return local
        if local is None or shared.fetched_at > local.fetched_at:
            self._adopt(shared)
            if self._freshness.is_fresh(shared, self._clock()):
                # Another replica just fetched: the upstream answers again.
                self._attempts.succeeded()
            return shared
        return local

    def _adopt(self, entry: CatalogEntry) -> None:
        self._local = entry
        self._keeper.need()

    async def _load(self) -> CatalogEntry:
        try:
            payload = await self._attempts.load()
        except Exception:
            # The keeper may be asleep on a stale entry: a failed refresh is its business now.
            self._keeper.wake()
            raise
        entry = CatalogEntry.create(payload.body, payload.content_type, self._clock())
        self._adopt(entry)
        logger.info("catalog_stored", etag=entry.etag, size=len(entry.body))
        return entry

    async def _keep_step(self) -> float:
        """One turn of the keeper: read or fill as :func:`decide` says; return the sleep."""
        read = False
        while True:
            action = self._decide(Asker.KEEPER, self._clock(), read=read)
            if action.step is Step.READ_STORE:
                await self._newest_shared()
                read = True
                continue
            if action.step is Step.WAIT:
                return action.seconds
            try:
                await self._fills.fresh()
            except Exception:  # noqa: BLE001 - logged by the client, scheduled by the backoff
                self._attempts.failed_unseen()
            return 0.0
