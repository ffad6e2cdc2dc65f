"""Prometheus metrics on a registry the application owns (tests never share counters)."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from proxy import __version__

NAMESPACE = "product_proxy"
# Prometheus 2 and 3 both read the classic text format; say so explicitly.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Label values come from fixed sets only, so a caller can never grow the series count.
MAX_CACHED_CHILDREN = 1024
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


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
        redis_up = self.redis_up()
        if redis_up is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_redis_up",
                "1 while Redis answers, 0 while the breaker keeps it out of use.",
                value=1.0 if redis_up else 0.0,
            )


class Metrics:
    """Every metric the service exports, with one method per event that moves them."""

    def __init__(self) -> None:
        """Create the metrics on a new registry."""
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter(
            "http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=HTTP_BUCKETS,
        )
        self._lookups = Counter(
            "cache_lookups",
            "Catalog lookups by result: hit, miss, stale, collapsed, error.",
            ["result"],
            namespace=NAMESPACE,
            registry=registry,
        )
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
        self._redis_errors = Counter(
            "redis_errors",
            "Redis calls that failed or timed out, by operation.",
            ["operation"],
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
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        # Results come from the cache's own fixed set (hit, miss, stale, collapsed, error).
        self._lookup_children: dict[str, Counter] = {}
        self._state = _StateCollector()
        registry.register(self._state)

    def render(self) -> bytes:
        """Render every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def watch_catalog(self, source: Callable[[], CatalogGauges | None]) -> None:
        """Read catalog gauges from ``source`` at every scrape."""
        self._state.catalog = source

    def watch_redis(self, source: Callable[[], bool]) -> None:
        """Read whether Redis is up from ``source`` at every scrape."""
        self._state.redis_up = source

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count an answered HTTP request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            # Looking the labelled children up once per label set keeps the hit path cheap;
            # the set is bounded (route templates, fixed methods, status codes).
            label = method if method in METHODS else "other"
            children = (
                self._requests.labels(route, label, str(status)),
                self._request_seconds.labels(route, label),
            )
            if len(self._request_children) < MAX_CACHED_CHILDREN:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def lookup(self, result: str) -> None:
        """Count a catalog lookup by how it was answered."""
        child = self._lookup_children.get(result)
        if child is None:
            child = self._lookup_children[result] = self._lookups.labels(result)
        child.inc()

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
