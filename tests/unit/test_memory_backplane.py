"""MemoryBackplane on a fake clock: values with expiry, atomic helpers, local announcements."""

from __future__ import annotations

import pytest

from proxy.backplane.memory import MemoryBackplane
from proxy.coordination.rate import RateGate
from proxy.coordination.turns import Turns
from tests.support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def plane(clock: FakeClock) -> MemoryBackplane:
    return MemoryBackplane(clock=clock)


async def test_set_then_get(plane: MemoryBackplane) -> None:
    await plane.set("k", b"value\n\xff", ttl=10)

    assert await plane.get("k") == b"value\n\xff"
    assert await plane.get("other") is None
    assert plane.state == "memory"
    assert await plane.ping() is True


async def test_expiry_follows_the_clock(plane: MemoryBackplane, clock: FakeClock) -> None:
    await plane.set("k", b"v", ttl=10)
    clock.advance(9.999)
    assert await plane.get("k") == b"v"
    found = await plane.get_with_ttl("k")
    assert found is not None
    assert found[0] == b"v"
    assert found[1] == pytest.approx(0.001, abs=1e-6)  # floats near 1.7e9 step by ~2e-7
    clock.advance(0.001)
    assert await plane.get("k") is None
    assert await plane.get_with_ttl("k") is None
    # Expired items are dropped, not resurrected by a clock going back.
    clock.advance(-5)
    assert await plane.get("k") is None


async def test_set_if_absent_and_compare_and_delete(
    plane: MemoryBackplane, clock: FakeClock
) -> None:
    assert await plane.set_if_absent("lock", b"a", ttl=5) is True
    assert await plane.set_if_absent("lock", b"b", ttl=5) is False
    assert await plane.delete_if_equal("lock", b"b") is False
    assert await plane.get("lock") == b"a"
    assert await plane.delete_if_equal("lock", b"a") is True
    assert await plane.get("lock") is None
    assert await plane.set_if_absent("lock", b"c", ttl=5) is True
    clock.advance(5)
    assert await plane.set_if_absent("lock", b"d", ttl=5) is True, "an expired one is absent"


async def test_ttl_and_hold_never_shorten(plane: MemoryBackplane, clock: FakeClock) -> None:
    assert await plane.ttl("window") == 0.0
    await plane.hold("window", 20)
    assert await plane.ttl("window") == pytest.approx(20)
    await plane.hold("window", 5)
    assert await plane.ttl("window") == pytest.approx(20), "a shorter window must not win"
    clock.advance(18)
    await plane.hold("window", 5)
    assert await plane.ttl("window") == pytest.approx(5)


async def test_announcements_wake_this_process(plane: MemoryBackplane) -> None:
    heard: list[str] = []
    plane.on("catalog", lambda: heard.append("catalog"))
    waiter = plane.waiter("catalog")
    other = plane.waiter("token")
    await plane.publish("catalog")
    assert waiter.is_set()
    assert not other.is_set()
    assert heard == ["catalog"]
    assert plane.waiter("catalog") is not waiter, "a new event for the next round"


async def test_close_drops_everything(plane: MemoryBackplane) -> None:
    await plane.set("k", b"v", ttl=10)
    await plane.close()
    assert await plane.get("k") is None


async def test_turns_over_memory_are_exclusive(plane: MemoryBackplane) -> None:
    first = Turns(plane, name="lock", topic="catalog", ttl=5, owner="a")
    second = Turns(plane, name="lock", topic="catalog", ttl=5, owner="b")
    async with first.turn() as mine:
        assert mine is True
        async with second.turn() as theirs:
            assert theirs is False
    async with second.turn() as theirs:
        assert theirs is True


async def test_rate_gate_admits_once_per_interval(plane: MemoryBackplane, clock: FakeClock) -> None:
    gate = RateGate(plane, "gate", 5.0, clock=clock)
    assert await gate.admit() == 0.0
    assert await gate.admit() == pytest.approx(5.0)
    clock.advance(4)
    assert await gate.admit() == pytest.approx(1.0)
    clock.advance(1)
    assert await gate.admit() == 0.0
    assert await RateGate(plane, "off", 0.0).admit() == 0.0
