"""MemoryStore with a fake clock; RedisStore against a real redis-server, dead or frozen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy.cache.redis_store import RedisStore
from proxy.cache.store import MemoryStore
from proxy.coordination.client import BREAKER_FIRST_PAUSE, RedisGuard, connect
from tests.support import RedisServer, make_settings

TIMEOUT = 0.2


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- MemoryStore -------------------------------------------------------------------------


async def test_memory_set_then_get() -> None:
    store = MemoryStore(clock=FakeClock())
    await store.set("k", b"value\n\xff", ttl=10)

    assert await store.get("k") == b"value\n\xff"
    assert await store.get("other") is None
    assert store.state == "memory"
    assert await store.ping() is True


async def test_memory_set_overwrites() -> None:
    store = MemoryStore(clock=FakeClock())
    await store.set("k", b"one", ttl=10)
    await store.set("k", b"two", ttl=10)
    assert await store.get("k") == b"two"


async def test_memory_expiry_follows_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"v", ttl=10)

    clock.advance(9.999)
    assert await store.get("k") == b"v"
    clock.advance(0.001)
    assert await store.get("k") is None
    # Expired items are dropped, not resurrected by a clock going back.
    clock.advance(-5)
    assert await store.get("k") is None


async def test_memory_overwrite_extends_expiry() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"old", ttl=10)
    clock.advance(8)
    await store.set("k", b"new", ttl=10)
    clock.advance(8)
    assert await store.get("k") == b"new"


async def test_memory_close_drops_everything() -> None:
    store = MemoryStore(clock=FakeClock())
    await store.set("k", b"v", ttl=10)
    await store.close()
    assert await store.get("k") is None


# --- RedisStore --------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def redis_store(redis_server: RedisServer, clock: FakeClock) -> AsyncIterator[RedisStore]:
    connection = connect(
        make_settings("http://127.0.0.1:9", redis_url=redis_server.url, redis_timeout=TIMEOUT)
    )
    assert connection is not None
    yield RedisStore(RedisGuard(connection.client, timeout=TIMEOUT, clock=clock))
    await connection.close()


async def test_redis_set_then_get(redis_store: RedisStore, redis_server: RedisServer) -> None:
    await redis_store.set("k", b"value\n\x00\xff", ttl=30)

    assert await redis_store.get("k") == b"value\n\x00\xff"
    assert await redis_store.get("absent") is None
    assert redis_store.state == "ok"
    assert redis_store.errors == 0
    assert await redis_store.ping() is True
    pttl = int(redis_server.command("PTTL", "k").decode().strip().lstrip(":"))
    assert 29_000 < pttl <= 30_000


async def test_redis_expiry_is_milliseconds(redis_store: RedisStore) -> None:
    await redis_store.set("short", b"v", ttl=0.15)
    assert await redis_store.get("short") == b"v"
    await asyncio.sleep(0.25)
    assert await redis_store.get("short") is None


async def test_redis_tiny_ttl_still_sets_a_positive_expiry(
    redis_store: RedisStore, redis_server: RedisServer
) -> None:
    await redis_store.set("tiny", b"v", ttl=0.0001)
    assert redis_store.errors == 0
    assert redis_store.state == "ok"
    # px=1: gone (or about to be) almost at once, and never stored without expiry.
    await asyncio.sleep(0.01)
    assert redis_server.command("EXISTS", "tiny") == b":0\r\n"


async def test_redis_down_means_miss_and_degraded(
    redis_store: RedisStore, redis_server: RedisServer, clock: FakeClock
) -> None:
    await redis_store.set("k", b"v", ttl=30)
    redis_server.stop()

    assert await redis_store.get("k") is None
    assert redis_store.state == "degraded"
    assert redis_store.errors == 1

    clock.advance(BREAKER_FIRST_PAUSE + 0.01)
    await redis_store.set("k", b"w", ttl=30)  # must not raise
    assert redis_store.errors == 2
    assert redis_store.state == "degraded"


async def test_breaker_skips_calls_during_pause_then_probes_and_recovers(
    redis_store: RedisStore, redis_server: RedisServer, clock: FakeClock
) -> None:
    await redis_store.set("k", b"v", ttl=30)
    redis_server.stop()
    assert await redis_store.get("k") is None
    assert redis_store.errors == 1

    # Within the first pause nothing reaches the network: no new errors, answers are instant.
    started = time.monotonic()
    for _ in range(20):
        assert await redis_store.get("k") is None
        await redis_store.set("k", b"x", ttl=30)
    assert time.monotonic() - started < TIMEOUT
    assert redis_store.errors == 1

    # Past the pause one call probes, fails, and the pause doubles.
    clock.advance(BREAKER_FIRST_PAUSE)
    assert await redis_store.get("k") is None
    assert redis_store.errors == 2
    clock.advance(BREAKER_FIRST_PAUSE)  # 0.5 s into a 1 s pause: still closed
    assert await redis_store.get("k") is None
    assert redis_store.errors == 2

    # Redis comes back (empty, it kept nothing): after the pause the probe succeeds.
    redis_server.start()
    assert await redis_store.get("k") is None
    assert redis_store.state == "degraded"
    assert redis_store.errors == 2
    clock.advance(2 * BREAKER_FIRST_PAUSE)
    await redis_store.set("k", b"back", ttl=30)
    assert redis_store.state == "ok"
    assert redis_store.errors == 2
    assert await redis_store.get("k") == b"back"


async def test_ping_bypasses_breaker_and_closes_it(
    redis_store: RedisStore, redis_server: RedisServer
) -> None:
    redis_server.stop()
    assert await redis_store.ping() is False
    assert redis_store.state == "degraded"
    assert redis_store.errors == 1
    redis_server.start()

    # The breaker is open (clock did not move), yet ping asks Redis and closes it.
    assert await redis_store.ping() is True
    assert redis_store.state == "ok"


async def test_breaker_pause_is_capped(
    redis_store: RedisStore, redis_server: RedisServer, clock: FakeClock
) -> None:
    redis_server.stop()
    for _ in range(10):
        await redis_store.get("k")
        clock.advance(100)
    assert redis_store.errors == 10
    # Capped at 15 s: 15 s after the last failure a probe goes out again.
    clock.now -= 100
    clock.advance(14.9)
    await redis_store.get("k")
    assert redis_store.errors == 10
    clock.advance(0.1)
    await redis_store.get("k")
    assert redis_store.errors == 11


async def test_frozen_redis_answers_within_timeout(
    redis_store: RedisStore, redis_server: RedisServer
) -> None:
    await redis_store.set("k", b"v", ttl=30)
    assert await redis_store.get("k") == b"v"
    redis_server.pause()
    try:
        started = time.monotonic()
        value = await redis_store.get("k")
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()

    assert value is None
    assert elapsed < TIMEOUT + 0.3
    assert redis_store.state == "degraded"
    assert redis_store.errors == 1


async def test_frozen_redis_set_returns_within_timeout(
    redis_store: RedisStore, redis_server: RedisServer, clock: FakeClock
) -> None:
    assert await redis_store.ping() is True
    redis_server.pause()
    try:
        started = time.monotonic()
        await redis_store.set("k", b"v", ttl=30)
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert elapsed < TIMEOUT + 0.3
    assert redis_store.errors == 1

    clock.advance(BREAKER_FIRST_PAUSE)
    await redis_store.set("k", b"after", ttl=30)
    assert redis_store.state == "ok"
    assert await redis_store.get("k") == b"after"
