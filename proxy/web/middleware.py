"""Request-scoped behaviour: request ids bound to every log line, and the access log."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.observability.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed and logged, so only short, plain ones are taken as they are.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SLOW_REQUEST_SECONDS = 1.0

logger = structlog.get_logger("proxy.access")


def request_id_middleware(access_log: str, metrics: Metrics) -> Middleware:
    """Bind a request id to the request's log lines, echo it, count it, write the access log.

    ``access_log`` is ``all`` (a line per request), ``errors`` (status >= 400 or slower than
    a second) or ``off``. Requests are counted by route template (``unmatched`` for paths no
    route takes), never by raw path, so callers cannot grow the number of series.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = await handler(request)
            response.headers[REQUEST_ID_HEADER] = request_id
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.request(route, request.method, response.status, elapsed)
            if access_log == "all" or (
                access_log == "errors"
                and (response.status >= 400 or elapsed >= SLOW_REQUEST_SECONDS)
            ):
                logger.info(
                    "request",
                    method=request.method,
                    path=request.rel_url.path,
                    status=response.status,
                    duration_ms=round(elapsed * 1000, 2),
                )
        return response

    return middleware
