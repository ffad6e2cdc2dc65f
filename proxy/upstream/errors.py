"""What can go wrong talking to the 1NCE API, sorted by what a caller should be told."""

from __future__ import annotations

from proxy.backoff import Backoff


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


class RateWindowOpen(UpstreamRateLimited):
    """Refused before sending: a ``Retry-After`` window (ours or another replica's) is in force.

    Nothing reached the upstream, so this says nothing new about it: retry pauses do not grow.
    """


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the configured timeout."""


def back_off(backoff: Backoff, exc: BaseException, now: float) -> None:
    """Schedule the next attempt after ``exc``; ``now`` is on the backoff's clock.

    A 429 sets the earliest time; a request refused locally inside a window only waits for
    the window to end (no new failure); anything else grows the pause.
    """
    if isinstance(exc, RateWindowOpen):
        backoff.hold_until(now + exc.retry_after)
    elif isinstance(exc, UpstreamRateLimited):
        backoff.failed(not_before=now + exc.retry_after)
    else:
        backoff.failed()


def replay(exc: UpstreamError, retry_after: float) -> UpstreamError:
    """Tell a caller what the last attempt met, without asking the upstream again.

    Same kind (so the same status and code), a message saying when the next attempt goes,
    and, for 503s, that wait as ``Retry-After``.
    """
    message = f"{exc} (seen moments ago; next attempt in {retry_after:.1f}s)"
    if isinstance(exc, UpstreamUnavailable):
        return type(exc)(message, retry_after=retry_after)
    return type(exc)(message)
