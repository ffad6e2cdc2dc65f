"""Fetches read-only resources of the 1NCE API, each declared as an :class:`Endpoint`."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import aiohttp
import structlog
from pydantic import SecretStr

from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.upstream import token
from proxy.upstream.errors import (
    RateWindowOpen,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    status_outcome,
)
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.token import TokenProvider
from proxy.upstream.transport import Outgoing, Reply, exchange
from proxy.upstream.windows import RateWindows, parse_retry_after

logger = structlog.get_logger(__name__)

BACKOFF_BASE = 0.2
BACKOFF_CAP = 2.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[T]):
    """A read-only upstream resource: ``GET {base}{path}`` with a bearer token.

    ``name`` labels its metrics and names its ``Retry-After`` window, so it must be unique.
    ``parse`` turns a 200 body into the value callers use and raises ``ValueError`` for a
    body that is unusable; such a body is refused like a bad status, never handed on.
    """

    name: str
    path: str
    parse: Callable[[bytes], T]


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A validated answer: the exact bytes and content type, and what ``parse`` made of them."""

    body: bytes
    content_type: str
    value: T


class UpstreamClient:
    """Fetches declared endpoints of the 1NCE API for the rest of the service.

    One call of :meth:`fetch` takes at most ``timeout`` seconds in all: token, retries with
    jittered backoff on connection errors and 5xx, and a single token refresh on 401. After
    a 429 no request to that endpoint leaves the deployment before its ``Retry-After``
    (capped) has passed. Redirects are never followed and answers are bounded in size.

    The client remembers, per endpoint, the outcome of the last fetch and the last answer
    it returned (:meth:`latest`), so a consumer handed those bytes back, by a cache, can
    reuse the parsed value instead of parsing them again.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        tokens: TokenProvider,
        options: UpstreamOptions,
        *,
        windows: RateWindows,
        metrics: Metrics,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Prepare a client over the app's shared session; ``tracing``: a span per request."""
        self._session = session
        self._tokens = tokens
        self._base_url = options.base_url
        self._timeout = options.timeout
        self._retries = options.retries
        self._windows = windows
        self._metrics = metrics
        self._max_bytes = options.max_bytes
        self._retry_after_max = options.retry_after_max
        self._tracing = tracing
        self._outcomes: dict[str, str] = {}
        self._latest: dict[str, Fetched[Any]] = {}

    def last_outcome(self, endpoint: Endpoint[Any]) -> str:
        """Say how the last fetch of ``endpoint`` ended: ``ok``, an error's name or ``unknown``."""
        return self._outcomes.get(endpoint.name, "unknown")

    def latest(self, endpoint: Endpoint[T]) -> Fetched[T] | None:
        """Return the answer the last successful fetch of ``endpoint`` returned, if any."""
        return cast("Fetched[T] | None", self._latest.get(endpoint.name))

    def blocked_for(self, endpoint: Endpoint[Any]) -> float:
        """Return the seconds left of the ``Retry-After`` windows of ``endpoint`` and the token."""
        return max(self._windows.left(endpoint.name), self._windows.left(token.ENDPOINT))

    async def fetch(self, endpoint: Endpoint[T]) -> Fetched[T]:
        """Fetch and validate ``endpoint``, or raise an :class:`UpstreamError` subclass."""
        try:
            await self._windows.check(endpoint.name)
            async with asyncio.timeout(self._timeout) as budget:
                fetched = await self._with_retries(endpoint, budget)
        except TimeoutError:
            self._outcomes[endpoint.name] = "timeout"
            logger.warning("upstream_timeout", endpoint=endpoint.name, timeout=self._timeout)
            raise UpstreamTimeout(f"upstream did not answer within {self._timeout:g}s") from None
        except UpstreamError as exc:
            self._outcomes[endpoint.name] = type(exc).__name__
            # Refusals inside a known window are not news: the 429 itself was logged.
            log = logger.debug if isinstance(exc, RateWindowOpen) else logger.warning
            log("upstream_failed", endpoint=endpoint.name, error=str(exc), kind=type(exc).__name__)
            raise
        self._outcomes[endpoint.name] = "ok"
        self._latest[endpoint.name] = fetched
        return fetched

    async def _with_retries(self, endpoint: Endpoint[T], budget: asyncio.Timeout) -> Fetched[T]:
        attempt = 0
        while True:
            try:
                return await self._attempt(endpoint)
            except UpstreamError as exc:
                if not exc.retryable or attempt >= self._retries:
                    raise
                delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))  # noqa: S311 - jitter, not a secret
                deadline = budget.when()
                if deadline is not None and asyncio.get_running_loop().time() + delay >= deadline:
                    # The retry could not finish in time; the real cause beats a timeout.
                    raise
                logger.info(
                    "upstream_retry",
                    endpoint=endpoint.name,
                    attempt=attempt + 1,
                    delay=round(delay, 3),
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def _attempt(self, endpoint: Endpoint[T]) -> Fetched[T]:
        bearer = await self._tokens.get()
        answer = await self._get(endpoint, bearer)
        if answer.status == 401:
            # Tokens can be revoked before they expire: refresh once, then retry once.
            await self._tokens.invalidate(bearer)
            bearer = await self._tokens.get()
            answer = await self._get(endpoint, bearer)
            if answer.status == 401:
                raise UpstreamAuthError("upstream refused a freshly issued token")
        status = answer.status
        if status == 429:
            retry_after = parse_retry_after(
                answer.headers.get("Retry-After"), cap=self._retry_after_max
            )
            await self._windows.open(endpoint.name, retry_after)
            raise UpstreamRateLimited("upstream rate limited us", retry_after=max(retry_after, 1.0))
        if status >= 500:
            raise UpstreamBadResponse(f"upstream answered {status}", retryable=True)
        if status != 200:
            raise UpstreamBadResponse(f"upstream answered {status}")
        try:
            value = endpoint.parse(answer.body)
        except ValueError as exc:
            self._metrics.upstream(endpoint.name, "invalid_body", answer.seconds)
            raise UpstreamBadResponse(
                f"upstream sent an unusable {endpoint.name} body: {exc}"
            ) from None
        self._metrics.upstream(endpoint.name, "ok", answer.seconds)
        content_type = answer.headers.get("Content-Type", "application/json")
        return Fetched(body=answer.body, content_type=content_type, value=value)

    async def _get(self, endpoint: Endpoint[Any], bearer: SecretStr) -> Reply:
        """GET ``endpoint``; every outcome but a 200 is counted here, a 200 once parsed."""
        request = Outgoing(
            "GET",
            f"{self._base_url}{endpoint.path}",
            endpoint=endpoint.name,
            headers={
                "Authorization": f"Bearer {bearer.get_secret_value()}",
                "Accept": "application/json",
            },
            route=endpoint.path,
        )
        answer = await exchange(
            self._session,
            request,
            max_bytes=self._max_bytes,
            metrics=self._metrics,
            tracing=self._tracing,
        )
        if answer.status != 200:
            self._metrics.upstream(endpoint.name, status_outcome(answer.status), answer.seconds)
        return answer
