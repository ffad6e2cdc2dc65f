"""What the catalog's operations raise, for the handlers that turn failures into answers.

The upstream's failures, as its client names them, are the catalog's: a handler catches them
from here, never from the upstream package (the layers stay one way).
"""

from __future__ import annotations

from proxy.upstream.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = [
    "RefreshTooSoonError",
    "UpstreamAuthError",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class RefreshTooSoonError(Exception):
    """An admin refresh came within the minimum interval of the previous one."""

    def __init__(self, retry_after: float) -> None:
        """Say how long until a refresh is allowed again."""
        super().__init__(
            f"a refresh ran less than the minimum interval ago; retry in {retry_after:.1f}s"
        )
        self.retry_after = retry_after
