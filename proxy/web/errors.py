"""JSON errors for every failure a caller can see, in the shape docs/api.md ("Errors") gives."""

from __future__ import annotations

import math
from collections.abc import Mapping

import structlog
from aiohttp import web

from proxy.catalog.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.catalog.query import QueryError

logger = structlog.get_logger(__name__)

MAX_ECHO = 100

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def json_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Build ``{"error": {"code": ..., "message": ...}}`` with ``status``."""
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def upstream_error_response(exc: UpstreamError) -> web.Response:
    """Tell a caller why no catalog could be served: 502, 503 or 504."""
    if isinstance(exc, UpstreamTimeout):
        return json_error(504, "upstream_timeout", str(exc))
    if isinstance(exc, UpstreamUnavailable):
        code = (
            "upstream_rate_limited"
            if isinstance(exc, UpstreamRateLimited)
            else "upstream_unavailable"
        )
        retry_after = str(max(math.ceil(exc.retry_after), 1))
        return json_error(503, code, str(exc), headers={"Retry-After": retry_after})
    if isinstance(exc, UpstreamAuthError):
        return json_error(502, "upstream_auth_failed", str(exc))
    return json_error(502, "upstream_bad_response", str(exc))


def error_response(  # noqa: PLR0911 - one answer per kind of failure
    request: web.Request, exc: Exception
) -> web.StreamResponse:
    """Turn an exception from a handler into a JSON error; nothing escapes as HTML or a trace."""
    if isinstance(exc, web.HTTPNotFound):
        return json_error(404, "not_found", f"no such resource: {_shown(request.path)}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = (
            f"{_shown(request.method)} is not allowed on {_shown(request.path)}; use {allowed}"
        )
        return json_error(405, "method_not_allowed", message, {"Allow": allowed})
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return exc
        headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        return json_error(exc.status, code, _message(exc), headers)
    if isinstance(exc, QueryError):
        return invalid_parameter(exc)
    if isinstance(exc, UpstreamError):
        return upstream_error_response(exc)
    logger.error("unhandled_error", path=_shown(request.path), exc_info=exc)
    return json_error(500, "internal_error", "the proxy failed to handle this request")


def invalid_parameter(exc: QueryError) -> web.Response:
    """Build a 400 naming the bad parameter and what it allows."""
    body = {
        "error": {
            "code": "invalid_parameter",
            "message": str(exc),
            "parameter": exc.parameter,
            "allowed": exc.allowed,
        }
    }
    return web.json_response(body, status=400)


def _shown(text: str) -> str:
    # Paths and methods are echoed (JSON-escaped) but never at any length a caller likes.
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}..."


def _message(exc: web.HTTPException) -> str:
    # aiohttp's default text is "404: Not Found"; our own raises carry a real message.
    text = exc.text or exc.reason
    return text.removeprefix(f"{exc.status}: ")
