"""The simplified views of kept catalog versions, for the change feed's diffs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import structlog

from proxy.catalog.errors import UpstreamBadResponse
from proxy.catalog.service import CatalogEntry, CatalogService
from proxy.catalog.view import CatalogView
from proxy.history.records import VersionRecord
from proxy.history.store import Versions, decompress

logger = structlog.get_logger(__name__)

VIEWS_KEPT = 4
"""Views of kept versions held, by ETag (a diff asks for two)."""


class VersionViews:
    """Gives the view of a kept version: the catalog held here, or its snapshot, parsed once."""

    def __init__(self, catalog: CatalogService, store: Versions, *, max_body: int) -> None:
        """View through ``catalog``; snapshots come from ``store``, at most ``max_body`` bytes."""
        self._catalog = catalog
        self._store = store
        self._max_body = max_body
        self._views: OrderedDict[str, CatalogView] = OrderedDict()

    async def of(self, record: VersionRecord) -> CatalogView | None:
        """Return the view of a kept version; None when its catalog cannot be read now."""
        view = self._views.get(record.etag)
        if view is not None:
            self._views.move_to_end(record.etag)
            return view
        held = self._catalog.held
        if held is not None and held.etag == record.etag:
            return self.of_entry(held)
        snapshot = await self._store.snapshot(record.version)
        body = None if snapshot is None else await decompress(snapshot, self._max_body)
        if body is None:
            return None
        return self._built(record.etag, lambda: self._catalog.view_of_body(body))

    def of_entry(self, entry: CatalogEntry) -> CatalogView | None:
        """Return the view of the catalog held here: the handlers' own, built once.

        Kept here too, so that once a newer catalog comes it is still at hand to diff against.
        """
        return self._built(entry.etag, lambda: self._catalog.view_of_entry(entry))

    def _built(self, etag: str, build: Callable[[], CatalogView]) -> CatalogView | None:
        """Build and keep a view; None (logged) when its catalog does not parse."""
        try:
            view = build()
        except UpstreamBadResponse:
            logger.warning("history_catalog_unreadable", etag=etag)
            return None
        self._views[etag] = view
        self._views.move_to_end(etag)
        while len(self._views) > VIEWS_KEPT:
            self._views.popitem(last=False)
        return view
