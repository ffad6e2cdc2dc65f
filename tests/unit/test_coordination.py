"""Deployment locks, pub/sub wake-ups and the shared token store against a real redis-server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from proxy.cache.redis_store import RedisStore
from proxy.coordination.client import RedisConnection, RedisGuard, connect
from proxy.coordination.lock import LocalCoordinator, Notifier, RedisCoordinator
from proxy.observability.metrics import Metrics
from proxy.upstream.token import SharedToken
from proxy.upstream.token_store import RedisTokens
from tests.support import RedisServer, eventually, make_settings

TIMEOUT = 0.2


@pytest.fixture
async def connection(redis_server: RedisServer) -> AsyncIterator[RedisConnection]:
    settings = make_settings(
        "http://127.0.0.1:9", redis_url=redis_server.url, redis_timeout=TIMEOUT
    )
    conn = connect(settings)
    assert conn is not None
    yield conn
    await conn.close()


@pytest.fixture
def guard(connection: RedisConnection) -> RedisGuard:
    return RedisGuard(connection.client, timeout=TIMEOUT)


@pytest.fixture
async def notifier(guard: RedisGuard) -> AsyncIterator[Notifier]:
    notifier = Notifier(guard, "test:events", metrics=Metrics())
    task = asyncio.get_running_loop().create_task(notifier.run())
    await eventually(lambda: notifier.listening)
    yield notifier
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _coordinator(
    guard: RedisGuard, notifier: Notifier, owner: str, ttl: float = 5.0
) -> RedisCoordinator:
    return RedisCoordinator(
        guard, notifier, name="test:lock", topic="catalog", ttl=ttl, owner=owner
    )


async def test_only_one_replica_has_the_turn(
    guard: RedisGuard, notifier: Notifier, redis_server: RedisServer
) -> None:
    first = _coordinator(guard, notifier, "replica-a:1")
    second = _coordinator(guard, notifier, "replica-b:2")
    async with first.turn() as mine:
        assert mine is True
        assert (
            redis_server.command("GET", "test:lock").split(b"\r\n")[1].startswith(b"replica-a:1:")
        )
        async with second.turn() as theirs:
            assert theirs is False
    assert redis_server.command("EXISTS", "test:lock") == b":0\r\n"
    async with second.turn() as theirs:
        assert theirs is True


async def test_an_expired_holder_does_not_release_the_next_holders_lock(
    guard: RedisGuard, notifier: Notifier, redis_server: RedisServer
) -> None:
    slow = _coordinator(guard, notifier, "slow:1", ttl=0.2)
    quick = _coordinator(guard, notifier, "quick:2")
    async with slow.turn() as mine:
        assert mine is True
        await asyncio.sleep(0.3)  # the lock expires under the slow holder
        async with quick.turn() as theirs:
            assert theirs is True
        # Another holder now: slow's release on the way out must leave its lock alone.
        redis_server.command("SET", "test:lock", "quick:2:again", "PX", "5000")
    assert redis_server.command("GET", "test:lock").split(b"\r\n")[1] == b"quick:2:again"


async def test_redis_down_gives_this_process_the_turn(
    guard: RedisGuard, notifier: Notifier, redis_server: RedisServer
) -> None:
    redis_server.stop()
    started = time.monotonic()
    async with _coordinator(guard, notifier, "a:1").turn() as mine:
        assert mine is True
    assert time.monotonic() - started < TIMEOUT + 0.3
    assert guard.state == "degraded"


async def test_local_coordinator_always_gives_the_turn() -> None:
    local = LocalCoordinator()
    async with local.turn() as mine:
        assert mine is True
    waiter = local.waiter()
    await local.announce()
    assert not waiter.is_set()


async def test_an_announcement_wakes_waiters_and_listeners_in_other_processes(
    guard: RedisGuard, connection: RedisConnection
) -> None:
    listener_guard = RedisGuard(connection.client, timeout=TIMEOUT)
    other = Notifier(listener_guard, "test:events", metrics=Metrics())
    heard: list[str] = []
    other.on("catalog", lambda: heard.append("catalog"))
    task = asyncio.get_running_loop().create_task(other.run())
    try:
        await eventually(lambda: other.listening)
        assert heard == ["catalog"], "subscribing wakes listeners: they may have missed news"
        heard.clear()
        catalog_waiter = other.waiter("catalog")
        token_waiter = other.waiter("token")
        await Notifier(guard, "test:events", metrics=Metrics()).publish("catalog")
        await asyncio.wait_for(catalog_waiter.wait(), timeout=2)
        assert heard == ["catalog"]
        assert not token_waiter.is_set()
        assert other.waiter("catalog") is not catalog_waiter, "a new event for the next round"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_listener_resubscribes_after_redis_returns(
    notifier: Notifier, redis_server: RedisServer
) -> None:
    waiter = notifier.waiter("catalog")
    redis_server.stop()
    await eventually(lambda: not notifier.listening, within=5)
    redis_server.start()
    await eventually(lambda: notifier.listening, within=10)
    # Announcements may have been missed while away: every waiter is woken on return.
    assert waiter.is_set()


async def test_shared_token_round_trip_and_compare_and_delete(
    guard: RedisGuard, redis_server: RedisServer
) -> None:
    tokens = RedisTokens(guard, key="test:token")
    old = SharedToken(SecretStr("old-token"), time.time() + 60, 3600)
    new = SharedToken(SecretStr("new-token"), time.time() + 60, 3600)

    await tokens.save(old)
    loaded = await tokens.load()
    assert loaded is not None
    assert loaded.value.get_secret_value() == "old-token"
    # Read back from the key's own time to live, not from a stamp another clock wrote.
    assert loaded.expires_at == pytest.approx(old.expires_at, abs=0.5)
    assert loaded.lifetime == 3600
    ttl = int(redis_server.command("PTTL", "test:token")[1:].split(b"\r\n")[0])
    assert 55_000 < ttl <= 60_000, "the key expires with the token"

    await tokens.save(new)
    await tokens.discard(old)  # a replica still holding the old one must not delete the new
    still = await tokens.load()
    assert still is not None
    assert still.value.get_secret_value() == "new-token"
    await tokens.discard(new)
    assert await tokens.load() is None


async def test_an_expired_token_is_not_stored(guard: RedisGuard) -> None:
    tokens = RedisTokens(guard, key="test:token")
    await tokens.save(SharedToken(SecretStr("late"), time.time() - 1, 3600))
    assert await tokens.load() is None


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
        conn = connect(make_settings("http://127.0.0.1:9", redis_url=url, redis_timeout=TIMEOUT))
        assert conn is not None
        try:
            store = RedisStore(RedisGuard(conn.client, timeout=TIMEOUT))
            await store.set("k", b"v", ttl=10)
            assert await store.get("k") == b"v"
            assert store.state == "ok"
        finally:
            await conn.close()
    finally:
        server.cleanup()
        shutil.rmtree(Path(socket_path).parent, ignore_errors=True)
