"""The Backplane protocol's contract, run on every backend: memory, Redis, and a minimal third.

The third (``tests/support/minimal_backplane.py``) follows docs/architecture.md's "new
backend" recipe and nothing else: what passes here on it is what the service needs. Each case
gets two handles on one backend, as two replicas would have (two Redis clients; one object for
the in-process backends).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.backplane.interface import Appended, Backplane, LogAppend, LogState
from proxy.backplane.keys import KeySpace
from proxy.backplane.memory import MemoryBackplane
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.catalog.diff import Summary
from proxy.history.records import VersionRecord
from proxy.history.store import Versions
from proxy.observability.metrics import Metrics
from tests.support.minimal_backplane import MinimalBackplane
from tests.support.redis import RedisServer
from tests.support.waiting import until

KEYS = KeySpace("contract", "acct")
LOG = KEYS.history_log
BOUND = 1.0


def _redis(server: RedisServer) -> RedisBackplane:
    client = Redis.from_url(
        server.url, socket_timeout=BOUND, socket_connect_timeout=BOUND, retry=Retry(NoBackoff(), 0)
    )
    return RedisBackplane(
        client,
        channel=KEYS.events,
        open_pubsub=lambda: client.pubsub(ignore_subscribe_messages=True),
        timeout=BOUND,
        metrics=Metrics(),
    )


@pytest.fixture(params=["memory", "redis", "minimal"])
async def replicas(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Backplane, Backplane]]:
    first: Backplane
    second: Backplane
    if request.param == "redis":
        first, second = _redis(redis_server), _redis(redis_server)
    else:
        first = second = MemoryBackplane() if request.param == "memory" else MinimalBackplane()
    await first.start()
    await second.start()
    yield first, second
    await first.close()
    await second.close()


async def test_values_expire_and_are_read_with_their_life_left(
    replicas: tuple[Backplane, Backplane],
) -> None:
    one, other = replicas
    await one.set("k", b"v", 30.0)
    assert await other.get("k") == b"v"
    found = await other.get_with_ttl("k")
    assert found is not None
    assert found[0] == b"v"
    assert 25.0 < found[1] <= 30.0
    assert await other.get("absent") is None
    assert await other.get_with_ttl("absent") is None
    await one.set("short", b"v", 0.05)

    async def gone() -> bool:
        return await other.get("short") is None

    await until(gone, within=2.0, what="a 50 ms value expires")


async def test_set_if_absent_and_compare_and_delete(replicas: tuple[Backplane, Backplane]) -> None:
    one, other = replicas
    assert await one.set_if_absent("lock", b"a", 30.0) is True
    assert await other.set_if_absent("lock", b"b", 30.0) is False
    assert await other.delete_if_equal("lock", b"b") is False
    assert await other.get("lock") == b"a"
    assert await other.delete_if_equal("lock", b"a") is True
    assert await one.get("lock") is None
    assert await other.set_if_absent("lock", b"b", 30.0) is True


async def test_ttl_and_hold_never_shorten(replicas: tuple[Backplane, Backplane]) -> None:
    one, other = replicas
    assert await one.ttl("window") == 0.0
    await one.hold("window", 10.0)
    left = await other.ttl("window")
    assert left is not None
    assert 8.0 < left <= 10.0
    await other.hold("window", 1.0)
    assert (await one.ttl("window") or 0.0) > 8.0
    await other.hold("window", 20.0)
    assert (await one.ttl("window") or 0.0) > 18.0


async def test_an_announcement_wakes_waiters_and_listeners(
    replicas: tuple[Backplane, Backplane],
) -> None:
    one, other = replicas
    heard: list[str] = []
    other.on("catalog", lambda: heard.append("catalog"))
    waiter = other.waiter("catalog")

    async def announced() -> bool:
        # Redis delivers through its subscriber: announce until it is subscribed.
        if not waiter.is_set():
            await one.publish("catalog")
        return waiter.is_set()

    await until(announced, within=5.0, what="the announcement reaches the other replica")
    assert heard
    assert set(heard) == {"catalog"}


def _append(state: LogState, item: bytes, *, max_items: int = 3, max_bytes: int = 100) -> LogAppend:
    return LogAppend(
        epoch=state.epoch,
        last=state.last,
        new_epoch="e1",
        item=item,
        snapshot=b"s-" + item,
        max_items=max_items,
        max_bytes=max_bytes,
    )


async def test_a_log_is_numbered_once_for_every_replica(
    replicas: tuple[Backplane, Backplane],
) -> None:
    one, other = replicas
    empty = await one.log_read(LOG, 10)
    assert empty == LogState(epoch=None, last=0, items=())
    assert await one.log_append(LOG, _append(empty, b"1")) == (Appended.RECORDED, "e1")
    # The other replica read the log before that append: it loses and changes nothing.
    assert await other.log_append(LOG, _append(empty, b"x")) == (Appended.CONFLICT, "e1")
    read = await other.log_read(LOG, 10)
    assert read == LogState(epoch="e1", last=1, items=(b"1",))
    assert read is not None
    assert await other.log_append(LOG, _append(read, b"2")) == (Appended.RECORDED, "e1")
    assert await one.log_read(LOG, 1) == LogState(epoch="e1", last=2, items=(b"2",))
    assert await one.log_snapshot(LOG, 1) == b"s-1"
    assert await one.log_snapshot(LOG, 3) is None


async def test_a_log_keeps_the_newest_within_its_limits(
    replicas: tuple[Backplane, Backplane],
) -> None:
    one, _ = replicas
    for item in (b"1", b"2", b"3", b"4"):
        state = await one.log_read(LOG, 10)
        assert state is not None
        assert await one.log_append(LOG, _append(state, item, max_items=3)) is not None
    assert await one.log_read(LOG, 10) == LogState("e1", 4, (b"4", b"3", b"2"))
    assert await one.log_snapshot(LOG, 1) is None
    assert await one.log_snapshot(LOG, 2) == b"s-2"
    # A byte limit below the newest snapshot keeps the newest alone.
    state = await one.log_read(LOG, 10)
    assert state is not None
    assert await one.log_append(LOG, _append(state, b"5", max_bytes=1)) is not None
    assert await one.log_read(LOG, 10) == LogState("e1", 5, (b"5",))
    assert [await one.log_snapshot(LOG, n) for n in range(1, 6)] == [None] * 4 + [b"s-5"]


async def test_the_version_store_shares_one_numbering(
    replicas: tuple[Backplane, Backplane],
) -> None:
    first, second = (Versions(plane, LOG, max_versions=5, max_bytes=10_000) for plane in replicas)
    before = await first.read(10)
    assert before is not None
    record = VersionRecord(
        version=1, etag='"a"', stored_at=1.0, products=1, summary=Summary(1, 0, 0)
    )
    appended = await first.append(before, record, b"snap")
    assert appended is not None
    assert appended[0] is Appended.RECORDED
    # What one replica recorded is the other's history; a stale append loses.
    assert await second.append(before, record, b"snap") == (Appended.CONFLICT, appended[1])
    history = await second.read(10)
    assert history is not None
    assert (history.epoch, history.last, history.versions) == (appended[1], 1, (record,))
    assert await second.snapshot(1) == b"snap"


async def test_every_backend_answers_promptly() -> None:
    # The in-process backends never wait: each call is done in one turn of the loop.
    for plane in (MemoryBackplane(), MinimalBackplane()):
        async with asyncio.timeout(0.5):
            await plane.set("k", b"v", 1.0)
            assert await plane.get("k") == b"v"
            assert await plane.ping() is True
