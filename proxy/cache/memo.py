"""The lookup last served, kept while the whole seconds its answer shows stay the same."""

from __future__ import annotations

import math

from proxy.cache.lookup import Lookup, Outcome


class LookupMemo:
    """One `Lookup` and the span of wall-clock time it may be served again as it is.

    Answers show whole seconds (``Age``, ``ttl``): while ``int(age)`` and ``int(ttl_left)``
    stay the same, the same object is served, so what is prepared from it (headers, bodies)
    is reused by identity (:class:`proxy.web.answers.Answers`). The cache reads the slots
    directly on its hit path; a method call per request would cost more than the check.
    """

    __slots__ = ("end", "lookup", "result", "start")

    def __init__(self) -> None:
        """Hold nothing yet."""
        self.lookup: Lookup | None = None
        """The lookup to serve again, if any."""
        self.result = Outcome.HIT.value
        """How it counts in the lookup metric each time it is served."""
        self.start = 0.0
        """Served again only after this time (exclusive)..."""
        self.end = 0.0
        """... and before this one (exclusive)."""

    def keep_fresh(self, lookup: Lookup, ttl: float) -> None:
        """Keep a fresh lookup (age at least 0) for as long as its whole seconds hold."""
        age, fetched_at = lookup.age, lookup.entry.fetched_at
        whole_left = math.floor(ttl - age)
        self.start = fetched_at + max(math.floor(age), ttl - whole_left - 1)
        self.end = fetched_at + min(math.floor(age) + 1, ttl - whole_left)
        self.result = Outcome.HIT.value
        self.lookup = lookup

    def keep_stale(self, lookup: Lookup, ttl: float, stale_ttl: float, until: float) -> None:
        """Keep a stale lookup while its whole seconds hold, and never past ``until``."""
        age, fetched_at = lookup.age, lookup.entry.fetched_at
        # int(age) is constant between whole seconds of age; int(ttl_left), negative, between
        # whole seconds past the TTL; the memo covers where both hold.
        past = ttl + math.floor(age - ttl)
        low = max(math.floor(age), past)
        high = min(math.floor(age) + 1, past + 1, ttl + stale_ttl)
        self.start = fetched_at + low
        self.end = min(fetched_at + high, until)
        self.result = Outcome.STALE.value
        self.lookup = lookup
