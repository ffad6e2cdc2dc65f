"""Fetches the product catalog from the 1NCE API within a time budget."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from proxy.observability.metrics import Metrics
from proxy.upstream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    status_outcome,
)
from proxy.upstream.models import InvalidCatalogError, Product, parse_catalog
from proxy.upstream.token import TokenProvider

logger = structlog.get_logger(__name__)

# When a 429 carries no usable Retry-After, stay away this long.
DEFAULT_RETRY_AFTER = 30.0
BACKOFF_BASE = 0.2
BACKOFF_CAP = 2.0


@dataclass(frozen=True, slots=True)
class UpstreamCatalog:
    """A validated products answer: the exact bytes and content type, plus parsed products."""

    body: bytes
    content_type: str
    products: tuple[Product, ...]


class UpstreamClient:
    """Talks to ``GET {base}/v1/products`` for the rest of the service.

    One call of :meth:`fetch_products` takes at most ``timeout`` seconds in all: token,
    retries with jittered backoff on connection errors and 5xx, and a single token refresh
    on 401. After a 429 no request leaves before its ``Retry-After`` has passed.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        *,
        base_url: str,
        timeout: float,
        retries: int,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare a client over the app's shared session."""
        self._metrics = metrics or Metrics()
        self._last_seconds = 0.0
        self._session = session
        self._tokens = tokens
        self._products_url = f"{base_url}/v1/products"
        self._timeout = timeout
        self._retries = retries
        self._clock = clock
        self._blocked_until = 0.0
        self.last_outcome = "unknown"

    @property
    def blocked_for(self) -> float:
        """Seconds until the upstream's last ``Retry-After`` has passed (0 when not blocked)."""
        return max(self._blocked_until - self._clock(), 0.0)

    async def fetch_products(self) -> UpstreamCatalog:
        """Fetch and validate the catalog, or raise an :class:`UpstreamError` subclass."""
        blocked = self.blocked_for
        if blocked > 0:
            raise UpstreamRateLimited("upstream rate limit in force", retry_after=blocked)
        try:
            async with asyncio.timeout(self._timeout) as budget:
                catalog = await self._with_retries(budget)
        except TimeoutError:
            self.last_outcome = "timeout"
            logger.warning("upstream_timeout", timeout=self._timeout)
            raise UpstreamTimeout(f"upstream did not answer within {self._timeout:g}s") from None
        except UpstreamError as exc:
            self.last_outcome = type(exc).__name__
            logger.warning("upstream_failed", error=str(exc), kind=type(exc).__name__)
            raise
        self.last_outcome = "ok"
        return catalog

    async def _with_retries(self, budget: asyncio.Timeout) -> UpstreamCatalog:
        attempt = 0
        while True:
            try:
                return await self._attempt()
            except UpstreamError as exc:
                if not exc.retryable or attempt >= self._retries:
                    raise
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311 - jitter, not a secret
                deadline = budget.when()
                if deadline is not None and asyncio.get_running_loop().time() + delay >= deadline:
                    # The retry could not finish in time; the real cause beats a timeout.
                    raise
                logger.info("upstream_retry", attempt=attempt + 1, delay=round(delay, 3))
                attempt += 1
                await asyncio.sleep(delay)

    async def _attempt(self) -> UpstreamCatalog:
        token = await self._tokens.get()
        status, headers, body = await self._get_products(token)
        if status == 401:
            # Tokens can be revoked before they expire: refresh once, then retry once.
            await self._tokens.invalidate(token)
            token = await self._tokens.get()
            status, headers, body = await self._get_products(token)
            if status == 401:
                raise UpstreamAuthError("upstream refused a freshly issued token")
        if status == 429:
            retry_after = _retry_after(headers.get("Retry-After"))
            self._blocked_until = self._clock() + retry_after
            raise UpstreamRateLimited("upstream rate limited us", retry_after=retry_after)
        if status >= 500:
            raise UpstreamBadResponse(f"upstream answered {status}", retryable=True)
        if status != 200:
            raise UpstreamBadResponse(f"upstream answered {status}")
        try:
            products = parse_catalog(body)
        except InvalidCatalogError as exc:
            self._metrics.upstream("products", "invalid_body", self._last_seconds)
            raise UpstreamBadResponse(f"upstream sent an unusable catalog: {exc}") from None
        self._metrics.upstream("products", "ok", self._last_seconds)
        content_type = headers.get("Content-Type", "application/json")
        return UpstreamCatalog(body=body, content_type=content_type, products=products)

    async def _get_products(self, token: SecretStr) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """GET the products; every outcome but a 200 is counted here, a 200 after validation."""
        started = time.perf_counter()

        def count(outcome: str) -> None:
            self._metrics.upstream("products", outcome, time.perf_counter() - started)

        try:
            async with self._session.get(
                self._products_url,
                headers={
                    "Authorization": f"Bearer {token.get_secret_value()}",
                    "Accept": "application/json",
                },
            ) as response:
                status, headers, body = response.status, response.headers, await response.read()
        except aiohttp.ClientConnectionError as exc:
            count("connection_error")
            raise UpstreamUnavailable(f"upstream unreachable: {type(exc).__name__}") from None
        except aiohttp.ClientPayloadError:
            count("invalid_body")
            raise UpstreamBadResponse("upstream sent a broken body", retryable=True) from None
        except asyncio.CancelledError:
            # The fetch's time budget ran out (or the service is shutting down).
            count("timeout")
            raise
        self._last_seconds = time.perf_counter() - started
        if status != 200:
            count(status_outcome(status))
        return status, headers, body


def _retry_after(value: str | None) -> float:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP-date)."""
    if value is None:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    return max(when.timestamp() - time.time(), 0.0)
