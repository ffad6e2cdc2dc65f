"""How old a catalog may be: fresh for ``ttl``, then servable while stale for ``stale_ttl``."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.cache.entry import CatalogEntry


@dataclass(frozen=True, slots=True)
class Freshness:
    """The freshness policy as plain arithmetic on an entry's age (docs/reliability.md)."""

    ttl: float
    stale_ttl: float

    def age(self, entry: CatalogEntry, now: float) -> float:
        """Seconds since the entry was fetched (never negative, whatever the clocks say)."""
        return max(now - entry.fetched_at, 0.0)

    def ttl_left(self, entry: CatalogEntry, now: float) -> float:
        """Seconds of freshness left; negative once stale."""
        return self.ttl - self.age(entry, now)

    def is_fresh(self, entry: CatalogEntry, now: float) -> bool:
        """Whether the entry may be served without asking the upstream."""
        return self.ttl_left(entry, now) > 0

    def is_usable(self, entry: CatalogEntry, now: float) -> bool:
        """Whether the entry may still be served at all (fresh, or stale within ``stale_ttl``)."""
        return self.age(entry, now) < self.ttl + self.stale_ttl

    @property
    def retention(self) -> float:
        """How long a shared store should keep an entry."""
        return self.ttl + self.stale_ttl
