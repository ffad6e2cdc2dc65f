"""The catalog service: the one thing HTTP handlers ask for the catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.cache.readthrough import CatalogCache, Lookup
from proxy.upstream.client import UpstreamClient
from proxy.upstream.token import TokenProvider


@dataclass(frozen=True, slots=True)
class CatalogStatus:
    """What readiness needs to know: can a catalog be served, and the state of each part."""

    servable: bool
    report: dict[str, Any]


class CatalogService:
    """Gives handlers the cached catalog and reports on the parts behind it."""

    def __init__(
        self, cache: CatalogCache, upstream: UpstreamClient, tokens: TokenProvider
    ) -> None:
        """Serve from ``cache``; ``upstream`` and ``tokens`` are only asked for their state."""
        self._cache = cache
        self._upstream = upstream
        self._tokens = tokens

    @property
    def cache(self) -> CatalogCache:
        """The cache behind the service."""
        return self._cache

    async def lookup(self) -> Lookup:
        """Return the catalog as the upstream sent it, from cache when possible."""
        return await self._cache.get()

    async def refresh(self) -> Lookup:
        """Fetch the catalog now (coalesced with any fetch in flight)."""
        return await self._cache.refresh()

    async def status(self, now: float) -> CatalogStatus:
        """Report catalog, store, upstream and token state; ``now`` is wall-clock time."""
        cache = self._cache
        store_ok = await cache.store.ping()
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
        outcome = self._upstream.last_outcome
        upstream = {"last_outcome": outcome, "rate_limited_for": round(self._upstream.blocked_for)}
        # Without a usable entry we can serve only if the upstream is not known to be failing.
        servable = usable or outcome in {"ok", "unknown"}
        report = {
            "catalog": catalog,
            "store": {"state": cache.store.state, "reachable": store_ok},
            "upstream": upstream,
            "token": self._tokens.state,
        }
        return CatalogStatus(servable=servable, report=report)
