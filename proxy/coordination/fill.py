"""One coordinated fill: how a replica gets a shared value the deployment loads at most once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing

logger = structlog.get_logger(__name__)

T = TypeVar("T")

# A replica waiting on another's load re-checks the shared value at least this often, in case
# the announcement was lost (pub/sub down): a slow poll as a fallback, never a tight one.
WAIT_SLICE = 0.5


class CoordinatedFill(Generic[T]):
    """Read shared state, take the deployment's turn, re-read, load, store, announce.

    The catalog and the token are both filled this way:

    1. ``read()`` the shared value; if ``good`` accepts it, that is the answer;
    2. otherwise take the deployment's turn (a lock). With the turn: read again (the holder
       before us may have stored one just now), else ``load()``, ``store()`` and announce,
       which wakes every replica's waiters;
    3. without the turn: a value ``meanwhile`` accepts is used while another replica loads
       (a token still valid inside its renewal margin); else wait for the announcement,
       re-reading every ``WAIT_SLICE``, and after the turns' ``max_wait`` load alone rather
       than keep callers waiting on a holder that is gone.

    ``force`` skips the reads: the answer is then always a value this replica loaded after
    the call began (an operator's refresh). Callers in one process are coalesced by the
    owner (a single flight); backing off after a failed load is the loader's business.

    With ``tracing``, a load is a span (``fill catalog``) and so is waiting for another
    replica's (``wait for catalog fill``).
    """

    def __init__(
        self,
        *,
        name: str,
        read: Callable[[], Awaitable[T | None]],
        load: Callable[[], Awaitable[T]],
        store: Callable[[T], Awaitable[None]],
        coordinator: Turns,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Fill the value called ``name`` (in logs and spans) through these parts."""
        self._name = name
        self._read = read
        self._load = load
        self._store = store
        self._coordinator = coordinator
        self._metrics = metrics
        self._clock = clock
        self._tracing = tracing

    async def run(
        self,
        good: Callable[[T], bool],
        *,
        meanwhile: Callable[[T], bool] | None = None,
        force: bool = False,
    ) -> T:
        """Return a value ``good`` accepts (or, with ``force``, one loaded by this call)."""
        with contextlib.ExitStack() as waiting:
            return await self._run(good, meanwhile, waiting, force=force)

    async def _run(
        self,
        good: Callable[[T], bool],
        meanwhile: Callable[[T], bool] | None,
        waiting: contextlib.ExitStack,
        *,
        force: bool,
    ) -> T:
        """Run :meth:`run`; a wait span, once one starts, is entered on ``waiting``."""
        give_up_at = self._clock() + self._coordinator.max_wait
        waited = False
        while True:
            announced = self._coordinator.waiter()
            value = None if force else await self._read()
            if value is not None and good(value):
                return value
            async with self._coordinator.turn() as mine:
                if mine:
                    again = None if force else await self._read()
                    if again is not None and good(again):
                        return again
                    waiting.close()  # the wait, if any, ends here; the load is no wait
                    return await self._load_and_store(alone=False)
            if value is not None and meanwhile is not None and meanwhile(value):
                return value
            if not waited:
                waited = True
                self._metrics.waiter("deployment")
                waiting.enter_context(self._tracing.span(f"wait for {self._name} fill"))
            if self._clock() >= give_up_at:
                logger.warning(
                    "fill_wait_exceeded", value=self._name, waited=self._coordinator.max_wait
                )
                waiting.close()
                return await self._load_and_store(alone=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT_SLICE):
                    await announced.wait()

    async def _load_and_store(self, *, alone: bool) -> T:
        """Load, store and announce; ``alone``: after waiting too long for another replica."""
        with self._tracing.span(f"fill {self._name}", **{"fill.alone": alone}):
            return await self._load_stored()

    async def _load_stored(self) -> T:
        value = await self._load()
        await self._store(value)
        await self._coordinator.announce()
        return value
