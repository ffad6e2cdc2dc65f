"""The pub/sub listener survives junk messages, frozen or restarted Redis and its own bugs."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from proxy.backplane.pubsub import ListenerTiming, Subscriber
from proxy.backplane.topics import Topics
from proxy.observability.metrics import Metrics
from tests.support.redis import RedisServer, node_client
from tests.support.waiting import eventually

CHANNEL = "test:account:events"
TIMEOUT = 0.2
# Short enough that a test sees several pings, and a lost connection within about a second.
PING_INTERVAL = 0.25
MISSED_PINGS = 4
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.4


class Notifier:
    """A subscriber with its topics, as the Redis backplane wires them."""

    def __init__(self, client: Redis, metrics: Metrics, **options: Any) -> None:
        self.topics = Topics()
        self.subscriber = Subscriber(
            lambda: client.pubsub(ignore_subscribe_messages=True),
            CHANNEL,
            self.topics,
            timeout=TIMEOUT,
            metrics=metrics,
            timing=ListenerTiming(**options),
        )
        self.waiter = self.topics.waiter
        self.on = self.topics.on
        self.run = self.subscriber.run

    @property
    def listening(self) -> bool:
        return self.subscriber.listening


Start = Callable[..., Awaitable[Notifier]]


def _publish(server: RedisServer, *payloads: bytes) -> list[int]:
    """PUBLISH each payload (in one pipeline); return how many subscribers each reached."""
    with node_client(server.port) as client, client.pipeline(transaction=False) as pipeline:
        for payload in payloads:
            pipeline.publish(CHANNEL, payload)
        reached: list[int] = pipeline.execute()
    return reached


def _restarts(metrics: Metrics) -> dict[str, float]:
    """The pub/sub restart counter by reason, read from the rendered exposition."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "product_proxy_pubsub_restarts_total":
                counts[sample.labels["reason"]] = sample.value
    return counts


@pytest.fixture
async def connection(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(
        redis_server.url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    yield client
    await client.aclose()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def start(connection: Redis, metrics: Metrics) -> AsyncIterator[Start]:
    """Start notifiers listening (short pings and pauses); check at the end none stopped."""
    tasks: list[asyncio.Task[None]] = []

    async def make(**options: Any) -> Notifier:
        options = {
            "ping_interval": PING_INTERVAL,
            "missed_pings": MISSED_PINGS,
            "first_pause": FIRST_PAUSE,
            "max_pause": MAX_PAUSE,
            **options,
        }
        notifier = Notifier(connection, metrics, **options)
        tasks.append(asyncio.get_running_loop().create_task(notifier.run()))
        await eventually(lambda: notifier.listening)
        return notifier

    yield make
    ended = [task for task in tasks if task.done()]
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=5)
    assert not pending, "cancelling ends the listener"
    assert not ended, "a listener ended on its own"
    assert all(task.cancelled() for task in tasks)


async def test_junk_messages_are_ignored_and_the_next_announcement_still_wakes(
    start: Start, redis_server: RedisServer, metrics: Metrics
) -> None:
    notifier = await start()
    heard: list[str] = []
    notifier.on("catalog", lambda: heard.append("catalog"))
    waiter = notifier.waiter("catalog")
    junk = [b"\xff\xfe junk", b"catalog\xff", b"x" * 1_000_000, "é".encode() * 40]
    assert _publish(redis_server, *junk) == [1] * len(junk)
    await eventually(lambda: notifier.subscriber._ignored == len(junk))
    assert notifier.listening
    assert not waiter.is_set()
    assert heard == []

    assert _publish(redis_server, b"catalog") == [1]
    await asyncio.wait_for(waiter.wait(), timeout=2)
    assert heard == ["catalog"]
    assert _restarts(metrics) == {}, "junk is ignored, not a reason to reconnect"


async def test_messages_of_odd_shapes_are_ignored(start: Start) -> None:
    notifier = await start()
    waiter = notifier.waiter("catalog")
    odd: list[object] = [
        [b"message", CHANNEL.encode(), b"catalog"],
        None,
        {"type": "message", "data": 7},
        {"type": "message"},
        {"type": "pmessage", "data": b"catalog"},
        {"type": "message", "data": "t" * 65},
    ]
    for message in odd:
        notifier.subscriber._handle(message)
    assert notifier.subscriber._ignored == 5, "a pmessage is not ours, but is not junk either"
    assert not waiter.is_set()
    notifier.subscriber._handle({"type": "message", "data": "catalog"})
    assert waiter.is_set()


async def test_many_unknown_topics_do_not_grow_the_notifier(
    start: Start, redis_server: RedisServer
) -> None:
    notifier = await start()
    notifier.on("catalog", lambda: None)
    waiter = notifier.waiter("catalog")
    notifier.waiter("token")
    topics = [f"junk-{index}".encode() for index in range(2000)]
    topics += [b"\x80junk-%d" % index for index in range(500)]
    assert set(_publish(redis_server, *topics)) == {1}
    # Messages arrive in order: once this wakes, every junk topic before it was handled.
    assert _publish(redis_server, b"catalog") == [1]
    await asyncio.wait_for(waiter.wait(), timeout=5)
    assert notifier.subscriber._ignored == 500
    assert set(notifier.topics._events) == {"token"}
    assert set(notifier.topics._listeners) == {"catalog"}


async def test_a_frozen_redis_is_noticed_and_the_listener_comes_back(
    start: Start, redis_server: RedisServer, metrics: Metrics
) -> None:
    notifier = await start()
    waiter = notifier.waiter("catalog")
    redis_server.pause()
    try:
        frozen_at = time.monotonic()
        # The socket stays open and silent: only the missing pongs can tell.
        await eventually(lambda: not notifier.listening, within=5)
        noticed_after = time.monotonic() - frozen_at
        assert PING_INTERVAL < noticed_after < PING_INTERVAL * MISSED_PINGS + 1.0
        # Counted once the frozen connection is closed, which may take a call timeout.
        await eventually(lambda: _restarts(metrics).get("silent") == 1, within=2)
        assert not waiter.is_set()
    finally:
        redis_server.resume()
    await eventually(lambda: notifier.listening, within=10)
    assert waiter.is_set(), "announcements may have been missed: waiters are woken on return"
    waiter = notifier.waiter("catalog")
    assert _publish(redis_server, b"catalog") == [1]
    await asyncio.wait_for(waiter.wait(), timeout=2)
    assert _restarts(metrics)["silent"] == 1


async def test_a_quiet_but_healthy_connection_is_kept(
    start: Start, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = 0
    original = PubSub.ping

    def counting_ping(self: PubSub, message: Any = None) -> Awaitable[bool]:
        nonlocal pings
        pings += 1
        return original(self, message)

    monkeypatch.setattr(PubSub, "ping", counting_ping)
    notifier = await start()
    await asyncio.sleep(PING_INTERVAL * MISSED_PINGS * 2)
    assert notifier.listening
    assert pings >= 6, "the pongs are what keeps a quiet connection"
    assert _restarts(metrics) == {}


async def test_a_restarted_redis_is_resubscribed(
    start: Start, redis_server: RedisServer, metrics: Metrics
) -> None:
    notifier = await start()
    waiter = notifier.waiter("catalog")
    redis_server.stop()
    stopped_at = time.monotonic()
    await eventually(lambda: not notifier.listening, within=5)
    assert time.monotonic() - stopped_at < 0.5, "a closed connection is seen at once"
    # Each failed attempt while it is down is a restart too.
    await eventually(lambda: _restarts(metrics).get("error", 0) >= 3)
    assert "silent" not in _restarts(metrics)
    redis_server.start()
    await eventually(lambda: notifier.listening, within=5)
    assert waiter.is_set()
    waiter = notifier.waiter("catalog")
    assert _publish(redis_server, b"catalog") == [1]
    await asyncio.wait_for(waiter.wait(), timeout=2)


async def test_a_failing_listener_does_not_stop_the_others_or_the_listening(
    start: Start, redis_server: RedisServer, metrics: Metrics
) -> None:
    notifier = await start()
    heard: list[str] = []

    def broken() -> None:
        raise KeyError("bug in a listener")

    notifier.on("catalog", broken)
    notifier.on("catalog", lambda: heard.append("catalog"))
    for _ in range(2):
        waiter = notifier.waiter("catalog")
        assert _publish(redis_server, b"catalog") == [1]
        await asyncio.wait_for(waiter.wait(), timeout=2)
    assert heard == ["catalog", "catalog"]
    assert notifier.listening
    assert _restarts(metrics) == {}


async def test_an_unexpected_exception_in_the_loop_reconnects(
    start: Start,
    redis_server: RedisServer,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = [ZeroDivisionError, AttributeError, LookupError]
    original = PubSub.get_message

    async def failing_get_message(self: PubSub, *args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return await original(self, *args, **kwargs)

    notifier = await start()
    waiter = notifier.waiter("catalog")
    monkeypatch.setattr(PubSub, "get_message", failing_get_message)
    await eventually(lambda: _restarts(metrics).get("error") == 3)
    await eventually(lambda: notifier.listening)
    assert waiter.is_set()
    waiter = notifier.waiter("catalog")
    assert _publish(redis_server, b"catalog") == [1]
    await asyncio.wait_for(waiter.wait(), timeout=2)
    assert _restarts(metrics) == {"error": 3}


async def test_pauses_between_attempts_grow_to_the_cap_and_are_jittered(
    start: Start, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[float] = []
    original = PubSub.subscribe

    async def recording_subscribe(self: PubSub, *args: Any, **kwargs: Any) -> None:
        attempts.append(time.monotonic())
        await original(self, *args, **kwargs)

    monkeypatch.setattr(PubSub, "subscribe", recording_subscribe)
    notifier = await start()
    redis_server.stop()
    await eventually(lambda: len(attempts) >= 9, within=5)
    # attempts[0] subscribed; after the loss, the pauses double from the first (0.05 before
    # attempts[1]) to the cap, each drawn from the upper half of its nominal value.
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts[1:9])]
    nominal = [min(FIRST_PAUSE * 2**step, MAX_PAUSE) for step in range(1, len(gaps) + 1)]
    assert nominal[-1] == MAX_PAUSE
    for gap, pause in zip(gaps, nominal, strict=True):
        assert pause / 2 <= gap < pause + 0.1, (gaps, nominal)
    assert len({round(gap, 3) for gap in gaps[3:]}) > 1, "pauses are jittered"
    assert not notifier.listening


async def test_cancelling_always_stops_the_listener(connection: Redis, metrics: Metrics) -> None:
    # redis-py's sends can swallow a cancellation on Python 3.11 (asyncio.wait_for): with a
    # ping every few milliseconds, some of these cancels land on one.
    async def cancelled_after(delay: float) -> asyncio.Task[None]:
        notifier = Notifier(connection, metrics, ping_interval=0.002, missed_pings=500)
        task = asyncio.get_running_loop().create_task(notifier.run())
        await eventually(lambda: notifier.listening)
        await asyncio.sleep(delay)
        task.cancel()
        await asyncio.wait([task], timeout=1)
        return task

    rng = random.Random(7)
    for _ in range(60):
        task = await cancelled_after(rng.random() * 0.02)
        if not task.done():
            task.cancel()  # a second request, so that a failing test still ends
            await asyncio.wait([task], timeout=1)
            pytest.fail("the listener went on after being cancelled")
        assert task.cancelled()
    assert _restarts(metrics) == {}
