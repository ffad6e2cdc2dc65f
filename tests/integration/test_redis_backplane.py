"""RedisBackplane against a real redis-server: operations, the breaker, turns, announcements."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.backplane.connect import connect
from proxy.backplane.memory import MemoryBackplane
from proxy.backplane.redis_backplane import (
    BREAKER_FIRST_PAUSE,
    BREAKER_MAX_PAUSE,
    RedisBackplane,
)
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.upstream.token import SharedToken
from proxy.upstream.token_store import BackplaneTokens
from tests.support.clock import FakeClock
from tests.support.redis import RedisServer
from tests.support.settings import make_settings
from tests.support.waiting import eventually

TIMEOUT = 0.2
CHANNEL = "test:events"


def _client(server: RedisServer) -> Redis:
    return Redis.from_url(
        server.url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def _plane(
    server: RedisServer, metrics: Metrics, clock: Callable[[], float] = time.monotonic
) -> RedisBackplane:
    client = _client(server)
    return RedisBackplane(
        client,
        channel=CHANNEL,
        open_pubsub=lambda: client.pubsub(ignore_subscribe_messages=True),
        timeout=TIMEOUT,
        metrics=metrics,
        clock=clock,
    )


def _errors(metrics: Metrics) -> int:
    total = 0.0
    for line in metrics.render().decode().splitlines():
        if line.startswith("product_proxy_redis_errors_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def plane(
    redis_server: RedisServer, metrics: Metrics, clock: FakeClock
) -> AsyncIterator[RedisBackplane]:
    backplane = _plane(redis_server, metrics, clock)
    yield backplane
    await backplane.close()


async def test_set_then_get_with_millisecond_expiry(
    plane: RedisBackplane, metrics: Metrics
) -> None:
    await plane.set("k", b"value\n\x00\xff", ttl=30)

    assert await plane.get("k") == b"value\n\x00\xff"
    assert await plane.get("absent") is None
    assert plane.state == "ok"
    assert await plane.ping() is True
    assert 29.0 < (await plane.ttl("k") or 0) <= 30.0
    found = await plane.get_with_ttl("k")
    assert found is not None
    assert found[0] == b"value\n\x00\xff"
    assert 29.0 < found[1] <= 30.0
    await plane.set("tiny", b"v", ttl=0.0001)
    await asyncio.sleep(0.01)
    assert await plane.get("tiny") is None, "px=1 at least: never stored without expiry"
    assert _errors(metrics) == 0


async def test_atomic_helpers(plane: RedisBackplane) -> None:
    assert await plane.set_if_absent("lock", b"a", ttl=5) is True
    assert await plane.set_if_absent("lock", b"b", ttl=5) is False
    assert await plane.delete_if_equal("lock", b"b") is False
    assert await plane.get("lock") == b"a"
    assert await plane.delete_if_equal("lock", b"a") is True
    assert await plane.ttl("lock") == 0.0
    await plane.hold("window", 20)
    await plane.hold("window", 5)
    assert 19.0 < (await plane.ttl("window") or 0) <= 20.0, "a shorter window must not win"


async def test_redis_down_means_miss_unknown_and_degraded(
    plane: RedisBackplane, redis_server: RedisServer, clock: FakeClock, metrics: Metrics
) -> None:
    await plane.set("k", b"v", ttl=30)
    redis_server.stop()

    assert await plane.get("k") is None
    assert plane.state == "degraded"
    assert _errors(metrics) == 1
    clock.advance(BREAKER_FIRST_PAUSE + 0.01)
    assert await plane.set_if_absent("lock", b"a", ttl=5) is None
    assert _errors(metrics) == 2
    clock.advance(2 * BREAKER_FIRST_PAUSE + 0.01)
    assert await plane.ttl("window") is None
    assert await plane.get_with_ttl("k") is None


async def test_breaker_skips_calls_during_pause_then_probes_and_recovers(
    plane: RedisBackplane, redis_server: RedisServer, clock: FakeClock, metrics: Metrics
) -> None:
    await plane.set("k", b"v", ttl=30)
    redis_server.stop()
    assert await plane.get("k") is None
    assert _errors(metrics) == 1

    # Within the first pause nothing reaches the network: no new errors, answers are instant.
    started = time.monotonic()
    for _ in range(20):
        assert await plane.get("k") is None
        await plane.set("k", b"x", ttl=30)
    assert time.monotonic() - started < TIMEOUT
    assert _errors(metrics) == 1

    # Past the pause (jittered: at most the nominal one) a probe fails, and the pause doubles.
    clock.advance(BREAKER_FIRST_PAUSE)
    assert await plane.get("k") is None
    assert _errors(metrics) == 2
    clock.advance(BREAKER_FIRST_PAUSE - 0.01)  # the second pause is at least 0.5 s
    assert await plane.get("k") is None
    assert _errors(metrics) == 2

    # Redis comes back (empty, it kept nothing): after the pause the probe succeeds.
    redis_server.start()
    clock.advance(2 * BREAKER_FIRST_PAUSE)
    await plane.set("k", b"back", ttl=30)
    assert plane.state == "ok"
    assert _errors(metrics) == 2
    assert await plane.get("k") == b"back"


async def test_ping_bypasses_the_breaker_and_closes_it(
    plane: RedisBackplane, redis_server: RedisServer
) -> None:
    redis_server.stop()
    assert await plane.ping() is False
    assert plane.state == "degraded"
    redis_server.start()
    assert await plane.ping() is True
    assert plane.state == "ok"


async def test_breaker_pause_is_capped(
    plane: RedisBackplane, redis_server: RedisServer, clock: FakeClock, metrics: Metrics
) -> None:
    redis_server.stop()
    for _ in range(10):
        await plane.get("k")
        clock.advance(100)
    assert _errors(metrics) == 10
    # Capped (jittered down to no less than half): a cap on, a probe goes out again.
    clock.now -= 100
    clock.advance(BREAKER_MAX_PAUSE / 2 - 0.1)
    await plane.get("k")
    assert _errors(metrics) == 10
    clock.advance(BREAKER_MAX_PAUSE / 2 + 0.1)
    await plane.get("k")
    assert _errors(metrics) == 11
    # The cap bounds how long a replica keeps away from a master promoted meanwhile.
    assert BREAKER_MAX_PAUSE <= 2.0


async def test_a_frozen_redis_costs_at_most_the_timeout(
    plane: RedisBackplane, redis_server: RedisServer, metrics: Metrics
) -> None:
    await plane.set("k", b"v", ttl=30)
    redis_server.pause()
    try:
        started = time.monotonic()
        value = await plane.get("k")
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert value is None
    assert elapsed < TIMEOUT + 0.3
    assert plane.state == "degraded"
    assert _errors(metrics) == 1


async def test_only_one_replica_has_the_turn(plane: RedisBackplane) -> None:
    first = Turns(plane, name="test:lock", topic="catalog", ttl=5, owner="replica-a:1")
    second = Turns(plane, name="test:lock", topic="catalog", ttl=5, owner="replica-b:2")
    async with first.turn() as mine:
        assert mine is True
        assert (await plane.get("test:lock") or b"").startswith(b"replica-a:1:")
        async with second.turn() as theirs:
            assert theirs is False
    assert await plane.get("test:lock") is None
    async with second.turn() as theirs:
        assert theirs is True


async def test_an_expired_holder_does_not_release_the_next_holders_turn(
    plane: RedisBackplane,
) -> None:
    slow = Turns(plane, name="test:lock", topic="catalog", ttl=0.2, owner="slow:1")
    async with slow.turn() as mine:
        assert mine is True
        await asyncio.sleep(0.3)  # the lock expires under the slow holder
        await plane.set("test:lock", b"quick:2:again", ttl=5)
    assert await plane.get("test:lock") == b"quick:2:again"


async def test_redis_down_gives_this_process_the_turn(
    plane: RedisBackplane, redis_server: RedisServer
) -> None:
    redis_server.stop()
    started = time.monotonic()
    async with Turns(plane, name="test:lock", topic="catalog", ttl=5, owner="a").turn() as mine:
        assert mine is True
    assert time.monotonic() - started < TIMEOUT + 0.3
    assert plane.state == "degraded"


async def test_an_announcement_wakes_waiters_and_listeners_in_other_processes(
    redis_server: RedisServer,
) -> None:
    publisher, other = _plane(redis_server, Metrics()), _plane(redis_server, Metrics())
    heard: list[str] = []
    other.on("catalog", lambda: heard.append("catalog"))
    await other.start()
    try:
        await eventually(lambda: other.listening)
        assert heard == ["catalog"], "subscribing wakes listeners: they may have missed news"
        heard.clear()
        catalog_waiter = other.waiter("catalog")
        token_waiter = other.waiter("token")
        await publisher.publish("catalog")
        await asyncio.wait_for(catalog_waiter.wait(), timeout=2)
        assert heard == ["catalog"]
        assert not token_waiter.is_set()
        assert other.waiter("catalog") is not catalog_waiter, "a new event for the next round"
    finally:
        await other.close()
        await publisher.close()


async def test_the_listener_resubscribes_after_redis_returns(redis_server: RedisServer) -> None:
    plane = _plane(redis_server, Metrics())
    await plane.start()
    try:
        await eventually(lambda: plane.listening)
        waiter = plane.waiter("catalog")
        redis_server.stop()
        await eventually(lambda: not plane.listening, within=5)
        redis_server.start()
        await eventually(lambda: plane.listening, within=10)
        # Announcements may have been missed while away: every waiter is woken on return.
        assert waiter.is_set()
    finally:
        await plane.close()


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_shared_token_round_trip_and_compare_and_delete(
    kind: str, redis_server: RedisServer
) -> None:
    plane = _plane(redis_server, Metrics()) if kind == "redis" else MemoryBackplane()
    tokens = BackplaneTokens(plane, key="test:token")
    old = SharedToken(SecretStr("old-token"), time.time() + 60, 3600)
    new = SharedToken(SecretStr("new-token"), time.time() + 60, 3600)
    try:
        await tokens.save(old)
        loaded = await tokens.load()
        assert loaded is not None
        assert loaded.value.get_secret_value() == "old-token"
        # Read back from the key's own time to live, not from a stamp another clock wrote.
        assert loaded.expires_at == pytest.approx(old.expires_at, abs=0.5)
        assert loaded.lifetime == 3600
        assert 55.0 < (await plane.ttl("test:token") or 0) <= 60.0, "expires with the token"

        await tokens.save(new)
        await tokens.discard(old)  # a replica still holding the old one must not delete it
        still = await tokens.load()
        assert still is not None
        assert still.value.get_secret_value() == "new-token"
        await tokens.discard(new)
        assert await tokens.load() is None
        await tokens.save(SharedToken(SecretStr("late"), time.time() - 1, 3600))
        assert await tokens.load() is None, "an expired token is not stored"
    finally:
        await plane.close()


@pytest.mark.parametrize("scheme", ["redis", "unix"])
async def test_password_protected_redis_over_tcp_and_unix_socket(scheme: str) -> None:
    socket_path = f"{tempfile.mkdtemp(prefix='proxy-test-sock-')}/redis.sock"
    server = RedisServer("--requirepass", "s3cret-pw", "--unixsocket", socket_path)
    server.start()
    try:
        url = (
            f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
            if scheme == "redis"
            else f"unix://:s3cret-pw@{socket_path}?db=0"
        )
        settings = make_settings("http://127.0.0.1:9", redis_url=url, redis_timeout=TIMEOUT)
        plane = connect(settings, channel=CHANNEL, metrics=Metrics())
        try:
            await plane.set("k", b"v", ttl=10)
            assert await plane.get("k") == b"v"
            assert plane.state == "ok"
        finally:
            await plane.close()
    finally:
        server.cleanup()
        shutil.rmtree(Path(socket_path).parent, ignore_errors=True)
