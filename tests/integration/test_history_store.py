"""The version store on every backplane: memory, a real redis-server, the minimal third one."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.backplane.interface import Appended
from proxy.backplane.keys import KeySpace
from proxy.backplane.memory import MemoryBackplane
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.catalog.diff import Summary
from proxy.history.records import VersionRecord
from proxy.history.store import EMPTY, Versions, compress, decompress
from proxy.observability.metrics import Metrics
from tests.support.minimal_backplane import MinimalBackplane
from tests.support.redis import RedisServer

KEYS = KeySpace("test", "acct")
NO_CHANGE = Summary(0, 0, 0)


def _record(version: int, etag: str = "", stored_at: float = 0.0) -> VersionRecord:
    return VersionRecord(
        version=version,
        etag=etag or f'"e{version}"',
        stored_at=stored_at or 1000.0 + version,
        products=30,
        summary=NO_CHANGE,
    )


@contextlib.asynccontextmanager
async def _redis_store(server: RedisServer, bound: float = 1.0) -> AsyncIterator[Versions]:
    client = Redis.from_url(
        server.url,
        socket_timeout=bound,
        socket_connect_timeout=bound,
        retry=Retry(NoBackoff(), 0),
    )
    plane = RedisBackplane(
        client, channel="c", open_pubsub=client.pubsub, timeout=bound, metrics=Metrics()
    )
    try:
        yield Versions(plane, KEYS.history_log, max_versions=3, max_bytes=1000)
    finally:
        await plane.close()


@pytest.fixture(params=["memory", "redis", "minimal"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[Versions]:
    if request.param != "redis":
        plane = MemoryBackplane() if request.param == "memory" else MinimalBackplane()
        yield Versions(plane, KEYS.history_log, max_versions=3, max_bytes=1000)
        return
    async with _redis_store(redis_server) as redis_store:
        yield redis_store


async def _append(store: Versions, record: VersionRecord, snapshot: bytes = b"s") -> str:
    history = await store.read(10)
    assert history is not None
    appended = await store.append(history, record, snapshot)
    assert appended is not None
    outcome, epoch = appended
    assert outcome is Appended.RECORDED
    return epoch


async def test_an_empty_store_has_no_epoch_and_the_first_append_starts_one(
    store: Versions,
) -> None:
    assert await store.read(10) == EMPTY

    epoch = await _append(store, _record(1))

    history = await store.read(10)
    assert history is not None
    assert history.epoch == epoch
    assert len(epoch) == 12
    assert history.last == 1
    assert history.versions == (_record(1),)
    assert await store.snapshot(1) == b"s"


async def test_versions_are_listed_newest_first_and_read_by_count(store: Versions) -> None:
    for version in (1, 2, 3):
        await _append(store, _record(version), b"snapshot-%d" % version)

    history = await store.read(10)
    head = await store.read(1)

    assert history is not None
    assert [record.version for record in history.versions] == [3, 2, 1]
    assert [record.version for record in history.after(1)] == [2, 3]
    assert history.oldest == _record(1)
    assert head is not None
    assert head.versions == (_record(3),)
    assert head.last == 3
    assert await store.snapshot(2) == b"snapshot-2"


async def test_an_append_from_an_outdated_read_is_a_conflict_and_changes_nothing(
    store: Versions,
) -> None:
    epoch = await _append(store, _record(1))
    stale = await store.read(10)
    assert stale is not None
    await _append(store, _record(2))

    appended = await store.append(stale, _record(2, etag='"other"'), b"x")

    assert appended == (Appended.CONFLICT, epoch)
    history = await store.read(10)
    assert history is not None
    assert [record.etag for record in history.versions] == ['"e2"', '"e1"']


async def test_the_oldest_go_past_the_count_limit(store: Versions) -> None:
    for version in range(1, 6):
        await _append(store, _record(version), b"v%d" % version)

    history = await store.read(10)

    assert history is not None
    assert [record.version for record in history.versions] == [5, 4, 3]
    assert history.last == 5
    assert await store.snapshot(2) is None
    assert await store.snapshot(3) == b"v3"


async def test_the_oldest_go_past_the_byte_limit_but_the_newest_stays(
    store: Versions,
) -> None:
    await _append(store, _record(1), b"a" * 400)
    await _append(store, _record(2), b"b" * 400)
    await _append(store, _record(3), b"c" * 400)
    await _append(store, _record(4), b"d" * 5000)

    history = await store.read(10)

    assert history is not None
    # 1200 bytes > 1000: version 1 went when 3 came; the 5000-byte newest stays alone.
    assert [record.version for record in history.versions] == [4]
    assert await store.snapshot(3) is None
    assert await store.snapshot(4) == b"d" * 5000


async def test_a_flushed_redis_starts_a_new_epoch_numbered_from_one(
    redis_server: RedisServer,
) -> None:
    async with _redis_store(redis_server) as store:
        first = await _append(store, _record(1))
        await _append(store, _record(2))
        before_flush = await store.read(10)
        assert before_flush is not None
        redis_server.command("FLUSHALL")

        lost = await store.append(before_flush, _record(3), b"x")
        second = await _append(store, _record(1))
        history = await store.read(10)

    assert lost == (Appended.CONFLICT, "")
    assert second != first
    assert history is not None
    assert (history.epoch, history.last) == (second, 1)
    assert sorted(redis_server.key_names()) == sorted(
        [KEYS.history, KEYS.history_versions, KEYS.history_snapshots]
    )


async def test_a_stopped_redis_answers_unknown_not_an_error(redis_server: RedisServer) -> None:
    async with _redis_store(redis_server, bound=0.3) as store:
        redis_server.stop()

        assert await store.read(10) is None
        assert await store.append(EMPTY, _record(1), b"x") is None
        assert await store.snapshot(1) is None


async def test_snapshots_round_trip_and_a_bomb_or_junk_is_refused() -> None:
    body = b'[{"id": 1}]' * 1000

    packed = await compress(body)

    assert len(packed) < len(body) / 10
    assert await decompress(packed, len(body)) == body
    assert await decompress(packed, len(body) - 1) is None
    assert await decompress(b"not zlib", 1000) is None
    assert await decompress(zlib.compress(body)[:-5], len(body)) is None


async def test_a_slow_history_call_is_counted_but_leaves_the_breaker_closed(
    redis_server: RedisServer,
) -> None:
    client = Redis.from_url(redis_server.url, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    metrics = Metrics()
    plane = RedisBackplane(
        client, channel="c", open_pubsub=client.pubsub, timeout=0.2, metrics=metrics
    )
    store = Versions(plane, KEYS.history_log, max_versions=3, max_bytes=1000)
    try:
        assert await store.read(1) == EMPTY
        redis_server.pause()
        try:
            # A busy event loop looks the same from here: the answer comes too late.
            assert await store.read(1) is None
            assert plane.state == "ok"
            assert (
                metrics.registry.get_sample_value(
                    "product_proxy_redis_errors_total", {"operation": "history_read"}
                )
                == 1
            )
            # The calls callers wait on do open it.
            assert await plane.get("k") is None
            assert plane.state == "degraded"
        finally:
            redis_server.resume()
    finally:
        await plane.close()
