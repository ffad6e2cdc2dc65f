"""The request pipeline: request id, API key, JSON errors, metrics and access log per request.

It is applied to each route's handler when the route is added, not as aiohttp middleware:
a middleware chain adds two coroutine layers and a route lookup to every request, cache hits
included, which measured as a sixth of the hit path (README, "Speed"). Paths and methods no
route takes reach a catch-all resource (``AnyPath``), so they get the same treatment.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from multidict import istr
from pydantic import SecretStr
from yarl import URL

if TYPE_CHECKING:
    # aiohttp's own type for get_info(); it exports no public name for it.
    from aiohttp.web_urldispatcher import _InfoDict

from proxy.observability.logging import REQUEST_ID
from proxy.observability.metrics import Metrics
from proxy.web.auth import PROTECTED_PREFIXES, bearer_matches, unauthorized
from proxy.web.errors import error_response

# istr: a header name multidict looks up without case-folding it each time.
REQUEST_ID_HEADER = istr("X-Request-ID")
# A caller's id is echoed and logged, so only short, plain ones are taken as they are.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SLOW_REQUEST_SECONDS = 1.0
# The name of the catch-all resource; its requests are counted under this route.
UNMATCHED = "unmatched"
_KEY_REQUIRED = "a valid API key is required: Authorization: Bearer <key>"

logger = structlog.get_logger("proxy.access")


class RequestPipeline:
    """Wraps route handlers so that every request gets an id, errors as JSON, counts and logs.

    ``access_log`` is ``all`` (a line per request), ``errors`` (status >= 400 or slower than
    a second) or ``off``. Requests are counted by route template, never by raw path, so
    callers cannot grow the number of series. ``api_keys``, when any are set, are required
    on the protected routes and on any unmatched path under ``/api/`` or ``/v1/``.
    """

    def __init__(
        self, *, access_log: str, metrics: Metrics, api_keys: tuple[SecretStr, ...]
    ) -> None:
        """Configure what each wrapped handler does besides its own work."""
        self._log_all = access_log == "all"
        self._log_errors = access_log == "errors"
        self._metrics = metrics
        self._api_keys = api_keys
        # Generated ids: 32 hex digits, a random per-process half and a counter, unique
        # across replicas without a getrandom() call per request.
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)

    def wrap(self, handler: Handler, route: str, *, protected: bool = False) -> Handler:
        """Return ``handler`` with the pipeline around it; ``route`` names it in metrics."""
        keys = self._api_keys if protected else ()
        count = self._metrics.request
        log_all = self._log_all
        log_errors = self._log_errors
        id_prefix = self._id_prefix
        ids = self._ids

        async def handle(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(REQUEST_ID_HEADER)
            if given and _SAFE_ID.match(given):
                request_id = given
            else:
                request_id = f"{id_prefix}{next(ids):016x}"
            started = time.perf_counter()
            # aiohttp serves a keep-alive connection's requests in one task, so the id is
            # reset after each request rather than left to the task's end.
            bound = REQUEST_ID.set(request_id)
            try:
                try:
                    if keys and not bearer_matches(request.headers.get("Authorization"), keys):
                        response: web.StreamResponse = unauthorized(_KEY_REQUIRED)
                    else:
                        response = await handler(request)
                except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer
                    response = error_response(request, exc)
                response.headers[REQUEST_ID_HEADER] = request_id
                elapsed = time.perf_counter() - started
                status = response.status
                count(route, request.method, status, elapsed)
                if log_all or (log_errors and (status >= 400 or elapsed >= SLOW_REQUEST_SECONDS)):
                    logger.info(
                        "request",
                        method=request.method,
                        path=request.rel_url.path,
                        status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    )
            finally:
                REQUEST_ID.reset(bound)
            return response

        return handle

    def add_routes(
        self,
        router: web.UrlDispatcher,
        routes: tuple[tuple[str, str, Handler], ...],
    ) -> None:
        """Add ``(method, path, handler)`` routes, each wrapped, then the catch-all route."""
        for method, path, handler in routes:
            protected = path.startswith(PROTECTED_PREFIXES)
            router.add_route(method, path, self.wrap(handler, path, protected=protected))
        router.register_resource(AnyPath(self.wrap(self._unmatched, UNMATCHED)))

    async def _unmatched(self, request: web.Request) -> web.StreamResponse:
        """Refuse a path or method no route takes: 401 where a key is due, else 405 or 404."""
        if (
            self._api_keys
            and request.path.startswith(PROTECTED_PREFIXES)
            and not bearer_matches(request.headers.get("Authorization"), self._api_keys)
        ):
            return unauthorized(_KEY_REQUIRED)
        allowed: set[str] = set()
        for resource in request.app.router.resources():
            if not isinstance(resource, AnyPath):
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound


class AnyPath(web.AbstractResource):
    """A resource that takes every request target, ``*`` and line breaks included.

    The router tries it last (it is indexed under ``/``, the end of the router's walk up a
    path), so it only gets what no route takes. A path pattern cannot do this: aiohttp's
    patterns must start with ``/``, and ``OPTIONS *`` does not.
    """

    def __init__(self, handler: Handler) -> None:
        """Send everything to ``handler``."""
        super().__init__(name=UNMATCHED)
        self._route = web.ResourceRoute(hdrs.METH_ANY, handler, self)

    @property
    def canonical(self) -> str:
        """Index it under the root, which the router reaches last."""
        return "/"

    def url_for(self, **_kwargs: str) -> URL:
        """Refuse: no URL leads here on purpose."""
        raise NotImplementedError("the catch-all resource has no URL")

    async def resolve(self, _request: web.Request) -> tuple[web.UrlMappingMatchInfo, set[str]]:
        """Match any request."""
        return web.UrlMappingMatchInfo({}, self._route), {hdrs.METH_ANY}

    def add_prefix(self, prefix: str) -> None:
        """Refuse: the catch-all belongs to the root application."""
        raise NotImplementedError("the catch-all resource takes no prefix")

    def get_info(self) -> _InfoDict:
        """Describe it as the root's other resources are described."""
        return {"path": "/"}

    def raw_match(self, _path: str) -> bool:
        """Never equal to a registered path (the router uses this to reuse resources)."""
        return False

    def __len__(self) -> int:
        """One route."""
        return 1

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        """Iterate over its one route."""
        return iter((self._route,))
