"""One HTTP exchange with the 1NCE API: bounded in size, never redirected, errors sorted."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

import aiohttp
from aiohttp import hdrs
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.upstream.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

# The W3C trace context headers a request passes on (nothing else of its caller's).
ACCEPT_ENCODING = "gzip, deflate"
"""The content codings asked for: exactly those :func:`exchange` can inflate within a bound."""

# zlib window bits per Content-Encoding. "deflate" is the zlib format (RFC 9110, 8.4.1.2).
_WBITS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
_IDENTITY = frozenset({"", "identity"})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One request to the upstream, as its caller builds it."""

    method: str
    url: str
    endpoint: str
    """The endpoint's name, for metrics (``token``, ``products``)."""
    headers: Mapping[str, str]
    json_body: object | None = None
    route: str | None = None
    """The span's route (the URL's path by default)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An upstream answer read whole: status, headers, decoded body and time taken.

    ``headers`` are as received, so ``Content-Encoding`` and ``Content-Length`` describe the
    wire, not ``body``.
    """

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    seconds: float


class _Refused(Exception):
    """An answer :func:`exchange` will not hand over, with the metrics outcome it counts as."""

    def __init__(self, outcome: str, error: UpstreamError) -> None:
        super().__init__(str(error))
        self.outcome = outcome
        self.error = error


async def exchange(
    session: aiohttp.ClientSession,
    request: Outgoing,
    *,
    max_bytes: int,
    metrics: Metrics,
    tracing: Tracing = NO_TRACING,
) -> Reply:
    """Send one request and read its answer, of at most ``max_bytes`` once decoded.

    Redirects are refused, never followed, so credentials go nowhere but the request's URL.
    Failures raise an :class:`UpstreamError` subclass and are counted under the request's
    endpoint in ``metrics``; an answer that is returned is not counted, its caller does that
    once it has judged the reply (``Reply.seconds`` is the time to count). A cancelled
    exchange is counted as ``timeout`` and the cancellation goes on.

    The request carries the W3C trace context of the work it serves, and nothing else of
    it: with tracing on, that of a client span named after its route; off, the trace of the
    request being served, if it has one.
    """
    route = request.route or URL(request.url).path
    with tracing.client_span(
        request.method, request.url, route=route, endpoint=request.endpoint
    ) as span:
        traced = replace(request, headers=span.inject(request.headers))
        answer = await _counted(session, traced, max_bytes=max_bytes, metrics=metrics)
        span.answered(answer.status)
        return answer


async def _counted(
    session: aiohttp.ClientSession, request: Outgoing, *, max_bytes: int, metrics: Metrics
) -> Reply:
    """Run one exchange, counting and sorting its failures (see :func:`exchange`)."""
    started = time.perf_counter()

    def count(outcome: str) -> None:
        metrics.upstream(request.endpoint, outcome, time.perf_counter() - started)

    try:
        return await _exchange(session, request, max_bytes=max_bytes, started=started)
    except _Refused as refusal:
        count(refusal.outcome)
        raise refusal.error from None
    except asyncio.CancelledError:
        # The caller's time budget ran out (or the service is shutting down).
        count("timeout")
        raise
    except TimeoutError as exc:
        # aiohttp's own bounds (ServerTimeoutError, or the session's total); another
        # connection may do better within the caller's budget.
        count("timeout")
        raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}", retryable=True) from None
    except aiohttp.ClientConnectionError as exc:
        count("connection_error")
        raise UpstreamUnavailable(f"upstream unreachable: {type(exc).__name__}") from None
    except aiohttp.ClientPayloadError:
        count("invalid_body")
        raise UpstreamBadResponse("upstream sent a broken body", retryable=True) from None
    except aiohttp.ClientError as exc:
        # A malformed status line or headers, and anything else aiohttp refuses.
        count("invalid_response")
        raise UpstreamBadResponse(
            f"upstream sent an unusable response: {type(exc).__name__}"
        ) from None


async def _exchange(
    session: aiohttp.ClientSession, request: Outgoing, *, max_bytes: int, started: float
) -> Reply:
    sent = CIMultiDict(request.headers)
    sent[hdrs.ACCEPT_ENCODING] = ACCEPT_ENCODING
    async with session.request(
        request.method,
        request.url,
        headers=sent,
        json=request.json_body,
        allow_redirects=False,
        # Inflating here, not in aiohttp, is what keeps a compressed answer within the bound.
        auto_decompress=False,
    ) as response:
        try:
            body = await _read_body(response, max_bytes)
        except BaseException:
            # Close, not release: the rest of the answer must not be read, nor the
            # connection reused with unread bytes on it.
            response.close()
            raise
        return Reply(response.status, response.headers, body, time.perf_counter() - started)


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read and decode the body, refusing it as soon as it is known to exceed ``max_bytes``.

    A redirect is refused before its body is read.
    """
    if 300 <= response.status < 400:
        raise _Refused(
            "redirect",
            UpstreamBadResponse(f"upstream answered {response.status}; redirects are not followed"),
        )
    coding = response.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if coding in _IDENTITY:
        inflater = None
    elif coding in _WBITS:
        inflater = zlib.decompressobj(_WBITS[coding])
    else:
        raise _Refused(
            "invalid_body", UpstreamBadResponse(f"upstream sent content coding {coding!r}")
        )
    # A compressed body is bounded on the wire too: empty deflate blocks inflate to nothing.
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large(max_bytes)
        if inflater is None:
            body += chunk
        else:
            _inflate(inflater, chunk, body, max_bytes)
    if inflater is not None and received and not inflater.eof:
        raise _corrupt("the compressed body ends early")
    return bytes(body)


def _inflate(inflater: zlib._Decompress, data: bytes, body: bytearray, max_bytes: int) -> None:
    """Append what ``data`` inflates to, never producing more than one byte past the bound."""
    try:
        while data:
            if inflater.eof:
                raise _corrupt("data follows the end of the compressed body")
            # max_length caps the output of this call, so a bomb stops at the bound.
            body += inflater.decompress(data, max_bytes - len(body) + 1)
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
            data = inflater.unused_data or inflater.unconsumed_tail
    except zlib.error as exc:
        raise _corrupt(str(exc)) from None


def _too_large(max_bytes: int) -> _Refused:
    return _Refused(
        "too_large", UpstreamBadResponse(f"upstream answer larger than {max_bytes} bytes")
    )


def _corrupt(reason: str) -> _Refused:
    return _Refused(
        "invalid_body", UpstreamBadResponse(f"upstream sent a corrupt compressed body: {reason}")
    )
