"""The application factory: one call builds the whole service from its settings."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from proxy.backplane.connect import connect
from proxy.backplane.interface import BACKPLANE, Backplane
from proxy.backplane.keys import KeySpace
from proxy.cache.clock import Clocks
from proxy.cache.freshness import Freshness
from proxy.cache.readthrough import CatalogCache
from proxy.callers.keys import parse_entries
from proxy.callers.registry import CALLERS, Callers
from proxy.callers.tokens import CallerTokens
from proxy.cancellation import cancel_and_wait
from proxy.catalog.service import CATALOG, CatalogService
from proxy.coordination.rate import RateGate
from proxy.coordination.turns import Turns
from proxy.history.feed import FEED, TOPIC, ChangeFeed, Claims
from proxy.history.store import Versions
from proxy.history.webhooks import Webhooks
from proxy.observability.metrics import METRICS, CatalogGauges, Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.settings import SETTINGS, Settings
from proxy.upstream.factory import build_upstream
from proxy.upstream.models import PRODUCTS
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.session import HTTP_SESSION, open_session
from proxy.web.answers import ANSWERS, Answers
from proxy.web.health import LIFECYCLE, Lifecycle
from proxy.web.openapi import OPENAPI, load_document
from proxy.web.pages import PAGES, Pages
from proxy.web.pipeline import RequestPipeline
from proxy.web.routes import install_routes

# Header fields up to 16 KB are accepted (docs/api.md); aiohttp's default is 8 KB.
MAX_FIELD_SIZE = 16 * 1024
FILL_WAIT_SLACK = 2.0
WEBHOOK_CLAIM_TTL = 86400.0


def create_app(
    settings: Settings,
    *,
    tracing: Tracing = NO_TRACING,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the service; resources open on startup and close on cleanup, in order.

    ``tracing`` (from :func:`~proxy.observability.tracing.start_tracing`) puts each request
    in a server span; ``NO_TRACING``, the default, makes no spans. ``clock`` is the wall clock
    catalogs are stamped and judged by (tests give a replica a skewed one).
    """
    metrics = Metrics()
    callers = Callers(
        parse_entries(key.get_secret_value() for key in settings.api_keys),
        key_file=Path(settings.api_keys_file) if settings.api_keys_file else None,
        tokens=CallerTokens(),
    )
    metrics.watch_key_file(lambda: callers.file_usable)
    app = web.Application(
        handler_args={"max_field_size": MAX_FIELD_SIZE, "max_line_size": MAX_FIELD_SIZE},
    )
    app[SETTINGS] = settings
    app[LIFECYCLE] = Lifecycle()
    app[METRICS] = metrics
    app[OPENAPI] = load_document()
    app[ANSWERS] = Answers()
    app[CALLERS] = callers
    app[PAGES] = Pages.load()
    app.cleanup_ctx.extend(
        [
            _callers,
            _http_session,
            functools.partial(_backplane, tracing=tracing),
            functools.partial(_catalog, tracing=tracing, clock=clock),
            _feed,
        ]
    )
    # Event streams end when the service stops, before aiohttp waits for requests to finish.
    app.on_shutdown.append(_end_streams)
    pipeline = RequestPipeline(
        access_log=settings.access_log, metrics=metrics, callers=callers, tracing=tracing
    )
    install_routes(app, pipeline, management_port_split=settings.management_port is not None)
    return app


def _keys(settings: Settings) -> KeySpace:
    return KeySpace(settings.key_prefix, settings.account_hash)


async def _callers(app: web.Application) -> AsyncIterator[None]:
    # The key file (if any) is read before the first request and watched from then on.
    callers = app[CALLERS]
    callers.start(app[SETTINGS].api_keys_reload_interval)
    yield
    await callers.close()


def _replica(settings: Settings) -> str:
    """Name this replica: ``PROXY_REPLICA_NAME``, else host name and process id."""
    return settings.replica_name or f"{socket.gethostname()}:{os.getpid()}"


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    async with open_session(app[SETTINGS]) as session:
        app[HTTP_SESSION] = session
        yield


async def _backplane(app: web.Application, *, tracing: Tracing) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    backplane = connect(
        settings,
        channel=_keys(settings).events,
        metrics=app[METRICS],
        replica=_replica(settings),
        tracing=tracing,
    )
    await backplane.start()
    app[BACKPLANE] = backplane
    yield
    await backplane.close()


async def _catalog(
    app: web.Application, *, tracing: Tracing, clock: Callable[[], float]
) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    keys = _keys(settings)
    backplane = app[BACKPLANE]
    # The lock value names the replica, so an operator can see who is fetching.
    owner = _replica(settings)
    upstream = build_upstream(
        app[HTTP_SESSION],
        UpstreamOptions.from_settings(settings),
        backplane=backplane,
        keys=keys,
        owner=owner,
        metrics=metrics,
        tracing=tracing,
    )
    cache = CatalogCache(
        store=backplane,
        key=keys.catalog,
        freshness=Freshness(settings.cache_ttl, settings.stale_ttl),
        loader=lambda: upstream.client.fetch(PRODUCTS),
        # A holder that died leaves its lock until it expires; the next holder then needs up
        # to the upstream timeout. Only past both (and a slack) does a waiter fetch alone.
        turns=Turns(
            backplane,
            name=keys.catalog_lock,
            topic="catalog",
            ttl=settings.lock_timeout,
            owner=owner,
            max_wait=settings.lock_timeout + settings.upstream_timeout + FILL_WAIT_SLACK,
        ),
        metrics=metrics,
        clocks=Clocks(wall=clock),
        tracing=tracing,
    )
    metrics.watch_catalog(lambda: _catalog_gauges(cache, clock()))
    backplane.on("catalog", cache.shared_changed)
    admin_gate = RateGate(backplane, keys.admin_refresh, settings.admin_refresh_interval)
    service = CatalogService(
        cache, upstream.client, upstream.tokens, store=backplane, admin_gate=admin_gate
    )
    app[CATALOG] = service
    # The keeper fills at once with warm-up on, else from the first caller on, and from then
    # on keeps a usable catalog with no traffic needed (docs/reliability.md).
    cache.start(needed=settings.warmup)
    warmup = None
    if settings.warmup:
        # Started, not awaited: start-up stays quick; /readyz says "warming" until it ends.
        warmup = asyncio.get_running_loop().create_task(service.warm_up())
    yield
    await cancel_and_wait(warmup)
    await cache.close()
    await upstream.close()


async def _feed(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    backplane = app[BACKPLANE]
    keys = _keys(settings)
    webhooks = None
    if settings.webhook_urls and settings.webhook_secret is not None:
        webhooks = Webhooks(
            settings.webhook_urls,
            secret=settings.webhook_secret.get_secret_value().encode(),
            metrics=app[METRICS],
            timeout=settings.webhook_timeout,
            retry_for=settings.webhook_retry_for,
        )
        await webhooks.start()
    feed = ChangeFeed(
        store=_versions(backplane, keys, settings),
        catalog=app[CATALOG],
        backplane=backplane,
        metrics=app[METRICS],
        max_body=settings.upstream_max_bytes,
        max_streams=settings.max_streams,
        webhooks=webhooks,
        # Long past any replica's catching up: a version is never delivered twice.
        claims=Claims(backplane, keys, owner=_replica(settings), ttl=WEBHOOK_CLAIM_TTL),
    )
    app[FEED] = feed
    # A stored catalog may be a new version to record; a new version, news to tell.
    backplane.on("catalog", feed.wake)
    backplane.on(TOPIC, feed.wake)
    feed.start()
    yield
    await feed.close()
    if webhooks is not None:
        await webhooks.close()


def _versions(backplane: Backplane, keys: KeySpace, settings: Settings) -> Versions:
    return Versions(
        backplane,
        keys.history_log,
        max_versions=settings.history_versions,
        max_bytes=settings.history_max_bytes,
    )


async def _end_streams(app: web.Application) -> None:
    if FEED in app:
        app[FEED].end_streams()


def _catalog_gauges(cache: CatalogCache, now: float) -> CatalogGauges | None:
    entry = cache.local
    if entry is None:
        return None
    return CatalogGauges(
        age_seconds=cache.freshness.age(entry, now),
        fresh=cache.freshness.is_fresh(entry, now),
        size_bytes=len(entry.body),
    )
