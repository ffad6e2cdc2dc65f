"""What the catalog cache does next: one pure decision, for callers and for the keeper alike.

No I/O and no clock of its own: :func:`decide` is given what the cache knows now and returns
an :class:`Action`. The cache carries it out (reads the store, fills, serves, sleeps) and asks
again with what it learned, until the answer is to serve (a caller) or to wait (the keeper).

The rules, for a caller: a fresh entry held here is served with no I/O at all; otherwise the
shared store is read (another replica may have refreshed it), at most once a second unless an
announcement says it changed; a stale entry within ``stale_ttl`` is served at once while one
background refresh starts; with nothing usable, callers share one fill, unless one failed
moments ago and the backoff (1 s doubling to 30 s, jittered, never inside a ``Retry-After``)
forbids another: then the failure is replayed at once (a 503 with ``Retry-After``). For the
keeper, once a catalog is needed (warm-up, a caller, a listener): sleep while the entry is
fresh, read the store about once a second while it is not, and fill when the backoff allows,
with no caller traffic needed (one upstream fetch per TTL for the deployment; the other
replicas adopt the stored one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from proxy.cache.entry import CatalogEntry
from proxy.cache.freshness import Freshness

STORE_READ_INTERVAL = 1.0
"""Without an announcement, the store is read at most this often for one replica's needs."""


class Asker(Enum):
    """Who asks: a caller waits for an answer; the keeper keeps a catalog with no caller."""

    CALLER = "caller"
    KEEPER = "keeper"


class Step(Enum):
    """What to do next."""

    SERVE_FRESH = "serve_fresh"
    """Answer with the entry held here, fresh (a hit)."""
    SERVE_STALE = "serve_stale"
    """Answer with the entry held here, stale but within ``stale_ttl``."""
    READ_STORE = "read_store"
    """Read the shared store (another replica may hold a newer entry), then ask again."""
    REPLAY_FAILURE = "replay_failure"
    """Answer with the last fill's failure again: the backoff forbids another fill now."""
    FILL = "fill"
    """Fill: fetch through the deployment's coordinated fill (or join the one in flight)."""
    WAIT = "wait"
    """(The keeper) sleep ``seconds``, or until woken (an announcement, a need, a failure)."""


@dataclass(frozen=True, slots=True)
class Situation:
    """What the cache knows when it asks."""

    asker: Asker
    entry: CatalogEntry | None
    """The newest entry held here."""
    now: float
    """Wall-clock time, on this replica's clock (stamps are read on it too)."""
    announced: bool
    """Another replica announced a new entry that this one has not read yet."""
    since_read: float
    """Seconds since this replica last read the store (``inf``: never)."""
    read: bool
    """The store has been read while answering this question already."""
    filling: bool
    """A fill is in flight in this process."""
    backoff: float
    """Seconds until the backoff allows another fill (0: now)."""
    failure: bool
    """The last fill failed (and no fill or adopted entry has succeeded since)."""
    needed: bool = True
    """(The keeper) a catalog is wanted: warm-up, a caller or a listener asked for one."""


@dataclass(frozen=True, slots=True)
class Action:
    """The decision: a step, whether to start a refresh in the background, and how long."""

    step: Step
    refresh: bool = False
    """Start a background fill as well (only with a serve of a stale entry)."""
    seconds: float = 0.0
    """How long to wait (``WAIT``), or the ``Retry-After`` to replay (``REPLAY_FAILURE``)."""


def decide(situation: Situation, policy: Freshness) -> Action:
    """Return what the cache does next in ``situation``, judged by ``policy``."""
    entry, now = situation.entry, situation.now
    fresh = entry is not None and policy.is_fresh(entry, now)
    if situation.asker is Asker.KEEPER:
        return _for_keeper(situation, policy, fresh=fresh)
    usable = entry is not None and policy.is_usable(entry, now)
    if situation.read:
        return _for_caller_after_reading(situation, fresh=fresh, usable=usable)
    return _for_caller(situation, fresh=fresh, usable=usable)


def _for_caller(situation: Situation, *, fresh: bool, usable: bool) -> Action:
    if fresh and not situation.announced:
        return Action(Step.SERVE_FRESH)
    if (
        usable
        and not situation.announced
        and (situation.filling or situation.since_read < STORE_READ_INTERVAL)
    ):
        # A fill is on its way, or the store was read just now: asking it again would only
        # add load.
        return Action(Step.SERVE_STALE, refresh=_may_refresh(situation))
    return Action(Step.READ_STORE)


def _for_caller_after_reading(situation: Situation, *, fresh: bool, usable: bool) -> Action:
    if fresh:
        return Action(Step.SERVE_FRESH)
    if usable:
        return Action(Step.SERVE_STALE, refresh=_may_refresh(situation))
    if situation.backoff > 0 and situation.failure and not situation.filling:
        # A fill failed moments ago: callers hear so at once, rather than each sending the
        # upstream another fill (the keeper retries when the backoff allows).
        return Action(Step.REPLAY_FAILURE, seconds=situation.backoff)
    return Action(Step.FILL)


def _may_refresh(situation: Situation) -> bool:
    """Whether a background refresh starts: none runs, and the backoff allows one now."""
    return not situation.filling and situation.backoff <= 0


def _for_keeper(situation: Situation, policy: Freshness, *, fresh: bool) -> Action:
    entry = situation.entry
    if not situation.needed:
        return Action(Step.WAIT, seconds=math.inf)
    if fresh and entry is not None and not situation.announced:
        # Refresh-ahead: once a catalog is needed, it is kept fresh with no traffic, one fetch
        # per TTL for the deployment (the other replicas adopt it from the store).
        return Action(Step.WAIT, seconds=policy.ttl_left(entry, situation.now))
    if not situation.read and (situation.announced or situation.since_read >= STORE_READ_INTERVAL):
        return Action(Step.READ_STORE)
    if situation.read and situation.announced:
        # The announced entry could not be read: again in a moment, not in a loop.
        return Action(Step.WAIT, seconds=STORE_READ_INTERVAL / 4)
    if situation.backoff > 0:
        return Action(Step.WAIT, seconds=min(situation.backoff, STORE_READ_INTERVAL))
    return Action(Step.FILL)
