"""What a catalog lookup answers: the entry, how it was obtained, its age and freshness left."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from proxy.cache.entry import CatalogEntry
from proxy.cache.freshness import Freshness


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


def lookup_at(
    entry: CatalogEntry,
    outcome: Outcome,
    now: float,
    freshness: Freshness,
    *,
    collapsed: bool = False,
) -> Lookup:
    """Return the lookup of ``entry`` at ``now``: its age and freshness left by ``freshness``."""
    return Lookup(
        entry=entry,
        outcome=outcome,
        age=freshness.age(entry, now),
        ttl_left=freshness.ttl_left(entry, now),
        collapsed=collapsed,
    )
