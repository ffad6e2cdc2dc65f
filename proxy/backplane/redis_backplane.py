"""The Redis backplane: every call bounded, failures turned into misses behind one breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog
from redis.asyncio.client import PubSub
from redis.exceptions import RedisClusterException, RedisError

from proxy.backoff import Backoff
from proxy.backplane.interface import Appended, LogAppend, LogKeys, LogState
from proxy.backplane.pubsub import Subscriber
from proxy.backplane.topics import Topics
from proxy.cancellation import cancel_and_wait
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, SpanHandle, Tracing

logger = structlog.get_logger(__name__)

T = TypeVar("T")

# After a failure Redis is left alone for a pause, 0.5 s doubling to 2 s, then probed. The cap
# bounds how long a replica keeps away from a master promoted meanwhile (a Sentinel or Cluster
# failover): at most one pause and one call. A probe is one call per pause per replica.
BREAKER_FIRST_PAUSE = 0.5
BREAKER_MAX_PAUSE = 2.0

# Value and remaining life in one round trip (the token: no replica trusts another's clock).
_GET_WITH_TTL = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"
# Deletes the key only while it holds the caller's value (a lock's token, a refused token).
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
# A numbered log: KEYS are its head hash, its items list and its snapshots hash (one slot).
# ARGV: how many items. Returns {} when the log is empty, else {epoch, last, {item...}}.
_LOG_READ = """
local head = redis.call('HMGET', KEYS[1], 'epoch', 'last')
if not head[1] then return {} end
return {head[1], head[2] or '0', redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)}
"""
# ARGV: epoch read ('' for none), last number read, a new epoch, the item, its snapshot, max
# items, max bytes. Compare-and-append: an appender that read an older log loses and changes
# nothing. Items are numbered without gaps, so the oldest kept is last - LLEN + 1. Returns
# {1 recorded | 0 conflict, epoch}.
_LOG_APPEND = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
    if ARGV[1] ~= '' then return {0, ''} end
    epoch = ARGV[3]
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'last', 0, 'bytes', 0)
elseif epoch ~= ARGV[1] then
    return {0, epoch}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
if last ~= tonumber(ARGV[2]) then return {0, epoch} end
last = last + 1
redis.call('HSET', KEYS[1], 'last', last)
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], last, ARGV[5])
local kept = redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[5]))
local max_items, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
while redis.call('LLEN', KEYS[2]) > 1
    and (redis.call('LLEN', KEYS[2]) > max_items or kept > max_bytes) do
    local gone = last - redis.call('LLEN', KEYS[2]) + 1
    redis.call('RPOP', KEYS[2])
    local size = redis.call('HSTRLEN', KEYS[3], gone)
    redis.call('HDEL', KEYS[3], gone)
    kept = redis.call('HINCRBY', KEYS[1], 'bytes', -size)
end
return {1, epoch}
"""
# Lengthens a key's life, never shortens it (two 429s, two Retry-Afters).
_HOLD = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


class RedisBackplane:
    """:class:`~proxy.backplane.interface.Backplane` on one Redis, Sentinel, or a Cluster.

    ``client`` is a ``redis.asyncio`` client (``Redis`` or ``RedisCluster``); scripts touch
    one key each, so they run on a cluster too. Every call runs under ``timeout``; a failed
    or slow call returns the caller's fallback instead of raising, and opens a breaker: calls
    are skipped for a pause that doubles with each further failure, then one goes through as
    a probe, and the first success closes the breaker. Announcements go out with PUBLISH on
    ``channel`` and come back through one :class:`Subscriber`. With ``tracing``, each command
    sent for traced work is a client span.
    """

    def __init__(
        self,
        client: Any,  # noqa: ANN401 - redis-py's Redis and RedisCluster share no typed base
        *,
        channel: str,
        open_pubsub: Callable[[], PubSub],
        timeout: float,
        metrics: Metrics,
        close_extra: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Share state through ``client``; ``close_extra`` closes what else was opened."""
        self._client = client
        self._channel = channel
        self._timeout = timeout
        self._metrics = metrics
        self._close_extra = close_extra
        self._clock = clock
        self._tracing = tracing
        self._breaker = Backoff(first=BREAKER_FIRST_PAUSE, cap=BREAKER_MAX_PAUSE, clock=clock)
        self._topics = Topics()
        self._subscriber = Subscriber(
            open_pubsub, channel, self._topics, timeout=timeout, metrics=metrics
        )
        self._listener: asyncio.Task[None] | None = None
        metrics.watch_redis(lambda: self.state == "ok")

    @property
    def state(self) -> str:
        """``ok`` while Redis answers, ``degraded`` after a failure until a call succeeds."""
        return "degraded" if self._breaker.failing else "ok"

    @property
    def listening(self) -> bool:
        """Whether the announcement subscription is up."""
        return self._subscriber.listening

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``; None also when Redis fails."""
        value = await self._call("get", "GET", lambda: self._client.get(key), None)
        return value if isinstance(value, bytes) else None

    async def get_with_ttl(self, key: str) -> tuple[bytes, float] | None:
        """Return the value and its seconds left, read atomically."""
        found = await self._call(
            "get", "EVAL", lambda: self._client.eval(_GET_WITH_TTL, 1, key), None
        )
        if not isinstance(found, list) or len(found) != 2:
            return None
        value, millis = found
        if not isinstance(value, bytes) or not isinstance(millis, int) or millis <= 0:
            return None
        return value, millis / 1000

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` with a millisecond expiry; dropped when Redis fails."""
        await self._call("set", "SET", lambda: self._client.set(key, value, px=_millis(ttl)), None)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool | None:
        """SET NX PX: True if stored, False if the key exists, None if Redis failed."""

        async def attempt() -> bool:
            # SET NX answers None when the key exists: only an exception means "unknown".
            return bool(await self._client.set(key, value, nx=True, px=_millis(ttl)))

        return await self._call("set_nx", "SET", attempt, None)

    async def delete_if_equal(self, key: str, value: bytes) -> bool | None:
        """Compare-and-delete in one script."""
        deleted = await self._call(
            "delete_if_equal",
            "EVAL",
            lambda: self._client.eval(_DELETE_IF_EQUAL, 1, key, value),
            None,
        )
        return None if deleted is None else bool(deleted)

    async def ttl(self, key: str) -> float | None:
        """Seconds left (PTTL), 0 when absent; None when Redis failed."""
        millis = await self._call("ttl", "PTTL", lambda: self._client.pttl(key), None)
        if millis is None:
            return None
        return millis / 1000 if isinstance(millis, int) and millis > 0 else 0.0

    async def hold(self, key: str, ttl: float) -> None:
        """Make ``key`` live at least ``ttl`` more seconds."""
        await self._call(
            "hold", "EVAL", lambda: self._client.eval(_HOLD, 1, key, _millis(ttl)), None
        )

    async def log_read(self, log: LogKeys, count: int) -> LogState | None:
        """Return the log's epoch, last number and newest items, read in one script."""
        found = await self._script(f"{log.name}_read", _LOG_READ, log, [count])
        if found is None:
            return None
        if not isinstance(found, list) or not found:
            return LogState(epoch=None, last=0, items=())
        epoch, last, items = found
        kept = tuple(item for item in items if isinstance(item, bytes))
        return LogState(epoch=_text(epoch), last=int(last), items=kept)

    async def log_snapshot(self, log: LogKeys, number: int) -> bytes | None:
        """Return the snapshot of item ``number``."""
        found = await self._script(
            f"{log.name}_snapshot", "return redis.call('HGET', KEYS[3], ARGV[1])", log, [number]
        )
        return found if isinstance(found, bytes) else None

    async def log_append(self, log: LogKeys, append: LogAppend) -> tuple[Appended, str] | None:
        """Compare-and-append in one script, trimming past the limits."""
        args: list[bytes | str | int] = [
            append.epoch or "",
            append.last,
            append.new_epoch,
            append.item,
            append.snapshot,
            append.max_items,
            append.max_bytes,
        ]
        found = await self._script(f"{log.name}_append", _LOG_APPEND, log, args)
        if not isinstance(found, list) or len(found) != 2:
            return None
        outcome = Appended.RECORDED if found[0] == 1 else Appended.CONFLICT
        return outcome, _text(found[1])

    async def _script(
        self, operation: str, source: str, log: LogKeys, args: list[bytes | str | int]
    ) -> object | None:
        """Run a Lua script over a log's keys and return its answer; None when Redis failed.

        The keys share one slot (one deployment's hash tag) so a Cluster runs it too. Logs are
        background work (the change feed): a failure is counted but does not open the
        breaker, so a slow answer while the event loop is busy with a burst of callers cannot
        turn their fills into one fetch per replica.
        """
        keys = (log.head, log.items, log.snapshots)
        return await self._call(
            operation,
            "EVAL",
            lambda: self._client.eval(source, len(keys), *keys, *args),
            None,
            trips=False,
        )

    async def publish(self, topic: str) -> None:
        """PUBLISH ``topic`` on the deployment's channel (a cluster broadcasts it)."""
        await self._call(
            "publish", "PUBLISH", lambda: self._client.publish(self._channel, topic), None
        )

    def waiter(self, topic: str) -> asyncio.Event:
        """Return the event the next announcement of ``topic`` sets."""
        return self._topics.waiter(topic)

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement of ``topic``."""
        self._topics.on(topic, listener)

    async def ping(self) -> bool:
        """Ask Redis directly, past the breaker, and update the state from the answer."""
        return bool(await self._call("ping", "PING", self._client.ping, fallback=False, probe=True))

    async def start(self) -> None:
        """Start the announcement listener."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._subscriber.run())

    async def close(self) -> None:
        """Stop listening and close every connection."""
        listener, self._listener = self._listener, None
        await cancel_and_wait(listener)
        await self._client.aclose()
        if self._close_extra is not None:
            await self._close_extra()

    async def _call(
        self,
        operation: str,
        command: str,
        call: Callable[[], Awaitable[T]],
        fallback: T,
        *,
        probe: bool = False,
        trips: bool = True,
    ) -> T:
        """Run ``call`` within the timeout; on failure or while paused return ``fallback``.

        ``operation`` labels metrics and logs, ``command`` (the Redis command sent) the span.
        A failure opens the breaker unless ``trips`` is false.
        """
        if not probe and self._breaker.delay() > 0:
            return fallback
        if not self._tracing.enabled:
            # No context manager per Redis call while nothing is traced.
            return await self._attempt(operation, call, fallback, None, trips=trips)
        with self._tracing.store_span(command, operation) as span:
            return await self._attempt(operation, call, fallback, span, trips=trips)

    async def _attempt(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        fallback: T,
        span: SpanHandle | None,
        *,
        trips: bool = True,
    ) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        # A cluster client raises RedisClusterException, no RedisError, when no seed node can
        # be used (all down, a wrong password) or a slot has no master (SlotNotCoveredError).
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            if span is not None:
                span.failed(type(exc).__qualname__)
            if trips:
                self._failed(operation, exc)
            else:
                self._metrics.redis_error(operation)
                logger.debug("redis_failed", operation=operation, error=type(exc).__name__)
            return fallback
        if self._breaker.failing:
            logger.info("redis_recovered", operation=operation)
            self._breaker.succeeded()
        return result

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._metrics.redis_error(operation)
        first = not self._breaker.failing
        pause = self._breaker.failed()
        log = logger.warning if first else logger.debug
        log("redis_failed", operation=operation, error=type(exc).__name__, pause=round(pause, 3))


def _millis(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
