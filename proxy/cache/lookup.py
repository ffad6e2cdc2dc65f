"""What a catalog lookup answers: the entry, how it was obtained, its age and freshness left."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from proxy.cache.entry import CatalogEntry


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
