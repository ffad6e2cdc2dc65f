"""The cache's one decision, table by table: no I/O, no clock, no cache."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from proxy.cache.decision import STORE_READ_INTERVAL, Action, Asker, Situation, Step, decide
from proxy.cache.entry import CatalogEntry
from proxy.cache.freshness import Freshness

TTL, STALE_TTL = 60.0, 300.0
POLICY = Freshness(ttl=TTL, stale_ttl=STALE_TTL)
NOW = 1_000_000.0


def _entry(age: float) -> CatalogEntry:
    return CatalogEntry.create(b"[]", "application/json", NOW - age)


FRESH, STALE, DEAD = _entry(10), _entry(TTL + 10), _entry(TTL + STALE_TTL + 1)
# Nothing in flight, no backoff, no failure, the store read long ago, nothing announced.
CALM = Situation(
    asker=Asker.CALLER,
    entry=None,
    now=NOW,
    announced=False,
    since_read=math.inf,
    read=False,
    filling=False,
    backoff=0.0,
    failure=False,
)
JUST_READ = STORE_READ_INTERVAL / 2


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"entry": FRESH}, Action(Step.SERVE_FRESH)),
        ({"entry": FRESH, "announced": True}, Action(Step.READ_STORE)),
        ({"entry": STALE}, Action(Step.READ_STORE)),
        ({"entry": STALE, "since_read": JUST_READ}, Action(Step.SERVE_STALE, refresh=True)),
        ({"entry": STALE, "filling": True}, Action(Step.SERVE_STALE)),
        (
            {"entry": STALE, "since_read": JUST_READ, "backoff": 2.0},
            Action(Step.SERVE_STALE),
        ),
        ({"entry": STALE, "since_read": JUST_READ, "announced": True}, Action(Step.READ_STORE)),
        ({"entry": DEAD, "since_read": JUST_READ}, Action(Step.READ_STORE)),
        ({}, Action(Step.READ_STORE)),
    ],
    ids=[
        "fresh",
        "fresh-but-announced",
        "stale-read-due",
        "stale-just-read",
        "stale-while-filling",
        "stale-backing-off",
        "stale-announced",
        "past-stale-ttl",
        "nothing",
    ],
)
def test_a_caller_before_reading_the_store(change: dict[str, object], expected: Action) -> None:
    assert decide(replace(CALM, **change), POLICY) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"entry": FRESH}, Action(Step.SERVE_FRESH)),
        # A read that failed leaves the announcement: what is held is served all the same.
        ({"entry": FRESH, "announced": True}, Action(Step.SERVE_FRESH)),
        ({"entry": STALE}, Action(Step.SERVE_STALE, refresh=True)),
        ({"entry": STALE, "backoff": 2.0, "failure": True}, Action(Step.SERVE_STALE)),
        ({}, Action(Step.FILL)),
        ({"entry": DEAD}, Action(Step.FILL)),
        ({"backoff": 2.0, "failure": True}, Action(Step.REPLAY_FAILURE, seconds=2.0)),
        # A fill in flight is joined rather than answered with the last failure.
        ({"backoff": 2.0, "failure": True, "filling": True}, Action(Step.FILL)),
        # A backoff without a failure to tell (a Retry-After from the token side): fill.
        ({"backoff": 2.0}, Action(Step.FILL)),
    ],
    ids=[
        "fresh",
        "fresh-read-failed",
        "stale",
        "stale-backing-off",
        "nothing",
        "past-stale-ttl",
        "failed-moments-ago",
        "failed-but-filling",
        "backoff-without-failure",
    ],
)
def test_a_caller_after_reading_the_store(change: dict[str, object], expected: Action) -> None:
    situation = replace(CALM, read=True, **change)  # type: ignore[arg-type]
    assert decide(situation, POLICY) == expected


KEEPER = replace(CALM, asker=Asker.KEEPER, needed=True)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"needed": False, "entry": STALE}, Action(Step.WAIT, seconds=math.inf)),
        ({"entry": FRESH}, Action(Step.WAIT, seconds=TTL - 10)),
        ({"entry": FRESH, "announced": True}, Action(Step.READ_STORE)),
        ({"entry": STALE}, Action(Step.READ_STORE)),
        ({"entry": STALE, "since_read": JUST_READ}, Action(Step.FILL)),
        ({"entry": STALE, "read": True}, Action(Step.FILL)),
        ({"entry": FRESH, "read": True}, Action(Step.WAIT, seconds=TTL - 10)),
        (
            {"entry": FRESH, "read": True, "announced": True},
            Action(Step.WAIT, seconds=STORE_READ_INTERVAL / 4),
        ),
        ({"entry": STALE, "read": True, "backoff": 0.4}, Action(Step.WAIT, seconds=0.4)),
        (
            {"entry": STALE, "read": True, "backoff": 20.0},
            Action(Step.WAIT, seconds=STORE_READ_INTERVAL),
        ),
        ({"read": True}, Action(Step.FILL)),
    ],
    ids=[
        "not-needed",
        "fresh",
        "announced",
        "stale-read-due",
        "stale-just-read",
        "stale-after-reading",
        "fresh-after-reading",
        "read-failed",
        "short-backoff",
        "long-backoff",
        "nothing",
    ],
)
def test_the_keeper(change: dict[str, object], expected: Action) -> None:
    assert decide(replace(KEEPER, **change), POLICY) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("offset", [-3600.0, -TTL, -1.0, 0.0, 1.0, TTL, 3600.0])
def test_a_clock_that_moved_is_judged_by_age_alone(offset: float) -> None:
    # The decision reads only the age on this clock: an entry is fresh for TTL from its stamp.
    entry = _entry(0)
    situation = replace(CALM, entry=entry, now=NOW + offset, read=True)
    step = decide(situation, POLICY).step
    if offset < TTL:
        assert step is Step.SERVE_FRESH
    elif offset < TTL + STALE_TTL:
        assert step is Step.SERVE_STALE
    else:
        assert step is Step.FILL
