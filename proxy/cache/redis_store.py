"""The Redis backend of :class:`~proxy.cache.store.Store`, safe against a slow or dead Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

logger = structlog.get_logger(__name__)

T = TypeVar("T")

# After a failure, Redis is left alone for a while; the pause doubles up to the cap.
BREAKER_FIRST_PAUSE = 0.5
BREAKER_MAX_PAUSE = 15.0


def connect(url: str, *, timeout: float) -> Redis:
    """Build a client from a ``redis://``, ``rediss://`` or ``unix://`` URL.

    redis-py's own retries are off: every call is bounded by ``timeout`` and a failing Redis
    is handled by :class:`RedisStore`'s breaker, so a retry would only stretch the wait.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


class RedisStore:
    """A Redis-backed store where every call is bounded and failures become misses.

    After an error or timeout the store stops calling Redis for a pause that doubles with each
    further failure (a breaker), then lets one call through as a probe; the first success
    closes the breaker, so the service returns to Redis by itself.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap a client; ``timeout`` bounds each call, connection included."""
        self._client = client
        self._timeout = timeout
        self._clock = clock
        self._pause = 0.0
        self._closed_until = 0.0
        self.errors = 0

    @property
    def client(self) -> Redis:
        """The underlying client, for coordination primitives (locks, pub/sub)."""
        return self._client

    @property
    def state(self) -> str:
        """``ok`` while Redis answers, ``degraded`` after a failure until a call succeeds."""
        return "degraded" if self._pause else "ok"

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``; ``None`` also when Redis fails."""
        value = await self._call("get", lambda: self._client.get(key), None)
        # The client is built without decode_responses, so a str would be a bug upstream of us.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` with a millisecond expiry; dropped when Redis fails."""
        await self._call(
            "set", lambda: self._client.set(key, value, px=max(int(ttl * 1000), 1)), None
        )

    async def ping(self) -> bool:
        """Ask Redis directly, bypassing the breaker, and update the state from the answer."""
        return bool(await self._call("ping", self._client.ping, fallback=False, probe=True))

    async def close(self) -> None:
        """Close the client and its pool."""
        await self._client.aclose()

    async def _call(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        fallback: T,
        *,
        probe: bool = False,
    ) -> T:
        if not probe and self._clock() < self._closed_until:
            return fallback
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._record_failure(operation, exc)
            return fallback
        if self._pause:
            logger.info("redis_recovered", operation=operation)
            self._pause = 0.0
            self._closed_until = 0.0
        return result

    def _record_failure(self, operation: str, exc: BaseException) -> None:
        self.errors += 1
        first = not self._pause
        self._pause = (
            min(self._pause * 2, BREAKER_MAX_PAUSE) if self._pause else BREAKER_FIRST_PAUSE
        )
        self._closed_until = self._clock() + self._pause
        log = logger.warning if first else logger.debug
        log("redis_failed", operation=operation, error=type(exc).__name__, pause=self._pause)
