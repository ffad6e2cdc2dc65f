"""How the service reaches the 1NCE API, as whom, and within what bounds."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from proxy.settings import Settings


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """The settings the token provider and the upstream client are built from."""

    base_url: str
    """The API's base URL (``.../management-api``); endpoints and the token URL hang off it."""
    client_id: str
    client_secret: SecretStr
    timeout: float = 10.0
    """The whole time budget of one fetch (token, retries and all)."""
    retries: int = 2
    max_bytes: int = 8 << 20
    """The largest answer read, once decoded."""
    retry_after_max: float = 300.0
    """The longest ``Retry-After`` honoured."""
    token_margin: float = 300.0
    """How long before its expiry a token is renewed (at most half its lifetime)."""
    lock_timeout: float = 10.0
    """How long a replica may hold the deployment's turn to fetch a token."""

    @property
    def token_url(self) -> str:
        """Where tokens are asked for."""
        return f"{self.base_url}/oauth/token"

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamOptions:
        """Take the options from ``settings``; ``ValueError`` without the client credentials."""
        if settings.client_id is None or settings.client_secret is None:
            raise ValueError("the 1NCE client id and secret are required")
        return cls(
            base_url=settings.upstream_url,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            timeout=settings.upstream_timeout,
            retries=settings.upstream_retries,
            max_bytes=settings.upstream_max_bytes,
            retry_after_max=settings.retry_after_max,
            token_margin=settings.token_refresh_margin,
            lock_timeout=settings.lock_timeout,
        )
