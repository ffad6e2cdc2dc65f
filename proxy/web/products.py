"""``GET /v1/products``: the upstream's catalog bytes, served from cache."""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict

from proxy.appkeys import CATALOG
from proxy.cache.readthrough import Lookup
from proxy.web.caching import cache_headers
from proxy.web.prepared import PreparedResponses, Ready, accepts_gzip

PREPARED = web.AppKey("prepared_responses", PreparedResponses)


async def upstream_products(request: web.Request) -> web.Response:
    """Serve the upstream's own body and content type, with cache headers, 304 and gzip.

    The hit path does no JSON work and no I/O: the answer (body, or its gzip variant
    compressed once per catalog version, and headers) is built once per Lookup, which the
    cache reuses for a whole second.
    """
    app = request.app
    catalog = app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    prepared = app[PREPARED]
    gzipped = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
    ready = prepared.cached(lookup, gzipped) or prepared.ready(
        lookup, gzipped, lambda: _build(lookup, prepared, gzipped=gzipped)
    )
    return ready.response(request)


def _build(lookup: Lookup, prepared: PreparedResponses, *, gzipped: bool) -> Ready:
    entry = lookup.entry
    # A different coding is a different representation, so it gets its own strong ETag.
    etag = f'{entry.etag[:-1]}-gzip"' if gzipped else entry.etag
    not_modified = CIMultiDict(cache_headers(lookup, etag))
    not_modified["Vary"] = "Accept-Encoding"
    headers = not_modified.copy()
    headers["Content-Type"] = entry.content_type
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Ready(prepared.gzipped(entry), headers, not_modified, etag)
    return Ready(entry.body, headers, not_modified, etag)
