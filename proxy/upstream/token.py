"""The one OAuth token the deployment uses for the 1NCE API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog
from pydantic import SecretStr

from proxy.observability.metrics import Metrics
from proxy.upstream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamUnavailable,
    status_outcome,
)

logger = structlog.get_logger(__name__)

# After bad credentials, callers fail fast for this long instead of asking 1NCE again.
CREDENTIAL_FAILURE_BACKOFF = 30.0
# A replica waiting for another's token re-checks the shared store at least this often.
WAIT_SLICE = 0.25


@dataclass(frozen=True, slots=True)
class SharedToken:
    """A token as replicas share it: its value and when it expires (wall-clock seconds)."""

    value: SecretStr
    expires_at: float


class SharedTokens(Protocol):
    """Where replicas keep the deployment's one token, and how they take turns renewing it."""

    async def load(self) -> SharedToken | None:
        """Return the stored token, if any."""
        ...

    async def save(self, token: SharedToken) -> None:
        """Store ``token`` until it expires and tell the other replicas."""
        ...

    async def discard(self, token: SharedToken) -> None:
        """Delete the stored token, but only if it is still ``token``."""
        ...

    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Enter to learn whether this replica may fetch a token now."""
        ...

    def waiter(self) -> asyncio.Event:
        """Return the event set when another replica stores a token."""
        ...


@dataclass(frozen=True, slots=True)
class _Held:
    token: SharedToken
    refresh_at: float  # monotonic


class TokenProvider:
    """Hands out a valid bearer token, fetching a new one only when needed.

    Concurrent callers share one fetch; a token is reused until ``margin`` seconds before it
    expires (never for more than half its life); after the upstream refuses the credentials,
    callers fail fast for a while. With ``shared`` tokens, replicas use one token: it is read
    from the shared store, and renewed by one replica at a time.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        margin: float,
        shared: SharedTokens | None = None,
        max_wait: float = 10.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Prepare a provider; no request is made until a token is needed."""
        self._session = session
        self._token_url = token_url
        credentials = f"{client_id}:{client_secret.get_secret_value()}".encode()
        self._authorization = SecretStr(f"Basic {base64.b64encode(credentials).decode()}")
        self._margin = margin
        self._shared = shared
        self._max_wait = max_wait
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._wall_clock = wall_clock
        self._held: _Held | None = None
        self._lock = asyncio.Lock()
        self._failure: UpstreamAuthError | None = None
        self._failure_until = 0.0
        self.refreshes = 0

    @property
    def state(self) -> str:
        """``valid``, ``none`` or ``failing``, for readiness reports."""
        if self._failure is not None and self._clock() < self._failure_until:
            return "failing"
        return "valid" if self._usable() is not None else "none"

    async def get(self) -> SecretStr:
        """Return a token that is valid now, fetching one if needed."""
        token = self._usable()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have got one already.
            token = self._usable()
            if token is not None:
                return token
            self._raise_recent_failure()
            held = await self._obtain()
            self._held = held
            return held.token.value

    async def invalidate(self, failed: SecretStr) -> None:
        """Forget the token, here and in the shared store, but only if it is the one refused."""
        held = self._held
        if held is None or held.token.value.get_secret_value() != failed.get_secret_value():
            return
        self._held = None
        if self._shared is not None:
            await self._shared.discard(held.token)

    def _usable(self) -> SecretStr | None:
        held = self._held
        if held is not None and self._clock() < held.refresh_at:
            return held.token.value
        return None

    def _raise_recent_failure(self) -> None:
        if self._failure is not None and self._clock() < self._failure_until:
            raise self._failure

    def _hold(self, token: SharedToken) -> _Held | None:
        """Plan when to renew ``token``; None when it is already due."""
        left = token.expires_at - self._wall_clock()
        lifetime = left - min(self._margin, left / 2)
        return _Held(token, self._clock() + lifetime) if lifetime > 0 else None

    async def _obtain(self) -> _Held:
        shared = self._shared
        if shared is None:
            return await self._fetch()
        give_up_at = self._clock() + self._max_wait
        while True:
            announced = shared.waiter()
            stored = await shared.load()
            if stored is not None and (held := self._hold(stored)) is not None:
                return held
            async with shared.turn() as mine:
                if mine:
                    stored = await shared.load()
                    if stored is not None and (held := self._hold(stored)) is not None:
                        return held
                    held = await self._fetch()
                    await shared.save(held.token)
                    return held
            if self._clock() >= give_up_at:
                return await self._fetch()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WAIT_SLICE):
                    await announced.wait()

    async def _fetch(self) -> _Held:
        self.refreshes += 1
        started = time.perf_counter()
        try:
            held = await self._request()
        except BaseException:
            self._metrics.token_refresh(ok=False)
            raise
        self._metrics.token_refresh(ok=True)
        logger.info("token_refreshed", seconds=round(time.perf_counter() - started, 3))
        return held

    async def _request(self) -> _Held:
        started = time.perf_counter()

        def count(outcome: str) -> None:
            self._metrics.upstream("token", outcome, time.perf_counter() - started)

        try:
            async with self._session.post(
                self._token_url,
                json={"grant_type": "client_credentials"},
                headers={
                    "Accept": "application/json",
                    "Authorization": self._authorization.get_secret_value(),
                },
            ) as response:
                status = response.status
                body = await response.read()
        except aiohttp.ClientConnectionError as exc:
            count("connection_error")
            raise UpstreamUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
        except asyncio.CancelledError:
            count("timeout")
            raise
        payload = _json_or_none(body)
        count(
            status_outcome(status) if status != 200 or isinstance(payload, dict) else "invalid_body"
        )
        if status >= 500:
            raise UpstreamBadResponse(f"token endpoint answered {status}", retryable=True)
        if status != 200:
            self._fail_fast(status, payload)
        return self._parse(payload)

    def _fail_fast(self, status: int, payload: object) -> None:
        code = payload.get("errorCode") if isinstance(payload, dict) else None
        failure = UpstreamAuthError(f"token endpoint refused the credentials ({status} {code})")
        self._failure = failure
        self._failure_until = self._clock() + CREDENTIAL_FAILURE_BACKOFF
        logger.error("token_refused", status=status, error_code=code)
        raise failure

    def _parse(self, payload: object) -> _Held:
        if not isinstance(payload, dict):
            raise UpstreamBadResponse("token endpoint sent an unexpected body")
        value = payload.get("access_token")
        expires_in = payload.get("expires_in")
        if not isinstance(value, str) or not value:
            raise UpstreamBadResponse("token endpoint sent no access_token")
        if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
            expires_in = 3600
        self._failure = None
        token = SharedToken(SecretStr(value), self._wall_clock() + float(expires_in))
        held = self._hold(token)
        # A token that is due at once (expires_in of 0) is still good for the call at hand.
        return held if held is not None else _Held(token, self._clock())


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None
