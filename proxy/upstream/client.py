"""Fetches the product catalog from the 1NCE API within a time budget."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp
import structlog
from pydantic import SecretStr

from proxy.observability.metrics import Metrics
from proxy.upstream.errors import (
    RateWindowOpen,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    status_outcome,
)
from proxy.upstream.models import InvalidCatalogError, Product, parse_catalog
from proxy.upstream.token import TokenProvider
from proxy.upstream.transport import Answer, exchange
from proxy.upstream.windows import RateWindows, parse_retry_after

logger = structlog.get_logger(__name__)

ENDPOINT = "products"
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
    on 401. After a 429 no request leaves the deployment before its ``Retry-After`` (capped)
    has passed. Redirects are never followed and answers are bounded in size.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        *,
        base_url: str,
        timeout: float,
        retries: int,
        windows: RateWindows,
        metrics: Metrics,
        max_bytes: int,
        retry_after_max: float,
    ) -> None:
        """Prepare a client over the app's shared session."""
        self._session = session
        self._tokens = tokens
        self._products_url = f"{base_url}/v1/products"
        self._timeout = timeout
        self._retries = retries
        self._windows = windows
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._retry_after_max = retry_after_max
        self.last_outcome = "unknown"

    @property
    def blocked_for(self) -> float:
        """Seconds until the last known ``Retry-After`` window of either endpoint ends."""
        return max(self._windows.left(ENDPOINT), self._windows.left("token"))

    async def fetch_products(self) -> UpstreamCatalog:
        """Fetch and validate the catalog, or raise an :class:`UpstreamError` subclass."""
        try:
            await self._windows.check(ENDPOINT)
            async with asyncio.timeout(self._timeout) as budget:
                catalog = await self._with_retries(budget)
        except TimeoutError:
            self.last_outcome = "timeout"
            logger.warning("upstream_timeout", timeout=self._timeout)
            raise UpstreamTimeout(f"upstream did not answer within {self._timeout:g}s") from None
        except UpstreamError as exc:
            self.last_outcome = type(exc).__name__
            # Refusals inside a known window are not news: the 429 itself was logged.
            log = logger.debug if isinstance(exc, RateWindowOpen) else logger.warning
            log("upstream_failed", error=str(exc), kind=type(exc).__name__)
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
        answer = await self._get_products(token)
        if answer.status == 401:
            # Tokens can be revoked before they expire: refresh once, then retry once.
            await self._tokens.invalidate(token)
            token = await self._tokens.get()
            answer = await self._get_products(token)
            if answer.status == 401:
                raise UpstreamAuthError("upstream refused a freshly issued token")
        status = answer.status
        if status == 429:
            retry_after = parse_retry_after(
                answer.headers.get("Retry-After"), cap=self._retry_after_max
            )
            await self._windows.open(ENDPOINT, retry_after)
            raise UpstreamRateLimited("upstream rate limited us", retry_after=max(retry_after, 1.0))
        if status >= 500:
            raise UpstreamBadResponse(f"upstream answered {status}", retryable=True)
        if status != 200:
            raise UpstreamBadResponse(f"upstream answered {status}")
        try:
            products = parse_catalog(answer.body)
        except InvalidCatalogError as exc:
            self._metrics.upstream(ENDPOINT, "invalid_body", answer.seconds)
            raise UpstreamBadResponse(f"upstream sent an unusable catalog: {exc}") from None
        self._metrics.upstream(ENDPOINT, "ok", answer.seconds)
        content_type = answer.headers.get("Content-Type", "application/json")
        return UpstreamCatalog(body=answer.body, content_type=content_type, products=products)

    async def _get_products(self, token: SecretStr) -> Answer:
        """GET the products; every outcome but a 200 is counted here, a 200 after validation."""
        answer = await exchange(
            self._session,
            "GET",
            self._products_url,
            endpoint=ENDPOINT,
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept": "application/json",
            },
            max_bytes=self._max_bytes,
            metrics=self._metrics,
        )
        if answer.status != 200:
            self._metrics.upstream(ENDPOINT, status_outcome(answer.status), answer.seconds)
        return answer
