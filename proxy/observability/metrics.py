"""Prometheus metrics on a registry the application owns (tests never share counters)."""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from proxy import __version__

NAMESPACE = "product_proxy"
# Prometheus 2 and 3 both read the classic text format; say so explicitly.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# The "le" label values of HTTP_BUCKETS, as prometheus_client writes them (1 -> "1.0").
HTTP_LE = (*(repr(float(bound)) for bound in HTTP_BUCKETS), "+Inf")
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Label values come from fixed sets only, so a caller can never grow the series count: other
# methods are counted as "other", routes are templates, statuses are the service's own.
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
LOOKUP_RESULTS = ("hit", "miss", "stale", "collapsed", "error")


@dataclass(frozen=True, slots=True)
class CatalogGauges:
    """What the scrape-time collector reads about the cached catalog (None: nothing cached)."""

    age_seconds: float
    fresh: bool
    size_bytes: int


class _StateCollector:
    """Reads catalog and Redis state when scraped, so gauges are never out of date."""

    def __init__(self) -> None:
        self.catalog: Callable[[], CatalogGauges | None] = lambda: None
        self.redis_up: Callable[[], bool | None] = lambda: None
        self.streams: Callable[[], int | None] = lambda: None
        self.key_file_usable: Callable[[], bool | None] = lambda: None

    def collect(self) -> Iterable[Metric]:
        catalog = self.catalog()
        age = GaugeMetricFamily(
            f"{NAMESPACE}_catalog_age_seconds",
            "Seconds since the catalog this process serves was fetched.",
        )
        fresh = GaugeMetricFamily(
            f"{NAMESPACE}_catalog_fresh", "1 while the catalog served is within its TTL."
        )
        size = GaugeMetricFamily(
            f"{NAMESPACE}_catalog_size_bytes", "Size of the catalog body served, in bytes."
        )
        if catalog is not None:
            age.add_metric([], catalog.age_seconds)
            fresh.add_metric([], 1.0 if catalog.fresh else 0.0)
            size.add_metric([], float(catalog.size_bytes))
        yield from (age, fresh, size)
        streams = self.streams()
        if streams is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_event_streams",
                "Event streams (GET /api/v1/events) open on this replica.",
                value=float(streams),
            )
        redis_up = self.redis_up()
        if redis_up is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_redis_up",
                "1 while Redis answers, 0 while the breaker keeps it out of use.",
                value=1.0 if redis_up else 0.0,
            )
        key_file_usable = self.key_file_usable()
        if key_file_usable is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_api_keys_file_usable",
                "1 while PROXY_API_KEYS_FILE was usable at its last read, 0 while the keys last "
                "read from it stay in force because it is missing or cannot be parsed.",
                value=1.0 if key_file_usable else 0.0,
            )


class _Timing:
    """One duration histogram series: observations per bucket (not cumulative) and their sum."""

    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(HTTP_BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.created = time.time()


class _Requests:
    """One request counter series and the duration series it feeds."""

    __slots__ = ("count", "created", "timing")

    def __init__(self, timing: _Timing) -> None:
        self.count = 0
        self.timing = timing
        self.created = time.time()


class _HotPathCollector:
    """Request counts and durations and cache lookups, kept as plain numbers between scrapes.

    These move on every request, cache hits included, where prometheus_client's labelled
    children (a lock and several calls per update) cost more than the rest of the hit path
    (docs/speed.md). The event loop is the only writer and scrapes run on it too, so plain
    integers are safe; the exposition is the same as Counter and Histogram would give.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int, str], _Requests] = {}
        self.timings: dict[tuple[str, str, str], _Timing] = {}
        self.lookups = dict.fromkeys(LOOKUP_RESULTS, 0)
        self.lookups_created = time.time()

    def series(self, route: str, method: str, status: int, caller: str) -> _Requests:
        timing = self.timings.get((route, method, caller))
        if timing is None:
            timing = self.timings[route, method, caller] = _Timing()
        series = self.requests[route, method, status, caller] = _Requests(timing)
        return series

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            f"{NAMESPACE}_http_requests",
            "HTTP requests answered, by route template, method, status and caller.",
            labels=["route", "method", "status", "caller"],
        )
        for (route, method, status, caller), series in list(self.requests.items()):
            requests.add_metric([route, method, str(status), caller], series.count, series.created)
        durations = HistogramMetricFamily(
            f"{NAMESPACE}_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels=["route", "method", "caller"],
        )
        for (route, method, caller), timing in list(self.timings.items()):
            cumulative = accumulate(timing.buckets)
            durations.add_metric(
                [route, method, caller],
                list(zip(HTTP_LE, cumulative, strict=True)),
                timing.total,
            )
            # As prometheus_client's own Histogram exposes it.
            durations.add_sample(
                f"{durations.name}_created",
                {"route": route, "method": method, "caller": caller},
                timing.created,
            )
        lookups = CounterMetricFamily(
            f"{NAMESPACE}_cache_lookups",
            "Catalog lookups by result: hit, miss, stale, collapsed, error.",
            labels=["result"],
        )
        for result, count in self.lookups.items():
            lookups.add_metric([result], count, self.lookups_created)
        yield from (requests, durations, lookups)


class Metrics:
    """Every metric the service exports, with one method per event that moves them."""

    def __init__(self) -> None:
        """Create the metrics on a new registry."""
        self.registry = CollectorRegistry()
        registry = self.registry
        # The standard process_* (memory, CPU, open files), python_info and python_gc_*
        # series, on this registry rather than the library's global one.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self._hot = _HotPathCollector()
        registry.register(self._hot)
        self._upstream = Counter(
            "upstream_requests",
            "Requests sent to the 1NCE API, by endpoint and outcome.",
            ["endpoint", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._upstream_seconds = Histogram(
            "upstream_request_duration_seconds",
            "Time the 1NCE API took to answer.",
            ["endpoint"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=UPSTREAM_BUCKETS,
        )
        self._token_refreshes = Counter(
            "token_refreshes",
            "OAuth tokens fetched from the 1NCE API, by result.",
            ["result"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._waiters = Counter(
            "coalesced_waiters",
            "Fills that waited on another's fetch: in this process, or on another replica.",
            ["scope"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._pubsub_restarts = Counter(
            "pubsub_restarts",
            "Times the pub/sub listener reconnected, by reason.",
            ["reason"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._clock_skew = Counter(
            "clock_skew_events",
            "Shared entries stamped in this replica's future, taken as stamped when first seen.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._rate_limited = Counter(
            "upstream_rate_limit_windows",
            "Retry-After windows recorded, by endpoint and where they were learned.",
            ["endpoint", "source"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._redis_errors = Counter(
            "redis_errors",
            "Redis calls that failed or timed out, by operation.",
            ["operation"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._catalog_version = Gauge(
            "catalog_version",
            "The deployment's current catalog version, as this replica last read it.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self._catalog_changes = Counter(
            "catalog_changes",
            "Products added, removed and changed by new catalog versions (counted by the "
            "replica that recorded each version, so a sum over replicas counts each once).",
            ["kind"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._webhooks = Counter(
            "webhook_deliveries",
            "Webhook delivery attempts by target (scheme, host and port) and outcome.",
            ["target", "outcome"],
            namespace=NAMESPACE,
            registry=registry,
        )
        build = Gauge(
            "build_info",
            "Always 1; labels say which build runs.",
            ["version", "python"],
            namespace=NAMESPACE,
            registry=registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self._state = _StateCollector()
        registry.register(self._state)

    def render(self) -> bytes:
        """Render every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def watch_catalog(self, source: Callable[[], CatalogGauges | None]) -> None:
        """Read catalog gauges from ``source`` at every scrape."""
        self._state.catalog = source

    def watch_streams(self, source: Callable[[], int]) -> None:
        """Read how many event streams are open from ``source`` at every scrape."""
        self._state.streams = source

    def watch_key_file(self, source: Callable[[], bool | None]) -> None:
        """Read whether the API key file is usable from ``source`` at every scrape."""
        self._state.key_file_usable = source

    def watch_redis(self, source: Callable[[], bool]) -> None:
        """Read whether Redis is up from ``source`` at every scrape."""
        self._state.redis_up = source

    def request(self, route: str, method: str, status: int, seconds: float, caller: str) -> None:
        """Count an answered HTTP request by its caller, and how long it took.

        ``caller`` is a configured key name, ``anonymous`` or ``unauthenticated``: never
        anything a caller can choose, so the number of series stays bounded.
        """
        if method not in METHODS:
            method = "other"
        series = self._hot.requests.get((route, method, status, caller))
        if series is None:
            series = self._hot.series(route, method, status, caller)
        series.count += 1
        timing = series.timing
        timing.total += seconds
        # Prometheus buckets are upper bounds ("le"): the first bound >= seconds takes it.
        timing.buckets[bisect_left(HTTP_BUCKETS, seconds)] += 1

    def lookup(self, result: str) -> None:
        """Count a catalog lookup by how it was answered (one of ``LOOKUP_RESULTS``)."""
        self._hot.lookups[result] += 1

    def upstream(self, endpoint: str, outcome: str, seconds: float) -> None:
        """Count a request to the 1NCE API and how long it took."""
        self._upstream.labels(endpoint, outcome).inc()
        self._upstream_seconds.labels(endpoint).observe(seconds)

    def token_refresh(self, *, ok: bool) -> None:
        """Count a token fetch."""
        self._token_refreshes.labels("ok" if ok else "failed").inc()

    def waiter(self, scope: str) -> None:
        """Count a fill that waited on someone else's fetch (``process`` or ``deployment``)."""
        self._waiters.labels(scope).inc()

    def redis_error(self, operation: str) -> None:
        """Count a failed Redis call."""
        self._redis_errors.labels(operation).inc()

    def pubsub_restart(self, reason: str) -> None:
        """Count a reconnect of the pub/sub listener (``error``, ``silent`` or ``junk``)."""
        self._pubsub_restarts.labels(reason).inc()

    def clock_skew(self) -> None:
        """Count a shared entry found stamped in this replica's future."""
        self._clock_skew.inc()

    def rate_limit_window(self, endpoint: str, source: str) -> None:
        """Count a Retry-After window seen (``upstream``) or adopted from the store (``shared``)."""
        self._rate_limited.labels(endpoint, source).inc()

    def catalog_version(self, version: int) -> None:
        """Set the current catalog version this replica knows of."""
        self._catalog_version.set(version)

    def catalog_changes(self, *, added: int, removed: int, changed: int) -> None:
        """Count the products a new catalog version added, removed and changed."""
        for kind, count in (("added", added), ("removed", removed), ("changed", changed)):
            self._catalog_changes.labels(kind).inc(count)

    def webhook_delivery(self, target: str, outcome: str) -> None:
        """Count a webhook attempt: ``delivered``, ``retried``, ``failed`` or ``dropped``.

        ``target`` is the receiver's scheme, host and port, never its path or query (which
        may hold a secret); the targets come from settings, so the series are bounded.
        """
        self._webhooks.labels(target, outcome).inc()


METRICS = web.AppKey("metrics", Metrics)
"""Where an application keeps its metrics."""
