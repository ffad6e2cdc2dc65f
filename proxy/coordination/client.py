"""Connecting to Redis (URL or Sentinel) and guarding every call with a timeout and a breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.observability.metrics import Metrics
from proxy.settings import Settings

logger = structlog.get_logger(__name__)

T = TypeVar("T")

# After a failure, Redis is left alone for a while; the pause doubles up to the cap.
BREAKER_FIRST_PAUSE = 0.5
BREAKER_MAX_PAUSE = 15.0
HEALTH_CHECK_INTERVAL = 30
# Connections one process keeps to Redis: reads are coalesced, so few are ever busy.
MAX_CONNECTIONS = 32


@dataclass
class RedisConnection:
    """A client for the data node, plus the Sentinel clients that find it (if any)."""

    client: Redis
    sentinels: list[Redis] = field(default_factory=list)

    async def close(self) -> None:
        """Close every pool."""
        await self.client.aclose()
        for sentinel in self.sentinels:
            await sentinel.aclose()


def connect(settings: Settings) -> RedisConnection | None:
    """Build the client the settings ask for: none, a URL, or a Sentinel-managed master.

    redis-py's own retries are off: every call is bounded by ``redis_timeout`` and a failing
    Redis is handled by :class:`RedisGuard`'s breaker, so a retry would only stretch the wait.
    """
    timeout = settings.redis_timeout
    if settings.redis_sentinels:
        sentinel_password = settings.redis_sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [_host_port(address) for address in settings.redis_sentinels],
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "retry": Retry(NoBackoff(), 0),
                "password": sentinel_password.get_secret_value() if sentinel_password else None,
            },
        )
        password = settings.redis_password
        client = sentinel.master_for(
            settings.redis_sentinel_master,
            db=settings.redis_db,
            password=password.get_secret_value() if password else None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=HEALTH_CHECK_INTERVAL,
            max_connections=MAX_CONNECTIONS,
        )
        return RedisConnection(client, list(sentinel.sentinels))
    if settings.redis_url is None:
        return None
    # A burst waits (up to the call timeout) for a pooled connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )
    return RedisConnection(Redis.from_pool(pool))


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class RedisGuard:
    """Runs Redis calls under a timeout and a breaker shared by everything using one client.

    A failed or slow call returns the caller's fallback instead of raising. After a failure,
    calls are skipped for a pause that doubles with each further failure; then one call goes
    through as a probe, and the first success closes the breaker again.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Guard ``client``; ``timeout`` bounds each call, connecting included."""
        self._client = client
        self._metrics = metrics or Metrics()
        self._timeout = timeout
        self._clock = clock
        self._pause = 0.0
        self._closed_until = 0.0
        self.errors = 0

    @property
    def client(self) -> Redis:
        """The guarded client."""
        return self._client

    @property
    def timeout(self) -> float:
        """Seconds one call may take."""
        return self._timeout

    @property
    def state(self) -> str:
        """``ok`` while Redis answers, ``degraded`` after a failure until a call succeeds."""
        return "degraded" if self._pause else "ok"

    @property
    def available(self) -> bool:
        """Whether a call would be attempted now (the breaker is not pausing Redis)."""
        return self._clock() >= self._closed_until

    async def call(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        fallback: T,
        *,
        probe: bool = False,
    ) -> T:
        """Run ``call`` within the timeout; on failure or while paused return ``fallback``.

        ``probe`` bypasses the pause (readiness checks ask Redis directly).
        """
        if not probe and not self.available:
            return fallback
        try:
            async with asyncio.timeout(self._timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self.record_failure(operation, exc)
            return fallback
        self.record_success(operation)
        return result

    def record_success(self, operation: str) -> None:
        """Close the breaker after a call that worked."""
        if self._pause:
            logger.info("redis_recovered", operation=operation)
            self._pause = 0.0
            self._closed_until = 0.0

    def record_failure(self, operation: str, exc: BaseException) -> None:
        """Open the breaker, or lengthen its pause, after a failed call."""
        self.errors += 1
        self._metrics.redis_error(operation)
        first = not self._pause
        self._pause = (
            min(self._pause * 2, BREAKER_MAX_PAUSE) if self._pause else BREAKER_FIRST_PAUSE
        )
        self._closed_until = self._clock() + self._pause
        log = logger.warning if first else logger.debug
        log("redis_failed", operation=operation, error=type(exc).__name__, pause=self._pause)
