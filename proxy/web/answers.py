"""The hit path's contract between the catalog cache and the handlers: answers per ``Lookup``.

A handler gets a ``Lookup`` from the cache and asks :class:`Answers` for the response::

    lookup = catalog.hit() or await catalog.lookup()
    return answers.for_request(request, lookup, key, build)

``key`` names the representation (gzip or not; path and query string); ``build(request,
lookup)`` makes the :class:`Answer` when none is kept. Bodies that depend only on the catalog
version (the gzip variant, API members, parsed list queries) are kept by ETag or query string
here too, so a new version simply misses and rebuilds. Everything is bounded in count, and
the bytes kept are counted (:attr:`Answers.bytes_kept`) and held within ``max_bytes``.
"""

from __future__ import annotations

import gzip
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import hdrs, web

from proxy.catalog.query import ProductQuery, parse_query
from proxy.catalog.service import CatalogEntry, Lookup, Outcome
from proxy.web.caching import etag_matches

if TYPE_CHECKING:
    from multidict import CIMultiDict

GZIP_LEVEL = 6
# Finished answers kept for one Lookup (representations asked for within its second).
MAX_ANSWERS = 256
# API members kept across versions (catalog ETag, path and query string each).
MAX_API_MEMBERS = 256
# Parsed list queries kept (one per distinct query string).
MAX_LIST_QUERIES = 256


class Answer(NamedTuple):
    """A finished answer: body, headers for 200 and for 304, and the ETag to match.

    The headers are shared by every response made from it: never change them (aiohttp
    copies them into each response, so the pipeline's own header goes on the copy).
    """

    body: bytes
    headers: CIMultiDict[str]
    not_modified_headers: CIMultiDict[str]
    etag: str

    def response(self, request: web.Request) -> web.Response:
        """Send the answer, or 304 when the caller already has its ETag."""
        if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
        if if_none_match and etag_matches(if_none_match, self.etag):
            return web.Response(status=304, headers=self.not_modified_headers)
        return web.Response(body=self.body, headers=self.headers)


Build = Callable[[web.Request, Lookup], Answer]


class Answers:
    """Finished answers for the latest ``Lookup``, and the per-version parts they are built from.

    **Why a Lookup's answers can be reused.** Everything an answer says follows from its
    ``Lookup`` (the entry's body and ETag, the outcome, and the whole seconds ``int(age)``
    and ``int(ttl_left)`` shown in ``Age``, ``Cache-Status``, ``Cache-Control`` and the API's
    ``catalog`` block) and from the handler's ``key``. ``CatalogCache.hit()`` hands out the
    same ``Lookup`` object while none of that can change: a fresh one for the span in which
    both whole numbers stay the same (at most one second, shorter when the TTL has a
    fraction), a stale one likewise but never past the moment the next store read is due. A
    new entry, an announcement from another replica, the end of that span, a miss (never
    memoized) and an entry stamped a little ahead of this clock (age 0, not memoized) each
    give a new object.

    So answers are kept for one ``Lookup`` at a time, found by identity (``is``: no hashing
    of floats), and all dropped when a handler brings another. Identity is only a shortcut,
    never needed for correctness: an equal ``Lookup`` that is another object builds again,
    and requests that interleave two Lookups (a slow miss finishing while hits go on) just
    rebuild more often.

    **Worked example**, with ``PROXY_CACHE_TTL=300`` and an entry fetched at t = 1000.0:

    - t = 1087.2, ``GET /v1/products`` accepting gzip: ``hit()`` makes Lookup L (age 87.2,
      ttl_left 212.8) and will return L itself while 1087 < t < 1088. Nothing is kept for L,
      so ``build`` runs: ``Age: 87``, ``Cache-Status: 1nce-proxy; hit; ttl=212``, the body
      gzip-compressed (once for this catalog version, see :meth:`gzipped_body`).
    - t = 1087.6, the same request: ``hit()`` returns L; the answer under key ``True`` is
      found by identity and only the response object is made.
    - t = 1087.7, without gzip: still L, nothing under ``False`` yet: built once, then kept.
    - t = 1088.1: ``hit()`` makes L2 (age 88.1). The first request brings L2, so L's answers
      are dropped; each key is built once more (``Age: 88``), the gzip body taken as kept.
    """

    def __init__(self, max_bytes: float = math.inf) -> None:
        """Start empty; keep at most ``max_bytes`` of bodies (the gzip body, answers, members).

        What would not fit is built and served all the same, just not kept.
        """
        self._max_bytes = max_bytes
        self._bytes = 0
        # The Lookup whose answers are kept, and those answers by the handlers' keys.
        self._lookup: Lookup | None = None
        self._by_key: dict[Hashable, Answer] = {}
        # Per catalog version: (entry ETag, value).
        self._gzip_body: tuple[str, bytes] | None = None
        self._fetched_at_json: tuple[str, bytes] | None = None
        # (entry ETag, path, query string) -> (API JSON members, weak ETag), oldest first.
        self._api_members: OrderedDict[tuple[str, str, str], tuple[bytes, str]] = OrderedDict()
        # Query string -> its parsed list query, oldest first.
        self._list_queries: OrderedDict[str, ProductQuery] = OrderedDict()

    def for_request(
        self, request: web.Request, lookup: Lookup, key: Hashable, build: Build
    ) -> web.Response:
        """Return the response for ``request``: the answer ``key`` names for ``lookup``, or 304.

        ``key`` must, with the Lookup, determine the answer (and differ between routes that
        answer differently); ``build(request, lookup)`` makes it at most once per Lookup and
        key (and may raise, which keeps nothing).
        """
        if lookup is self._lookup:
            answer = self._by_key.get(key)
        else:
            self._lookup = lookup
            self._bytes -= sum(len(kept.body) for kept in self._by_key.values())
            self._by_key = {}
            answer = None
        if answer is None:
            answer = build(request, lookup)
            if len(self._by_key) < MAX_ANSWERS and self._fits(len(answer.body)):
                self._by_key[key] = answer
                self._bytes += len(answer.body)
        return answer.response(request)

    @property
    def bytes_kept(self) -> int:
        """The bytes of the bodies kept now: finished answers, API members, the gzip body."""
        return self._bytes

    def _fits(self, size: int) -> bool:
        return self._bytes + size <= self._max_bytes

    def list_query(self, request: web.Request) -> ProductQuery:
        """Return the request's list query, parsed once per query string (bad ones never kept).

        Raises ``QueryError`` for a query the list operation does not take.
        """
        query_string = request.query_string
        found = self._list_queries.get(query_string)
        if found is None:
            found = parse_query(request.query)
            self._list_queries[query_string] = found
            if len(self._list_queries) > MAX_LIST_QUERIES:
                self._list_queries.popitem(last=False)
        return found

    def gzipped_body(self, entry: CatalogEntry) -> bytes:
        """Return the entry's body gzip-compressed, compressing once per catalog version."""
        kept = self._gzip_body
        if kept is not None and kept[0] == entry.etag:
            return kept[1]
        body = gzip.compress(entry.body, GZIP_LEVEL, mtime=0)
        if kept is not None:
            self._bytes -= len(kept[1])
            self._gzip_body = None
        if self._fits(len(body)):
            self._gzip_body = (entry.etag, body)
            self._bytes += len(body)
        return body

    def api_members(
        self, key: tuple[str, str, str], build: Callable[[], tuple[bytes, str]]
    ) -> tuple[bytes, str]:
        """Return an API representation's JSON members (no braces, no catalog block) and ETag.

        ``key`` is (catalog ETag, path, query string); ``build`` makes the pair on a miss
        (and may raise, which keeps nothing).
        """
        found = self._api_members.get(key)
        if found is not None:
            self._api_members.move_to_end(key)
            return found
        found = build()
        size = len(found[0])
        if size > self._max_bytes:
            # Never kept: nothing is dropped to make room for it.
            return found
        # The oldest go first, to make room within the count and the bytes.
        while self._api_members and (
            len(self._api_members) >= MAX_API_MEMBERS or not self._fits(size)
        ):
            _, gone = self._api_members.popitem(last=False)
            self._bytes -= len(gone[0])
        if self._fits(size):
            self._api_members[key] = found
            self._bytes += size
        return found

    def catalog_json(self, lookup: Lookup) -> bytes:
        """``{"fetched_at": ..., "age_seconds": ..., "stale": ...}`` as JSON bytes."""
        entry = lookup.entry
        kept = self._fetched_at_json
        if kept is None or kept[0] != entry.etag:
            fetched = datetime.fromtimestamp(entry.fetched_at, UTC)
            stamp = fetched.isoformat(timespec="seconds").replace("+00:00", "Z").encode()
            kept = (entry.etag, stamp)
            self._fetched_at_json = kept
        stale = b"true" if lookup.outcome is Outcome.STALE else b"false"
        return b'{"fetched_at":"%s","age_seconds":%d,"stale":%s}' % (
            kept[1],
            int(lookup.age),
            stale,
        )


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


ANSWERS = web.AppKey("answers", Answers)
