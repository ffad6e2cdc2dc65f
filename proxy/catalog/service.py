"""The catalog service: the one thing HTTP handlers ask for the catalog."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from proxy.backplane.interface import Backplane
from proxy.cache.entry import CatalogEntry
from proxy.cache.lookup import Lookup, Outcome
from proxy.cache.readthrough import CatalogCache
from proxy.catalog.errors import RefreshTooSoonError, UpstreamBadResponse
from proxy.catalog.view import CatalogView
from proxy.coordination.rate import RateGate
from proxy.upstream.client import UpstreamClient
from proxy.upstream.models import PRODUCTS, InvalidCatalogError, parse_catalog
from proxy.upstream.token import TokenProvider

# The service's vocabulary too: handlers and the change feed take these from here.
__all__ = ["CATALOG", "CatalogEntry", "CatalogService", "CatalogStatus", "Lookup", "Outcome"]

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CatalogStatus:
    """What readiness needs to know: can a catalog be served, and the state of each part."""

    servable: bool
    report: dict[str, Any]


class CatalogService:
    """Gives handlers the cached catalog, its simplified view, and reports on the parts behind it.

    The view is built once per catalog version (keyed by the entry's ETag), not per request,
    and from products parsed once: see :meth:`view_of`.
    """

    def __init__(
        self,
        cache: CatalogCache,
        upstream: UpstreamClient,
        tokens: TokenProvider,
        *,
        store: Backplane,
        admin_gate: RateGate,
    ) -> None:
        """Serve from ``cache``; ``upstream``, ``tokens``, ``store`` are asked for their state."""
        self._cache = cache
        self._store = store
        # The cache's own method, not one wrapping it: it runs for every request answered.
        self.hit: Callable[[], Lookup | None] = cache.hit
        self._upstream = upstream
        self._tokens = tokens
        self._admin_gate = admin_gate
        self._view: tuple[str, CatalogView] | None = None
        self.warming = False

    @property
    def cache(self) -> CatalogCache:
        """The cache behind the service: for the application's wiring and for tests only."""
        return self._cache

    @property
    def held(self) -> CatalogEntry | None:
        """The catalog this replica holds, if any (possibly stale)."""
        return self._cache.local

    @property
    def shared_etag(self) -> str | None:
        """The ETag of the deployment's current catalog, as far as this replica knows."""
        return self._cache.shared_etag

    def need(self) -> None:
        """Keep a catalog fresh from now on, with no caller traffic (someone follows it)."""
        self._cache.need()

    def lookup(self) -> Awaitable[Lookup]:
        """Return the catalog as the upstream sent it, from cache when possible."""
        # The cache's coroutine itself, not one wrapping it: one frame less on every hit.
        return self._cache.lookup()

    async def refresh(self) -> Lookup:
        """Fetch the catalog now: one whose fetch began after this call (see `Fills.forced`)."""
        return await self._cache.refresh()

    async def warm_up(self) -> None:
        """Fill the cache at start-up (from the shared store if it has a fresh entry)."""
        self.warming = True
        try:
            await self._cache.lookup()
            logger.info("warm_up_done")
        except Exception as exc:  # noqa: BLE001 - the keeper goes on trying; nothing to raise to
            logger.warning("warm_up_failed", error=str(exc), kind=type(exc).__name__)
        finally:
            self.warming = False

    async def admin_refresh(self) -> Lookup:
        """Refresh on an operator's request, at most once per interval for the deployment."""
        wait = await self._admin_gate.admit()
        if wait > 0:
            raise RefreshTooSoonError(wait)
        logger.info("catalog_refresh_started", reason="admin")
        return await self._cache.refresh()

    def view_of(self, lookup: Lookup) -> CatalogView:
        """Return the simplified view of the catalog version ``lookup`` found."""
        return self.view_of_entry(lookup.entry)

    def view_of_entry(self, entry: CatalogEntry) -> CatalogView:
        """Return the simplified view of ``entry``; `UpstreamBadResponse` if it does not parse.

        The client validates a body by parsing it and keeps its last answer with the products
        (``latest``), while the cache keeps the body. A version whose bytes are that answer's
        is viewed from the products already parsed; any other (another replica fetched it,
        or a newer one replaced it) is parsed here, once per version, for the handlers and
        the change feed alike.
        """
        cached = self._view
        if cached is not None and cached[0] == entry.etag:
            return cached[1]
        # Built without awaiting, so concurrent requests cannot build the same version twice.
        fetched = self._upstream.latest(PRODUCTS)
        if fetched is not None and fetched.body == entry.body:
            products = fetched.value
        else:
            try:
                products = parse_catalog(entry.body)
            except InvalidCatalogError as exc:
                raise UpstreamBadResponse(f"the cached catalog cannot be read: {exc}") from None
        view = CatalogView.build(products)
        self._view = (entry.etag, view)
        return view

    @staticmethod
    def view_of_body(body: bytes) -> CatalogView:
        """Return the simplified view of a catalog's bytes (a kept version's snapshot).

        Raises `UpstreamBadResponse` when they do not parse.
        """
        try:
            return CatalogView.parse(body)
        except InvalidCatalogError as exc:
            raise UpstreamBadResponse(f"a kept catalog cannot be read: {exc}") from None

    async def status(self, now: float) -> CatalogStatus:
        """Report catalog, store, upstream and token state; ``now`` is wall-clock time."""
        cache = self._cache
        store_ok = await self._store.ping()
        entry = cache.local
        catalog: dict[str, Any] = {"cached": entry is not None}
        usable = False
        if entry is not None:
            usable = cache.freshness.is_usable(entry, now)
            catalog |= {
                "age_seconds": round(cache.freshness.age(entry, now), 3),
                "stale": not cache.freshness.is_fresh(entry, now),
                "usable": usable,
            }
        outcome = self._upstream.last_outcome(PRODUCTS)
        blocked_for = self._upstream.blocked_for(PRODUCTS)
        upstream = {"last_outcome": outcome, "rate_limited_for": round(blocked_for)}
        # Without a usable entry we can serve only if the upstream is not known to be failing
        # or holding us off; while warming up, not yet: the first callers would wait on it.
        servable = usable or (outcome in {"ok", "unknown"} and not self.warming and not blocked_for)
        report = {
            "catalog": catalog,
            "store": {"state": self._store.state, "reachable": store_ok},
            "upstream": upstream,
            "token": self._tokens.state,
        }
        return CatalogStatus(servable=servable, report=report)


CATALOG = web.AppKey("catalog", CatalogService)
"""Where an application keeps its catalog service."""
