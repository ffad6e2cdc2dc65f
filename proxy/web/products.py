"""``GET /v1/products``: the upstream's catalog bytes, served from cache."""

from __future__ import annotations

import math

from aiohttp import web

from proxy.appkeys import CATALOG
from proxy.cache.readthrough import Lookup, Outcome

CACHE_NAME = "1nce-proxy"


def cache_headers(lookup: Lookup) -> dict[str, str]:
    """``Cache-Status`` (RFC 9211), ``Age``, ``ETag`` and ``Cache-Control`` for a lookup."""
    # Whole seconds toward zero (30.2 s past freshness reads ttl=-30), but a stale entry always
    # reads negative, so ttl=0 never claims freshness it lacks.
    ttl = int(lookup.ttl_left)
    if lookup.outcome is Outcome.HIT:
        status = f"{CACHE_NAME}; hit; ttl={ttl}"
    elif lookup.outcome is Outcome.STALE:
        ttl = min(ttl, -1)
        status = f"{CACHE_NAME}; fwd=stale; ttl={ttl}"
    else:
        status = f"{CACHE_NAME}; fwd=miss; stored"
        if lookup.collapsed:
            status += "; collapsed"
    return {
        "Cache-Status": status,
        "Age": str(math.floor(lookup.age)),
        "ETag": lookup.entry.etag,
        "Cache-Control": f"max-age={max(ttl, 0)}",
    }


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110)."""
    if not if_none_match:
        return False
    candidates = (tag.strip() for tag in if_none_match.split(","))
    return any(tag in {"*", etag} or tag.removeprefix("W/") == etag for tag in candidates)


async def upstream_products(request: web.Request) -> web.Response:
    """Serve the upstream's own body and content type, with cache headers and 304 support."""
    lookup = await request.app[CATALOG].lookup()
    headers = cache_headers(lookup)
    if etag_matches(request.headers.get("If-None-Match"), lookup.entry.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = lookup.entry.content_type
    return web.Response(body=lookup.entry.body, headers=headers)
