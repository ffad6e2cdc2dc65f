"""This process's catalog fills: one at a time, joined by whoever needs one meanwhile."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from proxy.cache.entry import CatalogEntry
from proxy.coordination.fill import CoordinatedFill
from proxy.coordination.singleflight import SingleFlight
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing


class Fills:
    """Runs the deployment's coordinated fill of the catalog once at a time in this process.

    A fill for a fresh catalog is joined by every caller that needs one meanwhile; a forced
    fill (an operator's refresh) answers with a catalog fetched after it was asked for.
    """

    def __init__(
        self,
        *,
        read: Callable[[], Awaitable[CatalogEntry | None]],
        load: Callable[[], Awaitable[CatalogEntry]],
        store: Callable[[CatalogEntry], Awaitable[None]],
        turns: Turns,
        metrics: Metrics,
        is_fresh: Callable[[CatalogEntry], bool],
        timer: Callable[[], float] = time.monotonic,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Fill with ``read``, ``load`` and ``store`` in ``turns`` (see ``CoordinatedFill``).

        A stored entry ``is_fresh`` accepts needs no fetch.
        """
        self._fill = CoordinatedFill(
            name="catalog",
            read=read,
            load=load,
            store=store,
            coordinator=turns,
            metrics=metrics,
            clock=timer,
            tracing=tracing,
        )
        self._is_fresh = is_fresh
        self._timer = timer
        self._flight: SingleFlight[CatalogEntry] = SingleFlight(tracing=tracing)
        self._forced_since: float | None = None

    @property
    def running(self) -> bool:
        """Whether a fill (foreground or background) is in flight."""
        return self._flight.running

    async def fresh(self) -> tuple[CatalogEntry, bool]:
        """Return a fresh entry, and whether this call joined a fill already in flight."""
        return await self._flight.run(self._fill_fresh)

    def start(self) -> None:
        """Start a fill in the background (the caller checked none runs)."""
        self._flight.start(self._fill_fresh)

    async def forced(self) -> tuple[CatalogEntry, bool]:
        """Fetch now: the entry's fetch started after this call began; and whether joined.

        A fill already in flight started earlier, so it is waited out, not joined; concurrent
        forced fills that all began before one of them started share it.
        """
        asked = self._timer()
        while True:
            since = self._forced_since
            if not self._flight.running:
                self._forced_since = self._timer()
            elif since is None or since < asked:
                await self._flight.wait()
                continue
            return await self._flight.run(self._fill_forced)

    async def close(self) -> None:
        """Stop a fill still running."""
        await self._flight.close()

    async def _fill_fresh(self) -> CatalogEntry:
        return await self._fill.run(self._is_fresh)

    async def _fill_forced(self) -> CatalogEntry:
        try:
            return await self._fill.run(lambda _entry: False, force=True)
        finally:
            self._forced_since = None
