"""Backoff: capped, jittered pauses that never end before an earliest time."""

from __future__ import annotations

import random

import pytest

from proxy.backoff import Backoff
from proxy.backplane.memory import MemoryBackplane
from proxy.observability.metrics import Metrics
from proxy.upstream.errors import (
    RateWindowOpen,
    UpstreamBadResponse,
    UpstreamRateLimited,
    back_off,
)
from proxy.upstream.windows import RateWindows


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, seed: int = 1) -> Backoff:
    return Backoff(first=1.0, cap=30.0, clock=clock, rng=random.Random(seed))


def test_pauses_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    clock = Clock()
    backoff = make(clock)
    nominal = [1, 2, 4, 8, 16, 30, 30, 30]
    for pause in nominal:
        delay = backoff.failed()
        assert pause / 2 <= delay <= pause
        assert backoff.delay() == pytest.approx(delay)
    assert backoff.failing


def test_success_starts_over() -> None:
    clock = Clock()
    backoff = make(clock)
    for _ in range(5):
        backoff.failed()
    backoff.succeeded()
    assert backoff.delay() == 0
    assert not backoff.failing
    assert backoff.failed() <= 1.0


def test_an_earliest_time_wins_over_a_shorter_pause() -> None:
    clock = Clock()
    backoff = make(clock)
    assert backoff.failed(not_before=clock.now + 20) == pytest.approx(20)


def test_holding_until_a_time_does_not_grow_the_pause() -> None:
    clock = Clock()
    backoff = make(clock)
    backoff.failed()
    for _ in range(10):
        # Attempts refused locally inside a window: the old code doubled each time.
        backoff.hold_until(clock.now + 20)
        clock.now += 2
    clock.now += 20
    assert backoff.delay() == 0
    assert backoff.failed() <= 2.0, "the pause grew only by the one real failure"


def test_replicas_that_failed_together_spread_out() -> None:
    clock = Clock()
    delays = {round(make(clock, seed).failed(), 6) for seed in range(20)}
    assert len(delays) > 10


def test_back_off_reads_the_kind_of_failure() -> None:
    clock = Clock()
    backoff = make(clock)
    back_off(backoff, RateWindowOpen("window", retry_after=12.0), clock.now)
    assert backoff.delay() == pytest.approx(12.0)
    assert not backoff.failing
    back_off(backoff, UpstreamRateLimited("429", retry_after=25.0), clock.now)
    assert backoff.delay() == pytest.approx(25.0)
    assert backoff.failing
    clock.now += 25
    back_off(backoff, UpstreamBadResponse("500"), clock.now)
    assert 1.0 <= backoff.delay() <= 2.0


async def test_windows_are_kept_per_endpoint() -> None:
    clock = Clock()
    metrics = Metrics()
    windows = RateWindows(
        backplane=MemoryBackplane(clock=clock),
        key=lambda endpoint: f"window:{endpoint}",
        metrics=metrics,
        clock=clock,
    )
    await windows.check("products")
    await windows.open("products", 20.0)
    with pytest.raises(RateWindowOpen) as refused:
        await windows.check("products")
    assert refused.value.retry_after == pytest.approx(20.0)
    await windows.check("token")
    clock.now += 20
    await windows.check("products")
    text = metrics.render().decode()
    assert (
        'product_proxy_upstream_rate_limit_windows_total{endpoint="products",source="upstream"} 1.0'
        in text
    )
