"""The clock rule: stamps another replica wrote, read on this replica's clock."""

from __future__ import annotations

import pytest

from proxy.cache.clock import CLOCK_SKEW_TOLERANCE, FIRST_SEEN_KEPT, OwnClock

NOW = 1_000_000.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def skews() -> list[tuple[str, float]]:
    return []


@pytest.fixture
def stamps(clock: Clock, skews: list[tuple[str, float]]) -> OwnClock[str]:
    return OwnClock(on_skew=lambda identity, ahead: skews.append((identity, ahead)), clock=clock)


@pytest.mark.parametrize(
    ("offset", "read_as"),
    [
        (-3600.0, NOW - 3600.0),
        (0.0, NOW),
        (CLOCK_SKEW_TOLERANCE, NOW + CLOCK_SKEW_TOLERANCE),
        (CLOCK_SKEW_TOLERANCE + 0.001, NOW),
        (3600.0, NOW),
    ],
    ids=["an-hour-behind", "now", "at-the-tolerance", "past-the-tolerance", "an-hour-ahead"],
)
def test_a_stamp_is_read_as_written_unless_too_far_ahead(
    stamps: OwnClock[str], skews: list[tuple[str, float]], offset: float, read_as: float
) -> None:
    assert stamps.read("entry", NOW + offset) == read_as
    assert len(skews) == (1 if read_as != NOW + offset else 0)


def test_a_stamp_ahead_stays_first_seen_and_is_reported_once(
    stamps: OwnClock[str], clock: Clock, skews: list[tuple[str, float]]
) -> None:
    assert stamps.read("a", NOW + 3600) == NOW
    clock.now += 10
    # The same thing read again never looks newer than when first seen.
    assert stamps.read("a", NOW + 3600) == NOW
    # Another thing with a stamp ahead is news from now on.
    assert stamps.read("b", NOW + 3600) == NOW + 10
    assert skews == [("a", 3600.0), ("b", 3590.0)]


def test_the_oldest_first_sighting_is_forgotten_first(stamps: OwnClock[str], clock: Clock) -> None:
    for index in range(FIRST_SEEN_KEPT + 1):
        assert stamps.read(str(index), NOW + 3600) == clock.now
        clock.now += 1
    # "0" was forgotten: it counts as first seen now; "1" is still remembered.
    assert stamps.read("0", NOW + 3600) == clock.now
    assert stamps.read("2", NOW + 3600) == NOW + 2
