"""A clock for code that takes one as a callable: it only moves when a test moves it."""

from __future__ import annotations

# A plausible wall-clock time (November 2023), so timestamps derived from it look real.
START = 1_700_000_000.0


class FakeClock:
    """Time in seconds that stands still until ``advance`` (or an assignment to ``now``)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative: backwards, as a wall clock may)."""
        self.now += seconds
