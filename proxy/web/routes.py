"""Every route the service answers, in one table, each installed through the request pipeline.

To add an operation, add a :class:`Route` to ``ROUTES`` (and to ``openapi.json``): its handler
then gets a request id, the API key check when protected, JSON errors, metrics and the access
log. A route added to the router any other way (``app.router.add_get``) stops the service at
start-up (:meth:`RequestPipeline.check_routes`). There are no static-file routes; none are
exempt from that check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.web import admin
from proxy.web.api import get_product, list_categories, list_products
from proxy.web.auth import PROTECTED_PREFIXES
from proxy.web.health import healthz, readyz
from proxy.web.metrics import metrics
from proxy.web.openapi import openapi_document
from proxy.web.pipeline import RequestPipeline
from proxy.web.products import upstream_products


class Route(NamedTuple):
    """One operation: HTTP method, path template, handler, and whether API keys guard it."""

    method: str
    path: str
    handler: Handler
    protected: bool


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/products", upstream_products, protected=True),
    Route("GET", "/api/v1/products", list_products, protected=True),
    Route("GET", "/api/v1/products/{id}", get_product, protected=True),
    Route("GET", "/api/v1/categories", list_categories, protected=True),
    Route("GET", "/healthz", healthz, protected=False),
    Route("GET", "/readyz", readyz, protected=False),
    Route("GET", "/openapi.json", openapi_document, protected=False),
    Route("GET", "/metrics", metrics, protected=False),
    # Guarded by the admin token instead, which the handler checks.
    Route("POST", "/admin/refresh", admin.refresh, protected=False),
)


def install_routes(
    app: web.Application, pipeline: RequestPipeline, routes: Sequence[Route] = ROUTES
) -> None:
    """Add ``routes`` and the catch-all through ``pipeline``; check the router at start-up.

    Raises ``ValueError`` for a route under ``/api/`` or ``/v1/`` that is not protected: the
    unmatched paths there ask for a key, so an open route among them would be a slip.
    """
    for route in routes:
        if route.path.startswith(PROTECTED_PREFIXES) and not route.protected:
            raise ValueError(f"{route.method} {route.path} must be protected (API keys)")
        pipeline.add_route(
            app.router, route.method, route.path, route.handler, protected=route.protected
        )
    pipeline.add_catch_all(app.router)
    # First of the start-up steps: a route that skips the pipeline stops the service before
    # any connection opens.
    app.on_startup.insert(0, pipeline.check_routes)
