"""``GET /v1/products``: the upstream's catalog bytes, served from cache."""

from __future__ import annotations

from aiohttp import web

from proxy.appkeys import CATALOG
from proxy.web.caching import etag_matches
from proxy.web.prepared import PreparedResponses, accepts_gzip

PREPARED = web.AppKey("prepared_responses", PreparedResponses)


async def upstream_products(request: web.Request) -> web.Response:
    """Serve the upstream's own body and content type, with cache headers, 304 and gzip.

    The hit path does no JSON work and no I/O: the body is the cached bytes (or their gzip
    variant, compressed once per catalog version) and the headers are reused within a second.
    """
    lookup = await request.app[CATALOG].lookup()
    entry = lookup.entry
    prepared = request.app[PREPARED]
    gzipped = accepts_gzip(request.headers.get("Accept-Encoding"))
    # A different coding is a different representation, so it gets its own strong ETag.
    etag = f'{entry.etag[:-1]}-gzip"' if gzipped else entry.etag
    if etag_matches(request.headers.get("If-None-Match"), etag):
        headers = prepared.headers(lookup, etag, (("Vary", "Accept-Encoding"),))
        return web.Response(status=304, headers=headers)
    extra: tuple[tuple[str, str], ...]
    if gzipped:
        extra = (
            ("Content-Type", entry.content_type),
            ("Content-Encoding", "gzip"),
            ("Vary", "Accept-Encoding"),
        )
        headers = prepared.headers(lookup, etag, extra)
        return web.Response(body=prepared.gzipped(entry), headers=headers)
    extra = (("Content-Type", entry.content_type), ("Vary", "Accept-Encoding"))
    return web.Response(body=entry.body, headers=prepared.headers(lookup, entry.etag, extra))
