"""Every route the service answers, in one table, each installed through the request pipeline.

To add an operation, add a :class:`Route` to ``ROUTES`` (and to ``openapi.json``): its handler
then gets a request id, the API key check when protected, JSON errors, metrics and the access
log. A route added to the router any other way (``app.router.add_get``) stops the service at
start-up (:meth:`RequestPipeline.check_routes`). There are no static-file routes; none are
exempt from that check.

The management routes (probes and metrics) move to a port of their own when
``PROXY_MANAGEMENT_PORT`` is set (:mod:`proxy.web.management`); the API port then answers them
as it answers any unknown path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.web import admin, changes, dropin, events, pages
from proxy.web.api import get_product, list_categories, list_products
from proxy.web.auth import PROTECTED_PREFIXES
from proxy.web.health import healthz, readyz
from proxy.web.openapi import openapi_document
from proxy.web.pipeline import RequestPipeline
from proxy.web.products import upstream_products
from proxy.web.scrape import scrape


class Route(NamedTuple):
    """One operation: method, path template, handler, whether API keys guard it, and its port.

    ``management`` routes are served on the management port when one is set, and only there.
    """

    method: str
    path: str
    handler: Handler
    protected: bool
    management: bool = False


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/products", upstream_products, protected=True),
    Route("GET", "/api/v1/products", list_products, protected=True),
    Route("GET", "/api/v1/products/{id}", get_product, protected=True),
    Route("GET", "/api/v1/categories", list_categories, protected=True),
    Route("GET", "/api/v1/catalog/versions", changes.list_versions, protected=True),
    Route("GET", "/api/v1/changes", changes.list_changes, protected=True),
    Route("GET", "/api/v1/events", events.catalog_events, protected=True),
    Route("GET", "/healthz", healthz, protected=False, management=True),
    Route("GET", "/readyz", readyz, protected=False, management=True),
    Route("GET", "/openapi.json", openapi_document, protected=False),
    Route("GET", "/metrics", scrape, protected=False, management=True),
    # Guarded by the admin token instead, which the handler checks.
    Route("POST", "/admin/refresh", admin.refresh, protected=False),
    # The drop-in for 1NCE clients (base URL <proxy>/management-api): the token endpoint
    # checks the caller's credentials itself; the products are guarded like /v1/products.
    Route("POST", "/management-api/oauth/token", dropin.issue_token, protected=False),
    Route("GET", "/management-api/v1/products", upstream_products, protected=True),
    # Pages for people: open, like /openapi.json; the data they show is fetched from the
    # API with the key typed into them.
    Route("GET", "/docs", pages.docs_page, protected=False),
    Route("GET", "/docs/{asset}", pages.docs_asset, protected=False),
    Route("GET", "/catalog", pages.catalog_page, protected=False),
    Route("GET", "/catalog/{asset}", pages.catalog_asset, protected=False),
)
# What the management port serves when one is set (proxy/web/management.py).
MANAGEMENT_ROUTES: tuple[Route, ...] = tuple(route for route in ROUTES if route.management)


def install_routes(
    app: web.Application,
    pipeline: RequestPipeline,
    routes: Sequence[Route] = ROUTES,
    *,
    management_port_split: bool = False,
) -> None:
    """Add ``routes`` and the catch-all through ``pipeline``; check the router at start-up.

    With ``management_port_split`` the management routes are left out: they are served on
    the management port instead, and here reach the catch-all (404) like any unknown path.
    Raises ``ValueError`` for a route under ``/api/`` or ``/v1/`` that is not protected (the
    unmatched paths there ask for a key, so an open route among them would be a slip), and
    for a protected management route (the management port checks no keys).
    """
    for route in routes:
        if route.management and route.protected:
            raise ValueError(f"{route.method} {route.path}: a management route takes no API key")
        if management_port_split and route.management:
            continue
        if route.path.startswith(PROTECTED_PREFIXES) and not route.protected:
            raise ValueError(f"{route.method} {route.path} must be protected (API keys)")
        pipeline.add_route(
            app.router, route.method, route.path, route.handler, protected=route.protected
        )
    pipeline.add_catch_all(app.router)
    # First of the start-up steps: a route that skips the pipeline stops the service before
    # any connection opens.
    app.on_startup.insert(0, pipeline.check_routes)
