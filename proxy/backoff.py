"""When to try again after a failure: the one backoff used wherever something waits to retry."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

# Each pause is drawn between this share of the nominal pause and the whole of it, so
# replicas that failed together do not retry together.
JITTER_FLOOR = 0.5


class Backoff:
    """Exponential pauses, capped and jittered, that never end before an earliest time.

    ``failed()`` doubles the nominal pause (``first``, ``2 * first``, ... up to ``cap``) and
    schedules the next attempt a jittered pause from now, or later when the upstream named an
    earliest time (a ``Retry-After``). ``hold_until()`` records such a time alone: an attempt
    refused locally (a window still in force) says nothing new about the upstream, so it does
    not grow the pause. ``succeeded()`` starts over.

    Example, with ``first=1`` and ``cap=30``: failures at t=0, 1, 3 schedule attempts at about
    t=0.5-1, 2-3 and 5-7; a failure with ``not_before=t+20`` schedules the next at t+20.
    """

    def __init__(
        self,
        *,
        first: float,
        cap: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """Start with no failure recorded; ``clock`` is monotonic seconds."""
        self._first = first
        self._cap = cap
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._pause = 0.0
        self._ready_at = 0.0

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed."""
        return self._pause > 0

    def delay(self) -> float:
        """Seconds until the next attempt may go (0 when it may go now)."""
        return max(self._ready_at - self._clock(), 0.0)

    def failed(self, *, not_before: float | None = None) -> float:
        """Record a failure; return the seconds until the next attempt."""
        self._pause = min(self._pause * 2, self._cap) if self._pause else self._first
        now = self._clock()
        ready_at = now + self._pause * self._rng.uniform(JITTER_FLOOR, 1.0)
        if not_before is not None:
            ready_at = max(ready_at, not_before)
        self._ready_at = ready_at
        return ready_at - now

    def hold_until(self, when: float) -> None:
        """Let no attempt go before ``when``, without counting a failure."""
        self._ready_at = max(self._ready_at, when)

    def succeeded(self) -> None:
        """Forget past failures: the next failure starts from ``first`` again."""
        self._pause = 0.0
        self._ready_at = 0.0
