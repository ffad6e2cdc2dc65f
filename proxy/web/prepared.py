"""Work done once, not per request: gzip bodies, API bodies, and whole answers per second.

Bodies are keyed by the entry's ETag (one catalog version), so a new version simply misses and
rebuilds. Finished answers (body, headers, ETag) are kept per Lookup object: the cache hands
out the same Lookup while the whole seconds of age and freshness stay the same, so a cache hit
finds its answer by identity. Everything is small and bounded.
"""

from __future__ import annotations

import gzip
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import hdrs, web

from proxy.cache.entry import CatalogEntry
from proxy.cache.readthrough import Lookup, Outcome
from proxy.catalog.query import ProductQuery
from proxy.web.caching import etag_matches

if TYPE_CHECKING:
    from multidict import CIMultiDict

GZIP_LEVEL = 6
# Distinct API representations kept per process (path and query string per version).
MAX_API_BODIES = 256
# Finished answers kept for one Lookup (representations asked for within one second).
MAX_READY = 256


class Ready(NamedTuple):
    """A finished answer: body, headers for 200 and for 304, and the ETag to match."""

    body: bytes
    headers: CIMultiDict[str]
    not_modified: CIMultiDict[str]
    etag: str

    def response(self, request: web.Request) -> web.Response:
        """Send the answer, or 304 when the caller already has its ETag."""
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        if if_none_match and etag_matches(if_none_match, self.etag):
            return web.Response(status=304, headers=self.not_modified)
        return web.Response(body=self.body, headers=self.headers)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header admits gzip (``gzip;q=0`` does not)."""
    if not accept_encoding:
        return False
    lowered = accept_encoding.lower()
    if "gzip" not in lowered:
        return False
    for part in lowered.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "x-gzip"}:
            weight = params.strip().removeprefix("q=").strip()
            return not weight or _positive(weight)
    return False


def _positive(weight: str) -> bool:
    try:
        return float(weight) > 0
    except ValueError:
        return False


class PreparedResponses:
    """What the hit paths reuse across requests, bounded and keyed by catalog version."""

    def __init__(self) -> None:
        """Start empty."""
        self._gzip: tuple[str, bytes] | None = None
        self._api: OrderedDict[tuple[str, str, str], tuple[bytes, str]] = OrderedDict()
        self._fetched_at: tuple[str, bytes] | None = None
        self._queries: OrderedDict[str, ProductQuery] = OrderedDict()
        self._ready_for: Lookup | None = None
        self._ready: dict[object, Ready] = {}

    def ready(self, lookup: Lookup, key: object, build: Callable[[], Ready]) -> Ready:
        """Return the answer ``key`` names for ``lookup``, built by ``build`` once per Lookup.

        The headers in a Ready are shared: callers must not change them (aiohttp copies them
        into each response).
        """
        if lookup is not self._ready_for:
            self._ready_for = lookup
            self._ready = {}
        found = self._ready.get(key)
        if found is None:
            found = build()
            if len(self._ready) < MAX_READY:
                self._ready[key] = found
        return found

    def cached(self, lookup: Lookup, key: object) -> Ready | None:
        """Return the answer ``key`` names if one was built for this very ``lookup``."""
        return self._ready.get(key) if lookup is self._ready_for else None

    def known_query(self, query_string: str) -> ProductQuery | None:
        """Return the parsed list query for ``query_string`` if it was parsed before."""
        return self._queries.get(query_string)

    def query(self, query_string: str, parse: Callable[[], ProductQuery]) -> ProductQuery:
        """Parse a list query once per distinct query string (bad ones are never kept)."""
        found = self._queries.get(query_string)
        if found is None:
            found = parse()
            self._queries[query_string] = found
            if len(self._queries) > MAX_API_BODIES:
                self._queries.popitem(last=False)
        return found

    def gzipped(self, entry: CatalogEntry) -> bytes:
        """Return the entry's body gzip-compressed, compressing once per version."""
        cached = self._gzip
        if cached is not None and cached[0] == entry.etag:
            return cached[1]
        body = gzip.compress(entry.body, GZIP_LEVEL, mtime=0)
        self._gzip = (entry.etag, body)
        return body

    def api_body(
        self, key: tuple[str, str, str], build: Callable[[], tuple[bytes, str]]
    ) -> tuple[bytes, str]:
        """Return an API representation's JSON members (no catalog block) and its weak ETag.

        ``key`` is (catalog ETag, path, query string); ``build`` makes the pair on a miss
        (and may raise, which caches nothing).
        """
        found = self._api.get(key)
        if found is not None:
            self._api.move_to_end(key)
            return found
        found = build()
        self._api[key] = found
        if len(self._api) > MAX_API_BODIES:
            self._api.popitem(last=False)
        return found

    def catalog_block(self, lookup: Lookup) -> bytes:
        """``{"fetched_at": ..., "age_seconds": ..., "stale": ...}`` as JSON bytes."""
        entry = lookup.entry
        cached = self._fetched_at
        if cached is None or cached[0] != entry.etag:
            fetched = datetime.fromtimestamp(entry.fetched_at, UTC)
            stamp = fetched.isoformat(timespec="seconds").replace("+00:00", "Z").encode()
            cached = (entry.etag, stamp)
            self._fetched_at = cached
        stale = b"true" if lookup.outcome is Outcome.STALE else b"false"
        return b'{"fetched_at":"%s","age_seconds":%d,"stale":%s}' % (
            cached[1],
            int(lookup.age),
            stale,
        )
