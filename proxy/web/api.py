"""The internal catalog API: ``/api/v1/products``, ``/api/v1/products/{id}``, categories."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from proxy.appkeys import CATALOG
from proxy.cache.readthrough import Lookup, Outcome
from proxy.catalog.query import QueryError, parse_query
from proxy.web.caching import cache_headers, derived_etag
from proxy.web.errors import json_error
from proxy.web.prepared import PreparedResponses, Ready
from proxy.web.products import PREPARED

MAX_PRODUCT_ID = 2**63 - 1
_JSON = "application/json"


def catalog_block(lookup: Lookup) -> dict[str, Any]:
    """Describe the catalog version for every API body: when fetched, how old, whether stale."""
    fetched = datetime.fromtimestamp(lookup.entry.fetched_at, UTC)
    return {
        "fetched_at": fetched.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "age_seconds": int(lookup.age),
        "stale": lookup.outcome is Outcome.STALE,
    }


def _no_query(request: web.Request) -> None:
    if request.query:
        name = next(iter(request.query))
        raise QueryError(
            name,
            "none: this operation takes no query parameters",
            problem=f"unknown parameter {name[:60]!r}",
        )


def _respond(request: web.Request, lookup: Lookup, members: Callable[[], bytes]) -> web.Response:
    """Answer with ``{<members>, "catalog": {...}}``, built once per Lookup, path and query."""
    prepared = request.app[PREPARED]
    key = (request.path, request.query_string)
    ready = prepared.cached(lookup, key) or _prepare(prepared, lookup, key, members)
    return ready.response(request)


def _prepare(
    prepared: PreparedResponses,
    lookup: Lookup,
    key: tuple[str, str],
    members: Callable[[], bytes],
) -> Ready:
    """Build (once per Lookup) the answer for ``key``, the request's path and query string.

    ``members`` returns the JSON members before the catalog block (without braces) and is
    called once per catalog version, path and query; the catalog block, whose age changes
    every second, is added here.
    """

    def make() -> Ready:
        body_key = (lookup.entry.etag, *key)
        built, etag = prepared.api_body(body_key, lambda: (members(), derived_etag(*body_key)))
        headers = CIMultiDict(cache_headers(lookup, etag))
        headers["Content-Type"] = _JSON
        body = b'{%s,"catalog":%s}' % (built, prepared.catalog_block(lookup))
        return Ready(body, headers, headers, etag)

    return prepared.ready(lookup, key, make)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def list_products(request: web.Request) -> web.Response:
    """Serve the simplified catalog, filtered and sorted as the query asks."""
    # The busiest API route: its hit path creates no closures and reads each property once.
    app = request.app
    prepared = app[PREPARED]
    query_string = request.query_string
    query = prepared.known_query(query_string) or prepared.query(
        query_string, lambda: parse_query(request.query)
    )
    catalog = app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    key = (request.path, query_string)
    ready = prepared.cached(lookup, key)
    if ready is None:

        def members() -> bytes:
            products = catalog.view_of(lookup).select(query)
            listed = _dumps([product.to_json() for product in products])
            return b'"products":%s,"count":%d' % (listed, len(products))

        ready = _prepare(prepared, lookup, key, members)
    return ready.response(request)


async def get_product(request: web.Request) -> web.Response:
    """Serve one simplified product, or a 404 naming the id."""
    _no_query(request)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_PRODUCT_ID):
        raise QueryError("id", "a positive integer below 2^63", raw)
    catalog = request.app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    product = catalog.view_of(lookup).by_id.get(int(raw))
    if product is None:
        return json_error(404, "not_found", f"no product with id {int(raw)}")
    found = product
    return _respond(request, lookup, lambda: b'"product":' + _dumps(found.to_json()))


async def list_categories(request: web.Request) -> web.Response:
    """Serve every category with its product count (zero counts included)."""
    _no_query(request)
    catalog = request.app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    view = catalog.view_of(lookup)

    def members() -> bytes:
        counts = [{"category": c.value, "count": n} for c, n in view.category_counts]
        return b'"categories":' + _dumps(counts)

    return _respond(request, lookup, members)
