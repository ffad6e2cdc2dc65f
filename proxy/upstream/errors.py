"""What can go wrong talking to the 1NCE API, sorted by what a caller should be told."""

from __future__ import annotations


def status_outcome(status: int) -> str:
    """Name the metrics outcome of an HTTP status from the upstream."""
    if status == 200:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else "client_error"


class UpstreamError(Exception):
    """The upstream could not deliver a catalog.

    ``retryable`` tells the client's retry loop whether another attempt may help.
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        """Describe the failure; ``retryable`` overrides the class default."""
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class UpstreamBadResponse(UpstreamError):
    """The upstream answered, but not with a usable catalog (5xx, 4xx, bad body)."""


class UpstreamAuthError(UpstreamBadResponse):
    """The upstream refused our credentials or a freshly issued token."""


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached (refused, reset, DNS)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        """Describe the failure and how long callers should wait before trying again."""
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamRateLimited(UpstreamUnavailable):
    """The upstream said 429; no request may go out before ``retry_after`` seconds pass."""

    retryable = False


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the configured timeout."""
