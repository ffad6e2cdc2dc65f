"""The one OAuth token the deployment uses for the 1NCE API."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog
from pydantic import SecretStr

from proxy.upstream.errors import UpstreamAuthError, UpstreamBadResponse, UpstreamUnavailable

logger = structlog.get_logger(__name__)

# After bad credentials, callers fail fast for this long instead of asking 1NCE again.
CREDENTIAL_FAILURE_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and the monotonic time after which it must not be used."""

    value: SecretStr
    refresh_at: float


class TokenProvider:
    """Hands out a valid bearer token, fetching a new one only when needed.

    Concurrent callers share one fetch; a token is reused until ``margin`` seconds before it
    expires; after the upstream refuses the credentials, callers fail fast for a while.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        margin: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare a provider; no request is made until a token is needed."""
        self._session = session
        self._token_url = token_url
        credentials = f"{client_id}:{client_secret.get_secret_value()}".encode()
        self._authorization = SecretStr(f"Basic {base64.b64encode(credentials).decode()}")
        self._margin = margin
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        self._failure: UpstreamAuthError | None = None
        self._failure_until = 0.0
        self.refreshes = 0

    @property
    def state(self) -> str:
        """``valid``, ``none`` or ``failing``, for readiness reports."""
        if self._failure is not None and self._clock() < self._failure_until:
            return "failing"
        token = self._token
        return "valid" if token is not None and self._clock() < token.refresh_at else "none"

    async def get(self) -> SecretStr:
        """Return a token that is valid now, fetching one if needed."""
        token = self._usable()
        if token is not None:
            return token
        async with self._lock:
            # Whoever held the lock before us may have fetched one already.
            token = self._usable()
            if token is not None:
                return token
            self._raise_recent_failure()
            fresh = await self._fetch()
            self._token = fresh
            return fresh.value

    def invalidate(self, failed: SecretStr) -> None:
        """Forget the current token, but only if it is the one that was refused."""
        token = self._token
        if token is not None and token.value.get_secret_value() == failed.get_secret_value():
            self._token = None

    def _usable(self) -> SecretStr | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    def _raise_recent_failure(self) -> None:
        if self._failure is not None and self._clock() < self._failure_until:
            raise self._failure

    async def _fetch(self) -> AccessToken:
        self.refreshes += 1
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
            raise UpstreamUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from None
        payload = _json_or_none(body)
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

    def _parse(self, payload: object) -> AccessToken:
        if not isinstance(payload, dict):
            raise UpstreamBadResponse("token endpoint sent an unexpected body")
        value = payload.get("access_token")
        expires_in = payload.get("expires_in")
        if not isinstance(value, str) or not value:
            raise UpstreamBadResponse("token endpoint sent no access_token")
        if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool):
            expires_in = 3600
        # Never plan to use a token for less than half its life, whatever the margin says.
        lifetime = max(float(expires_in) - min(self._margin, expires_in / 2), 0.0)
        self._failure = None
        logger.info("token_refreshed", expires_in=expires_in)
        return AccessToken(SecretStr(value), self._clock() + lifetime)


def _json_or_none(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return None
