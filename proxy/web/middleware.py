"""The one request middleware: request id, JSON errors, metrics and the access log.

One layer instead of several, because it runs on every request, the cache hits included.
"""

from __future__ import annotations

import os
import re
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.observability.metrics import Metrics
from proxy.web.errors import error_response

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed and logged, so only short, plain ones are taken as they are.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SLOW_REQUEST_SECONDS = 1.0

logger = structlog.get_logger("proxy.access")


def request_middleware(access_log: str, metrics: Metrics) -> Middleware:
    """Bind a request id to the request's log lines, answer errors as JSON, count, log.

    ``access_log`` is ``all`` (a line per request), ``errors`` (status >= 400 or slower than
    a second) or ``off``. Requests are counted by route template (``unmatched`` for paths no
    route takes), never by raw path, so callers cannot grow the number of series.
    """
    log_all = access_log == "all"
    log_errors = access_log == "errors"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID_HEADER)
        request_id = given if given and _SAFE_ID.match(given) else os.urandom(16).hex()
        started = time.perf_counter()
        # aiohttp serves a keep-alive connection's requests in one task, so the binding is
        # undone after each request rather than left to the task's end.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
                response = error_response(request, exc)
            response.headers[REQUEST_ID_HEADER] = request_id
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.request(route, request.method, response.status, elapsed)
            if log_all or (
                log_errors and (response.status >= 400 or elapsed >= SLOW_REQUEST_SECONDS)
            ):
                logger.info(
                    "request",
                    method=request.method,
                    path=request.rel_url.path,
                    status=response.status,
                    duration_ms=round(elapsed * 1000, 2),
                )
        finally:
            structlog.contextvars.reset_contextvars(**bound)
        return response

    return middleware
