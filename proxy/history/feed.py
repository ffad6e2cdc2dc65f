"""The change feed: records each new catalog as a version and tells streams and webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import structlog
from aiohttp import web

from proxy.backplane.interface import Appended, Backplane
from proxy.backplane.keys import KeySpace
from proxy.cancellation import cancel_and_wait, stop_if_cancelled
from proxy.catalog.diff import CatalogDiff, diff_views
from proxy.catalog.service import CatalogEntry, CatalogService
from proxy.history.records import VersionEvent, VersionRecord
from proxy.history.store import History, Versions, compress
from proxy.history.views import VersionViews
from proxy.history.webhooks import Webhooks
from proxy.observability.metrics import Metrics

logger = structlog.get_logger(__name__)

# The history is read this often with no announcement: every replica's streams see a new
# version within about this long even if the announcement was lost.
POLL_INTERVAL = 1.0
# Handlers read the history again when the copy here is older than this.
FRESH_FOR = 1.0
# A compare-and-append lost to another replica is retried at once, this many times.
APPEND_ATTEMPTS = 3
TOPIC = "versions"


class VersionGoneError(Exception):
    """A version asked for is not kept (expired, never given, or from another epoch)."""

    def __init__(self, message: str, history: History) -> None:
        """Say why, with the history it was looked up in."""
        super().__init__(message)
        self.history = history


class HistoryUnavailableError(Exception):
    """The store holding the history could not be read."""


class Claims:
    """Which replica delivers a version's webhooks: the first to claim it, deployment-wide."""

    def __init__(self, backplane: Backplane, keys: KeySpace, *, owner: str, ttl: float) -> None:
        """Claim through ``backplane``, naming ``owner``; a claim lasts ``ttl`` seconds."""
        self._backplane = backplane
        self._keys = keys
        self._owner = owner.encode()
        self._ttl = ttl

    async def take(self, epoch: str, version: int) -> bool:
        """Claim ``version`` of ``epoch``; True if this replica is the one to deliver it."""
        key = self._keys.webhook_claim(epoch, version)
        return bool(await self._backplane.set_if_absent(key, self._owner, self._ttl))


class ChangeFeed:
    """Numbers the catalogs the deployment stores and follows the numbering on every replica.

    Once a second (and at once when a replica announces a stored catalog or a new version)
    it reads the shared history. When this replica holds a catalog newer than the newest
    version and with other bytes, it appends it as the next version, with a summary of what
    changed, by compare-and-append: replicas racing to record one catalog record it once.
    Streams wait on :meth:`changed`; each new version is handed to the webhooks by the one
    replica that claims it. Only the catalog the shared store holds is recorded (the cache's
    :attr:`~proxy.catalog.service.CatalogService.shared_etag`), so a replica still holding an
    older catalog never records it as new, and no stamp written on another replica's clock is
    compared with this one's: a replica whose clock runs ahead or behind records like the rest.
    """

    def __init__(
        self,
        *,
        store: Versions,
        catalog: CatalogService,
        backplane: Backplane,
        metrics: Metrics,
        max_body: int,
        max_streams: int,
        claims: Claims,
        webhooks: Webhooks | None = None,
    ) -> None:
        """Record into ``store`` what ``catalog`` holds; tell ``webhooks`` of new versions.

        ``claims`` decide which replica delivers each version.
        """
        self._store = store
        self._catalog = catalog
        self._backplane = backplane
        self._metrics = metrics
        self._max_streams = max_streams
        self._webhooks = webhooks
        self._claims = claims
        self._history: History | None = None
        self._read_at = -math.inf
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._views = VersionViews(catalog, store, max_body=max_body)
        self._streams = 0
        metrics.watch_streams(lambda: self._streams)
        self._task: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[History | None] | None = None

    @property
    def history(self) -> History | None:
        """The history as last read; None until the store first answered."""
        return self._history

    @property
    def closing(self) -> asyncio.Event:
        """Set when the service stops: streams end."""
        return self._closing

    def changed(self) -> asyncio.Event:
        """Return the event the next change of :attr:`history` sets (take it before reading)."""
        return self._changed

    def wake(self) -> None:
        """Read the history now (an announcement came)."""
        self._wake.set()

    def need(self) -> None:
        """Keep a catalog fresh from now on: someone follows its changes."""
        self._catalog.need()

    def open_stream(self) -> bool:
        """Count a stream in; False when this replica already has the most it takes."""
        if self._streams >= self._max_streams:
            return False
        self._streams += 1
        return True

    def close_stream(self) -> None:
        """Count a stream out."""
        self._streams -= 1

    def start(self) -> None:
        """Start following the history."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow_forever())

    def end_streams(self) -> None:
        """Tell every stream to end (the service is stopping)."""
        self._closing.set()

    async def close(self) -> None:
        """Stop following; end streams."""
        self.end_streams()
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def current(self) -> History:
        """Return the history, read again when the copy here is over a second old.

        Raises :class:`HistoryUnavailableError` when the store cannot be read.
        """
        history = self._history
        if history is not None and time.monotonic() - self._read_at < FRESH_FOR:
            return history
        # Concurrent requests share one read.
        reading = self._reading
        if reading is None or reading.done():
            reading = asyncio.get_running_loop().create_task(self._read())
            self._reading = reading
        history = await asyncio.shield(reading)
        if history is None:
            raise HistoryUnavailableError("the catalog history cannot be read now")
        await self._follow(history)
        return history

    async def diff(self, history: History, since: int) -> tuple[VersionRecord, CatalogDiff]:
        """Return the version ``since`` and what changed from it to the current version.

        Raises :class:`VersionGoneError` when ``since`` is not kept, and
        :class:`HistoryUnavailableError` when a kept catalog cannot be read.
        """
        current = history.current
        kept = {record.version: record for record in history.versions}
        start = kept.get(since)
        if current is None or start is None:
            raise VersionGoneError(f"version {since} is not kept", history)
        if start.version == current.version:
            return start, CatalogDiff(added=(), removed=(), changed=())
        before = await self._views.of(start)
        after = await self._views.of(current)
        if before is None or after is None:
            raise HistoryUnavailableError("a kept catalog version cannot be read now")
        return start, diff_views(before, after)

    async def _follow_forever(self) -> None:
        """Read the history, record what is new here, tell streams and webhooks; forever."""
        while True:
            stop_if_cancelled()
            try:
                await self._step()
            except Exception:
                logger.exception("change_feed_failed")
            stop_if_cancelled()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._wake.wait()

    async def _step(self) -> None:
        for _ in range(APPEND_ATTEMPTS):
            history = await self._read()
            if history is None:
                return
            await self._follow(history)
            entry = self._catalog.held
            if entry is None or not _is_new(entry, self._catalog.shared_etag, history):
                return
            if not await self._record(entry, history):
                return

    async def _read(self) -> History | None:
        """Read the history: the newest record first, the rest only when it changed."""
        head = await self._store.read(1)
        known = self._history
        if head is None or known is None or _head_of(head) != _head_of(known):
            if head is None or head.current is None:
                return head
            return await self._store.read(self._store.max_versions)
        self._read_at = time.monotonic()
        return known

    async def _follow(self, history: History) -> None:
        """Adopt ``history``; wake streams and deliver webhooks for versions new to it."""
        known, self._history = self._history, history
        self._read_at = time.monotonic()
        if history is known:
            return
        current = history.current
        if current is not None:
            self._metrics.catalog_version(current.version)
        if known is not None and _head_of(known) == _head_of(history):
            return
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if known is None or self._webhooks is None or history.epoch is None:
            # The versions found at start-up are not news: whoever saw them arrive told.
            return
        seen = known.current.version if known.epoch == history.epoch and known.current else 0
        for record in history.after(seen):
            await self._deliver(VersionEvent(history.epoch, record))

    async def _deliver(self, event: VersionEvent) -> None:
        """Hand ``event`` to the webhooks if this replica is the one to deliver it."""
        assert self._webhooks is not None  # noqa: S101 - checked by the caller
        if await self._claims.take(event.epoch, event.record.version):
            self._webhooks.deliver(event)

    async def _record(self, entry: CatalogEntry, history: History) -> bool:
        """Append ``entry`` as the next version; True if it should be tried again (a race)."""
        after = self._views.of_entry(entry)
        if after is None:
            return False
        previous = history.current
        before = None if previous is None else await self._views.of(previous)
        if previous is not None and before is None:
            # Without the previous catalog there is no honest summary: try again later.
            return False
        changes = diff_views(before, after)
        summary = changes.summary
        record = VersionRecord(
            version=history.last + 1,
            etag=entry.etag,
            stored_at=entry.fetched_at,
            products=len(after.products),
            summary=summary,
        )
        appended = await self._store.append(history, record, await compress(entry.body))
        if appended is None:
            return False
        outcome, epoch = appended
        if outcome is Appended.CONFLICT:
            return True
        self._metrics.catalog_changes(
            added=summary.added, removed=summary.removed, changed=summary.changed
        )
        logger.info(
            "catalog_changed",
            epoch=epoch,
            version=record.version,
            previous=None if previous is None else previous.version,
            etag=record.etag,
            products=record.products,
            **summary.to_json(),
        )
        await self._backplane.publish(TOPIC)
        return True


def _head_of(history: History) -> tuple[str | None, int, int | None]:
    current = history.current
    return history.epoch, history.last, None if current is None else current.version


def _is_new(entry: CatalogEntry, shared_etag: str | None, history: History) -> bool:
    """Whether ``entry`` is the deployment's current catalog and the history lacks it."""
    current = history.current
    return entry.etag == shared_etag and (current is None or entry.etag != current.etag)


FEED = web.AppKey("feed", ChangeFeed)
"""Where an application keeps its change feed."""
