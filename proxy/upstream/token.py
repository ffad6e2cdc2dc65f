"""The one OAuth token the deployment uses for the 1NCE API."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

import aiohttp
import structlog
from pydantic import SecretStr

from proxy.backoff import Backoff
from proxy.coordination.fill import CoordinatedFill
from proxy.coordination.singleflight import SingleFlight
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.upstream.errors import (
    RateWindowOpen,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    back_off,
    status_outcome,
)
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.transport import Outgoing, exchange
from proxy.upstream.windows import RateWindows, parse_retry_after

logger = structlog.get_logger(__name__)

ENDPOINT = "token"
ROUTE = "/oauth/token"
"""The token endpoint's path below the API's base URL (it names the client span)."""
# Failed token fetches are retried no sooner than this, doubling up to the cap; while the
# credentials are refused, callers fail fast for that long instead of asking 1NCE again.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# A token is never used this close to its expiry: a request must reach 1NCE before it ends.
EXPIRY_SAFETY = 5.0
DEFAULT_LIFETIME = 3600.0


@dataclass(frozen=True, slots=True)
class SharedToken:
    """A token, when it expires on this replica's wall clock, and the lifetime it was issued with.

    Whoever reads a shared token computes ``expires_at`` from the store's remaining time to
    live, never from another replica's clock.
    """

    value: SecretStr
    expires_at: float
    lifetime: float

    def left(self, now: float) -> float:
        """Seconds of validity left at wall time ``now``."""
        return self.expires_at - now


class SharedTokens(Protocol):
    """Where replicas keep the deployment's one token."""

    async def load(self) -> SharedToken | None:
        """Return the stored token, if any."""
        ...

    async def save(self, token: SharedToken) -> None:
        """Store ``token`` until it expires."""
        ...

    async def discard(self, token: SharedToken) -> None:
        """Delete the stored token, but only if it is still ``token``."""
        ...


@dataclass(frozen=True, slots=True)
class _Held:
    token: SharedToken
    renew_at: float  # monotonic
    dead_at: float  # monotonic: not to be used from then on


@dataclass(frozen=True, slots=True)
class TokenSharing:
    """What the replicas share about tokens: the windows, the stored token, the turn to fetch."""

    windows: RateWindows
    store: SharedTokens
    turns: Turns


class TokenProvider:
    """Hands out a valid bearer token, fetching a new one only when needed.

    A token is used until ``margin`` seconds before it expires (never past half its life);
    inside the margin, one renewal runs in the background while callers keep using it.
    Replicas use one token, kept in ``shared``, through a :class:`CoordinatedFill`: a token
    inside its margin is replaced by one replica in its turn while the others keep using it
    until the new one is stored. Failed fetches back off; while the credentials are
    refused (400/401), callers fail fast; a 429 opens the token endpoint's window.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        options: UpstreamOptions,
        *,
        sharing: TokenSharing,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Prepare a provider; no request is made until a token is needed.

        With ``tracing``, renewals and token requests make spans.
        """
        self._session = session
        self._token_url = options.token_url
        credentials = f"{options.client_id}:{options.client_secret.get_secret_value()}".encode()
        self._authorization = SecretStr(f"Basic {base64.b64encode(credentials).decode()}")
        self._margin = options.token_margin
        self._windows = sharing.windows
        self._metrics = metrics
        self._timeout = options.timeout
        self._max_bytes = options.max_bytes
        self._retry_after_max = options.retry_after_max
        self._shared = sharing.store
        self._clock = clock
        self._wall_clock = wall_clock
        self._tracing = tracing
        self._held: _Held | None = None
        self._flight: SingleFlight[_Held] = SingleFlight(tracing=tracing)
        self._backoff = Backoff(first=RETRY_FIRST, cap=RETRY_MAX, clock=clock)
        self._refused: UpstreamAuthError | None = None
        self._fill = CoordinatedFill(
            name="token",
            read=sharing.store.load,
            load=self._fetch,
            store=sharing.store.save,
            coordinator=sharing.turns,
            metrics=metrics,
            clock=clock,
            tracing=tracing,
        )

    @property
    def state(self) -> str:
        """``valid``, ``none``, ``failing`` (credentials refused) or ``rate_limited``."""
        if self._refused is not None and self._backoff.delay() > 0:
            return "failing"
        if self._windows.left(ENDPOINT) > 0:
            return "rate_limited"
        held = self._held
        return "valid" if held is not None and self._clock() < held.dead_at else "none"

    async def get(self) -> SecretStr:
        """Return a token that is valid now, fetching one if needed."""
        held = self._held
        if held is not None:
            now = self._clock()
            if now < held.renew_at:
                return held.token.value
            if now < held.dead_at:
                self._renew_in_background()
                return held.token.value
        if self._refused is not None and self._backoff.delay() > 0:
            raise self._refused
        held, _ = await self._flight.run(self._renew)
        return held.token.value

    async def invalidate(self, failed: SecretStr) -> None:
        """Forget the token, here and in the shared store, but only if it is the one refused."""
        held = self._held
        if held is None or held.token.value.get_secret_value() != failed.get_secret_value():
            return
        self._held = None
        await self._shared.discard(held.token)

    async def close(self) -> None:
        """Stop a renewal in flight."""
        await self._flight.close()

    def _renew_in_background(self) -> None:
        if not self._flight.running and self._backoff.delay() <= 0:
            self._flight.start(self._renew)

    async def _renew(self) -> _Held:
        token = await self._fill.run(self._good, meanwhile=self._alive)
        held = self._hold(token)
        self._held = held
        return held

    def _renew_margin(self, token: SharedToken) -> float:
        return min(self._margin, token.lifetime / 2)

    def _good(self, token: SharedToken) -> bool:
        """Whether ``token`` is outside its renewal margin."""
        return token.left(self._wall_clock()) > max(self._renew_margin(token), EXPIRY_SAFETY)

    def _alive(self, token: SharedToken) -> bool:
        """Whether ``token`` may still be used while another replica renews it."""
        return token.left(self._wall_clock()) > EXPIRY_SAFETY

    def _hold(self, token: SharedToken) -> _Held:
        left = token.left(self._wall_clock())
        now = self._clock()
        return _Held(
            token,
            renew_at=now + left - self._renew_margin(token),
            dead_at=now + max(left - EXPIRY_SAFETY, 0.0),
        )

    async def _fetch(self) -> SharedToken:
        started = time.perf_counter()
        try:
            await self._windows.check(ENDPOINT)
            try:
                async with asyncio.timeout(self._timeout):
                    token = await self._request()
            except TimeoutError:
                self._metrics.upstream(ENDPOINT, "timeout", time.perf_counter() - started)
                raise UpstreamTimeout(
                    f"token endpoint did not answer within {self._timeout:g}s"
                ) from None
        except UpstreamError as exc:
            back_off(self._backoff, exc, self._clock())
            self._metrics.token_refresh(ok=False)
            if not isinstance(exc, (UpstreamAuthError, RateWindowOpen)):
                logger.warning("token_fetch_failed", error=str(exc), kind=type(exc).__name__)
            raise
        self._backoff.succeeded()
        self._refused = None
        self._metrics.token_refresh(ok=True)
        logger.info("token_refreshed", seconds=round(time.perf_counter() - started, 3))
        return token

    async def _request(self) -> SharedToken:
        request = Outgoing(
            "POST",
            self._token_url,
            endpoint=ENDPOINT,
            headers={
                "Accept": "application/json",
                "Authorization": self._authorization.get_secret_value(),
            },
            json_body={"grant_type": "client_credentials"},
            route=ROUTE,
        )
        answer = await exchange(
            self._session,
            request,
            max_bytes=self._max_bytes,
            metrics=self._metrics,
            tracing=self._tracing,
        )
        status = answer.status
        payload = _json_or_none(answer.body)
        outcome = status_outcome(status)
        if status == 200 and not isinstance(payload, dict):
            outcome = "invalid_body"
        self._metrics.upstream(ENDPOINT, outcome, answer.seconds)
        if status == 429:
            retry_after = parse_retry_after(
                answer.headers.get("Retry-After"), cap=self._retry_after_max
            )
            await self._windows.open(ENDPOINT, retry_after)
            raise UpstreamRateLimited(
                "token endpoint rate limited us", retry_after=max(retry_after, 1.0)
            )
        if status in {400, 401}:
            self._refuse(status, payload)
        if status >= 500:
            raise UpstreamBadResponse(f"token endpoint answered {status}", retryable=True)
        if status != 200:
            raise UpstreamBadResponse(f"token endpoint answered {status}")
        return self._parse(payload)

    def _refuse(self, status: int, payload: object) -> NoReturn:
        code = payload.get("errorCode") if isinstance(payload, dict) else None
        refused = UpstreamAuthError(f"token endpoint refused the credentials ({status} {code})")
        self._refused = refused
        logger.error("token_refused", status=status, error_code=code)
        raise refused

    def _parse(self, payload: object) -> SharedToken:
        if not isinstance(payload, dict):
            raise UpstreamBadResponse("token endpoint sent an unexpected body")
        value = payload.get("access_token")
        expires_in = payload.get("expires_in")
        if not isinstance(value, str) or not value:
            raise UpstreamBadResponse("token endpoint sent no access_token")
        if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
            expires_in = DEFAULT_LIFETIME
        lifetime = min(max(float(expires_in), 0.0), 86400.0 * 365)
        return SharedToken(SecretStr(value), self._wall_clock() + lifetime, lifetime)


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
