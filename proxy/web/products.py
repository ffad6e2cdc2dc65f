"""``GET /v1/products``: the upstream's catalog bytes, served from cache."""

from __future__ import annotations

from aiohttp import web

from proxy.appkeys import CATALOG
from proxy.web.caching import cache_headers, etag_matches


async def upstream_products(request: web.Request) -> web.Response:
    """Serve the upstream's own body and content type, with cache headers and 304 support."""
    lookup = await request.app[CATALOG].lookup()
    headers = cache_headers(lookup)
    if etag_matches(request.headers.get("If-None-Match"), lookup.entry.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = lookup.entry.content_type
    return web.Response(body=lookup.entry.body, headers=headers)
