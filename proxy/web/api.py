"""The internal catalog API: ``/api/v1/products``, ``/api/v1/products/{id}``, categories."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from proxy.catalog.query import parse_positive, refuse_unknown
from proxy.catalog.service import CATALOG, Lookup, Outcome
from proxy.web.answers import ANSWERS, Answer
from proxy.web.caching import cache_headers, derived_etag
from proxy.web.errors import json_error

_JSON = "application/json"


def catalog_fields(lookup: Lookup) -> dict[str, Any]:
    """Describe the catalog version for every API body: when fetched, how old, whether stale."""
    fetched = datetime.fromtimestamp(lookup.entry.fetched_at, UTC)
    return {
        "fetched_at": fetched.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "age_seconds": int(lookup.age),
        "stale": lookup.outcome is Outcome.STALE,
    }


async def list_products(request: web.Request) -> web.Response:
    """Serve the simplified catalog, filtered and sorted as the query asks."""
    app = request.app
    answers = app[ANSWERS]
    # Parsed first, so a bad query is refused without waiting for a catalog.
    answers.list_query(request)
    catalog = app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    key = (request.path, request.query_string)
    return answers.for_request(request, lookup, key, _list_answer)


async def get_product(request: web.Request) -> web.Response:
    """Serve one simplified product, or a 404 naming the id."""
    refuse_unknown(request.query, ())
    product_id = parse_positive(request.match_info["id"], "id", "a positive integer below 2^63")
    catalog = request.app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    if product_id not in catalog.view_of(lookup).by_id:
        return json_error(404, "not_found", f"no product with id {product_id}")
    key = (request.path, request.query_string)
    return request.app[ANSWERS].for_request(request, lookup, key, _product_answer)


async def list_categories(request: web.Request) -> web.Response:
    """Serve every category with its product count (zero counts included)."""
    refuse_unknown(request.query, ())
    catalog = request.app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    key = (request.path, request.query_string)
    return request.app[ANSWERS].for_request(request, lookup, key, _categories_answer)


def _list_answer(request: web.Request, lookup: Lookup) -> Answer:
    app = request.app
    query = app[ANSWERS].list_query(request)

    def members() -> bytes:
        products = app[CATALOG].view_of(lookup).select(query)
        listed = _dumps([product.to_json() for product in products])
        return b'"products":%s,"count":%d' % (listed, len(products))

    return _api_answer(request, lookup, members)


def _product_answer(request: web.Request, lookup: Lookup) -> Answer:
    product = request.app[CATALOG].view_of(lookup).by_id[int(request.match_info["id"])]
    return _api_answer(request, lookup, lambda: b'"product":' + _dumps(product.to_json()))


def _categories_answer(request: web.Request, lookup: Lookup) -> Answer:
    view = request.app[CATALOG].view_of(lookup)

    def members() -> bytes:
        counts = [{"category": c.value, "count": n} for c, n in view.category_counts]
        return b'"categories":' + _dumps(counts)

    return _api_answer(request, lookup, members)


def _api_answer(request: web.Request, lookup: Lookup, members: Callable[[], bytes]) -> Answer:
    """Answer with ``{<members>, "catalog": {...}}``.

    ``members`` returns the JSON members before the catalog block (without braces); it is
    called once per catalog version, path and query string. The catalog block, whose age
    changes every second, is added here.
    """
    answers = request.app[ANSWERS]
    version_key = (lookup.entry.etag, request.path, request.query_string)
    built, etag = answers.api_members(version_key, lambda: (members(), derived_etag(*version_key)))
    headers = CIMultiDict(cache_headers(lookup, etag))
    headers["Content-Type"] = _JSON
    body = b'{%s,"catalog":%s}' % (built, answers.catalog_json(lookup))
    return Answer(body, headers, headers, etag)


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
