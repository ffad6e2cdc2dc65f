"""``GET /v1/products``: the upstream's catalog bytes, served from cache."""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict

from proxy.catalog.service import CATALOG, Lookup
from proxy.web.answers import ANSWERS, Answer, accepts_gzip
from proxy.web.caching import cache_headers


async def upstream_products(request: web.Request) -> web.Response:
    """Serve the upstream's own body and content type, with cache headers, 304 and gzip.

    The hit path does no JSON work and no I/O: the answer is built once per Lookup and kept
    (``proxy.web.answers``); the gzip body is compressed once per catalog version.
    """
    app = request.app
    catalog = app[CATALOG]
    lookup = catalog.hit() or await catalog.lookup()
    gzipped = accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING))
    # The key is the coding alone: the query string changes nothing here.
    build = _gzipped_answer if gzipped else _plain_answer
    return app[ANSWERS].for_request(request, lookup, gzipped, build)


def _plain_answer(request: web.Request, lookup: Lookup) -> Answer:
    return _answer(request, lookup, gzipped=False)


def _gzipped_answer(request: web.Request, lookup: Lookup) -> Answer:
    return _answer(request, lookup, gzipped=True)


def _answer(request: web.Request, lookup: Lookup, *, gzipped: bool) -> Answer:
    entry = lookup.entry
    # The compressed variant's ETag is the weak form of the identity one (as nginx does): one
    # published etag (versions, events, webhooks) then validates for every client, gzip or
    # not, under If-None-Match's weak comparison.
    etag = f"W/{entry.etag}" if gzipped else entry.etag
    not_modified = CIMultiDict(cache_headers(lookup, etag))
    not_modified["Vary"] = "Accept-Encoding"
    headers = not_modified.copy()
    headers["Content-Type"] = entry.content_type
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Answer(request.app[ANSWERS].gzipped_body(entry), headers, not_modified, etag)
    return Answer(entry.body, headers, not_modified, etag)
