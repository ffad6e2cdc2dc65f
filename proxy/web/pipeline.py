"""The request pipeline: request id, API key, JSON errors, metrics and access log per request.

It is applied to each route's handler when the route is added, not as aiohttp middleware:
a middleware chain adds two coroutine layers and a route lookup to every request, cache hits
included, which measured as a sixth of the hit path (docs/speed.md). The price is that a
route added straight to the router (``router.add_get``) would skip it all, API keys included,
so the pipeline remembers every handler it wrapped and :meth:`RequestPipeline.check_routes`
refuses, at start-up, any route whose handler it did not wrap. Paths and methods no route
takes reach a catch-all resource (:class:`AnyPath`), so they get the same treatment.
"""

from __future__ import annotations

import itertools
import os
import re
import time

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import istr
from yarl import URL

from proxy.callers.registry import Callers
from proxy.observability.context import (
    ANONYMOUS,
    REQUEST,
    UNAUTHENTICATED,
    RequestContext,
    name_caller,
    parse_traceparent,
)
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.web.auth import PROTECTED_PREFIXES, unauthorized
from proxy.web.errors import error_response

# istr: a header name multidict looks up without case-folding it each time.
REQUEST_ID_HEADER = istr("X-Request-ID")
TRACEPARENT = istr("traceparent")
TRACESTATE = istr("tracestate")
USER_AGENT = istr("User-Agent")
# A user agent is logged as sent, up to this many characters (a header may be 16 KB).
USER_AGENT_LOGGED = 256
# A caller's id is echoed and logged, so only short, plain ones are taken as they are.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SLOW_REQUEST_SECONDS = 1.0
# The name of the catch-all resource; its requests are counted under this route.
UNMATCHED = "unmatched"
_KEY_REQUIRED = "a valid API key is required: Authorization: Bearer <key>"

logger = structlog.get_logger("proxy.access")


class UnwrappedRouteError(RuntimeError):
    """The router holds a route the request pipeline cannot vouch for; the service won't start."""


class RequestPipeline:
    """Wraps route handlers so that every request gets an id, errors as JSON, counts and logs.

    ``access_log`` is ``all`` (a line per request), ``errors`` (status >= 400 or slower than
    a second) or ``off``. Requests are counted by route template, never by raw path, so
    callers cannot grow the number of series. While ``callers`` requires keys they are
    required on the protected routes and on any unmatched path under a protected prefix;
    every request is counted and logged under its caller's name. With ``tracing``, each
    handler also runs in a server span; without it, nothing of tracing is on the path.
    """

    def __init__(
        self,
        *,
        access_log: str,
        metrics: Metrics,
        callers: Callers,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        """Configure what each wrapped handler does besides its own work."""
        self._log_all = access_log == "all"
        self._log_errors = access_log == "errors"
        self._metrics = metrics
        self._callers = callers
        self._tracing = tracing
        # Generated ids: 32 hex digits, a random per-process half and a counter, unique
        # across replicas without a getrandom() call per request.
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)
        # Every handler this pipeline made, for check_routes.
        self._wrapped: set[Handler] = set()
        self._catch_all: AnyPath | None = None

    def wrap(self, handler: Handler, route: str, *, protected: bool = False) -> Handler:
        """Return ``handler`` with the pipeline around it; ``route`` names it in metrics."""
        callers = self._callers if protected else None
        handler = self._tracing.wrap_handler(handler, route)
        count = self._metrics.request
        log_all = self._log_all
        log_errors = self._log_errors
        id_prefix = self._id_prefix
        ids = self._ids

        async def handle(request: web.Request) -> web.StreamResponse:
            headers = request.headers
            given = headers.get(REQUEST_ID_HEADER)
            if given and _SAFE_ID.match(given):
                request_id = given
            else:
                request_id = f"{id_prefix}{next(ids):016x}"
            started = time.perf_counter()
            caller = ANONYMOUS
            if callers is not None and callers.required:
                caller = callers.identify(headers.get(hdrs.AUTHORIZATION)) or UNAUTHENTICATED
            traceparent = headers.get(TRACEPARENT)
            context = RequestContext(
                request_id,
                caller,
                None
                if traceparent is None
                else parse_traceparent(traceparent, headers.get(TRACESTATE)),
            )
            # aiohttp serves a keep-alive connection's requests in one task, so the context
            # is reset after each request rather than left to the task's end.
            bound = REQUEST.set(context)
            try:
                try:
                    if caller == UNAUTHENTICATED:
                        response: web.StreamResponse = unauthorized(_KEY_REQUIRED)
                    else:
                        response = await handler(request)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
                    response = error_response(request, exc)
                response.headers[REQUEST_ID_HEADER] = request_id
                elapsed = time.perf_counter() - started
                status = response.status
                # The catch-all names its caller itself, so read it back from the context.
                count(route, request.method, status, elapsed, context.caller)
                if log_all or (log_errors and (status >= 400 or elapsed >= SLOW_REQUEST_SECONDS)):
                    _log_request(request, route, response, elapsed)
            finally:
                REQUEST.reset(bound)
            return response

        self._wrapped.add(handle)
        return handle

    def add_route(
        self,
        router: web.UrlDispatcher,
        method: str,
        path: str,
        handler: Handler,
        *,
        protected: bool,
    ) -> None:
        """Add ``handler`` for ``method`` and ``path``, wrapped; ``protected`` asks for API keys."""
        router.add_route(method, path, self.wrap(handler, path, protected=protected))

    def add_catch_all(self, router: web.UrlDispatcher) -> None:
        """Add the catch-all resource; it must be the router's last (see :class:`AnyPath`)."""
        self._catch_all = AnyPath(self.wrap(self._unmatched, UNMATCHED))
        router.register_resource(self._catch_all)

    async def check_routes(self, app: web.Application) -> None:
        """Refuse to start if a route skips the pipeline or the catch-all could shadow one.

        An ``on_startup`` handler: the router is frozen by then, so nothing is added after.
        Raises :class:`UnwrappedRouteError` naming every such route.
        """
        unwrapped = [
            f"{route.method} {route.resource.canonical if route.resource else '?'}"
            for route in app.router.routes()
            if route.handler not in self._wrapped
        ]
        if unwrapped:
            raise UnwrappedRouteError(
                "routes that skip the request pipeline (no request id, API key check, JSON "
                f"errors or metrics): {', '.join(unwrapped)}; add them to ROUTES in "
                "proxy/web/routes.py instead"
            )
        resources = list(app.router.resources())
        if self._catch_all is None or resources[-1] is not self._catch_all:
            last = resources[-1].canonical if resources else "nothing"
            raise UnwrappedRouteError(
                f"the catch-all resource must be registered last, after {last}: a resource "
                "registered after it under '/' would never be reached"
            )

    async def _unmatched(self, request: web.Request) -> web.StreamResponse:
        """Refuse a path or method no route takes: 401 where a key is due, else 405 or 404."""
        callers = self._callers
        if callers.required and request.path.startswith(PROTECTED_PREFIXES):
            caller = callers.identify(request.headers.get(hdrs.AUTHORIZATION))
            name_caller(caller or UNAUTHENTICATED)
            if caller is None:
                return unauthorized(_KEY_REQUIRED)
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if not isinstance(resource, AnyPath):
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound


def _log_request(
    request: web.Request, route: str, response: web.StreamResponse, elapsed: float
) -> None:
    """Write the access line, its fields named as OpenTelemetry names them where it does.

    The route template, never the raw path (a caller's path is any text); the request id,
    caller and trace come from the request context (docs/observability.md).
    """
    user_agent = request.headers.get(USER_AGENT)
    logger.info(
        "request",
        **{
            "http.request.method": request.method,
            "http.route": route,
            "http.response.status_code": response.status,
            "http.response.body.size": response.content_length,
            "client.address": request.remote,
            "user_agent.original": None if user_agent is None else user_agent[:USER_AGENT_LOGGED],
            "duration_ms": round(elapsed * 1000, 2),
        },
    )


class AnyPath(web.PlainResource):
    """A resource that takes every request target, ``*`` and line breaks included.

    aiohttp's router tries the resources indexed under each prefix of the path, the longest
    first and ``/`` last, and those under one prefix in the order they were registered. This
    one is indexed under ``/``, so it gets only what no other resource takes as long as it is
    registered last, which :meth:`RequestPipeline.check_routes` makes sure of at start-up.
    A path pattern cannot do this: aiohttp's patterns must start with ``/``, and
    ``OPTIONS *`` does not. A plain resource for ``/`` underneath, so that aiohttp describes
    it (``canonical``, ``get_info``) as it does any other.
    """

    def __init__(self, handler: Handler) -> None:
        """Send everything to ``handler``."""
        super().__init__("/", name=UNMATCHED)
        self._route = self.add_route(hdrs.METH_ANY, handler)

    async def resolve(self, _request: web.Request) -> tuple[web.UrlMappingMatchInfo, set[str]]:
        """Match any request."""
        return web.UrlMappingMatchInfo({}, self._route), {hdrs.METH_ANY}

    def url_for(self, **_kwargs: str) -> URL:
        """Refuse: no URL leads here on purpose."""
        raise NotImplementedError("the catch-all resource has no URL")

    def add_prefix(self, prefix: str) -> None:
        """Refuse: the catch-all belongs to the root application."""
        raise NotImplementedError("the catch-all resource takes no prefix")

    def raw_match(self, _path: str) -> bool:
        """Never equal to a registered path (the router uses this to reuse resources)."""
        return False
