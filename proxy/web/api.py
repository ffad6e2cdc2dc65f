"""The internal catalog API: ``/api/v1/products``, ``/api/v1/products/{id}``, categories."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from proxy.appkeys import CATALOG
from proxy.cache.readthrough import Lookup, Outcome
from proxy.catalog.query import QueryError, parse_query
from proxy.web.caching import cache_headers, derived_etag, etag_matches
from proxy.web.errors import json_error

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


def _respond(request: web.Request, lookup: Lookup, body: dict[str, Any]) -> web.Response:
    etag = derived_etag(lookup.entry.etag, request.path, request.query_string)
    headers = cache_headers(lookup, etag)
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=payload, headers=headers, content_type=_JSON)


async def list_products(request: web.Request) -> web.Response:
    """Serve the simplified catalog, filtered and sorted as the query asks."""
    query = parse_query(request.query)
    snapshot = await request.app[CATALOG].snapshot()
    products = snapshot.view.select(query)
    body = {
        "products": [product.to_json() for product in products],
        "count": len(products),
        "catalog": catalog_block(snapshot.lookup),
    }
    return _respond(request, snapshot.lookup, body)


async def get_product(request: web.Request) -> web.Response:
    """Serve one simplified product, or a 404 naming the id."""
    _no_query(request)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 0 < int(raw) <= MAX_PRODUCT_ID):
        raise QueryError("id", "a positive integer below 2^63", raw)
    snapshot = await request.app[CATALOG].snapshot()
    product = snapshot.view.by_id.get(int(raw))
    if product is None:
        return json_error(404, "not_found", f"no product with id {int(raw)}")
    body = {"product": product.to_json(), "catalog": catalog_block(snapshot.lookup)}
    return _respond(request, snapshot.lookup, body)


async def list_categories(request: web.Request) -> web.Response:
    """Serve every category with its product count (zero counts included)."""
    _no_query(request)
    snapshot = await request.app[CATALOG].snapshot()
    categories = [
        {"category": category.value, "count": count}
        for category, count in snapshot.view.category_counts
    ]
    body = {"categories": categories, "catalog": catalog_block(snapshot.lookup)}
    return _respond(request, snapshot.lookup, body)
