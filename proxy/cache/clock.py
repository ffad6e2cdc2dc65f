"""The one rule for stamps another replica wrote: they are read on this replica's own clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

CLOCK_SKEW_TOLERANCE = 5.0
"""Seconds a time may lie ahead of this clock and still be taken as written (clocks drift)."""
FIRST_SEEN_KEPT = 8
"""Times ahead of this clock remembered (oldest forgotten first): a few catalogs or versions."""

Identity = TypeVar("Identity", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Clocks:
    """The two clocks a cache reads (tests give it clocks that move only when told)."""

    wall: Callable[[], float] = time.time
    """Stamps entries and judges their age: compared across replicas (see `OwnClock`)."""
    monotonic: Callable[[], float] = time.monotonic
    """Paces retries and store reads: only ever compared with itself."""


class OwnClock(Generic[Identity]):
    """Reads stamps written by any replica on this replica's clock.

    A stamp up to `CLOCK_SKEW_TOLERANCE` ahead of this clock, or behind it, is taken as written.
    One further ahead was written by a clock that runs fast: it is taken as the moment this
    replica first read it, remembered by ``identity`` (what the stamp belongs to), so reading
    the same thing again never makes it look newer, while a new stamp counts as the news it is.

    The catalog cache is the one place that compares stamps from different replicas (which
    entry is newer, and how old it is), and every such stamp goes through :meth:`read`. Nothing
    else does: the change feed records what the store holds (it compares no stamps), and
    ``Retry-After`` windows, locks and the shared token are shared as a remaining life.
    """

    def __init__(
        self,
        *,
        on_skew: Callable[[Identity, float], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Read stamps on ``clock``; ``on_skew(identity, seconds_ahead)`` at each new skew."""
        self._clock = clock
        self._on_skew = on_skew
        self._first_seen: dict[Identity, float] = {}

    def read(self, identity: Identity, stamp: float) -> float:
        """Return ``stamp`` on this replica's clock: as written, or when first seen here."""
        seen = self._first_seen.get(identity)
        if seen is not None:
            return seen
        now = self._clock()
        if stamp <= now + CLOCK_SKEW_TOLERANCE:
            return stamp
        if len(self._first_seen) >= FIRST_SEEN_KEPT:
            self._first_seen.pop(next(iter(self._first_seen)))
        self._first_seen[identity] = now
        self._on_skew(identity, stamp - now)
        return now
