"""``GET /metrics``: valid Prometheus exposition whose values follow the traffic exactly."""

from __future__ import annotations

import asyncio
import platform
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from proxy import __version__
from proxy.catalog.service import CATALOG
from proxy.upstream.errors import UpstreamError
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.tools import tool
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
NS = "product_proxy"
ADMIN_TOKEN = "metrics-admin-token-0123456789"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Scrape:
    """One scrape of ``/metrics``: its text and every sample in it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: list[Sample] = [s for family in self.families for s in family.samples]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample with exactly this name and these labels (None: absent)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None

    def values(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample named ``name``, keyed by its sorted labels."""
        return {tuple(sorted(s.labels.items())): s.value for s in self.samples if s.name == name}

    def family_names(self) -> set[str]:
        return {family.name for family in self.families}


async def scrape(client: Client) -> Scrape:
    response = await client.get("/metrics")
    assert response.status == 200
    return Scrape(await response.text())


async def get_many(client: Client, path: str, count: int) -> list[int]:
    async def one() -> int:
        response = await client.get(path)
        await response.read()
        return response.status

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def promtool_check(text: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        tool("promtool"),
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(text.encode())
    assert process.returncode is not None
    return process.returncode, output.decode()


def label_values(samples: Iterable[Sample]) -> set[str]:
    return {value for sample in samples for value in sample.labels.values()}


async def test_content_type(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE


async def test_exposition_passes_promtool_after_traffic_touching_every_family(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    promtool = tool("promtool")  # skip (or fail in CI) before doing any work
    assert promtool
    client = await make_proxy(
        redis_url=redis_server.url,
        admin_token=ADMIN_TOKEN,
        cache_ttl=0.3,
        stale_ttl=0.6,
        upstream_retries=0,
        admin_refresh_interval=0,
    )
    faults = sandbox.state.faults
    # Cold burst against a slow upstream: one miss, the others collapsed onto it.
    faults.products_latency = 0.2
    assert await get_many(client, "/v1/products", 3) == [200, 200, 200]
    faults.products_latency = 0.0
    assert (await client.get("/v1/products")).status == 200  # hit
    for path, status in [
        ("/api/v1/products", 200),
        ("/api/v1/categories", 200),
        ("/api/v1/products/1001", 200),
        ("/healthz", 200),
        ("/readyz", 200),
        ("/openapi.json", 200),
        ("/no/such/path", 404),
    ]:
        assert (await client.get(path)).status == status, path
    assert (await client.post("/v1/products")).status == 405
    admin = await client.post("/admin/refresh", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status == 200
    fetched = sandbox.state.products_requests
    # Past freshness: stale served while the keeper's one refresh (due at the TTL, with no
    # traffic) is held in flight by a slow upstream.
    faults.products_latency = 0.3
    await asyncio.sleep(0.35)
    stale = await client.get("/v1/products")
    assert stale.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale")
    await eventually(lambda: sandbox.state.products_requests == fetched + 1)
    await eventually(lambda: not client.app[CATALOG].cache.refreshing)
    faults.products_latency = 0.0
    # An upstream 500 with a warm cache, set before the TTL passes: the keeper's refresh
    # fails, and the stale entry is still served.
    faults.products_status = 500
    await asyncio.sleep(0.35)
    assert (await client.get("/v1/products")).status == 200
    await eventually(lambda: sandbox.state.products_requests == fetched + 2)
    await eventually(lambda: not client.app[CATALOG].cache.refreshing)
    # Past stale_ttl too: nothing usable, the caller sees the cold upstream error.
    await asyncio.sleep(0.7)
    assert (await client.get("/v1/products")).status == 502
    # Redis goes away: errors counted, redis_up 0.
    redis_server.stop()
    await client.get("/readyz")

    metrics = await scrape(client)
    expected = {
        f"{NS}_{name}"
        for name in (
            "http_requests",
            "http_request_duration_seconds",
            "cache_lookups",
            "upstream_requests",
            "upstream_request_duration_seconds",
            "token_refreshes",
            "coalesced_waiters",
            "redis_errors",
            "build_info",
            "catalog_age_seconds",
            "catalog_fresh",
            "catalog_size_bytes",
            "redis_up",
        )
    }
    assert expected <= metrics.family_names()
    for result in ("hit", "miss", "stale", "collapsed", "error"):
        assert metrics.value(f"{NS}_cache_lookups_total", result=result), result
    for outcome in ("ok", "server_error"):
        assert metrics.value(
            f"{NS}_upstream_requests_total", endpoint="products", outcome=outcome
        ), outcome
    assert metrics.value(f"{NS}_redis_up") == 0
    assert metrics.value(f"{NS}_redis_errors_total", operation="ping") == 1

    code, output = await promtool_check(metrics.text)
    assert (code, output) == (0, ""), output


async def test_requests_counted_by_route_method_and_status(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    count = 7
    for _ in range(count):
        response = await client.get("/v1/products")
        assert response.status == 200
        await response.read()
    assert (await client.get("/healthz")).status == 200
    metrics = await scrape(client)
    requests = f"{NS}_http_requests_total"
    assert (
        metrics.value(
            requests, route="/v1/products", method="GET", caller="anonymous", status="200"
        )
        == count
    )
    assert (
        metrics.value(requests, route="/healthz", method="GET", caller="anonymous", status="200")
        == 1
    )
    # The scrape answering now is counted once it has answered, not in its own body.
    assert (
        metrics.value(requests, route="/metrics", method="GET", caller="anonymous", status="200")
        is None
    )
    duration = f"{NS}_http_request_duration_seconds"
    assert (
        metrics.value(f"{duration}_count", route="/v1/products", method="GET", caller="anonymous")
        == count
    )
    assert metrics.value(
        f"{duration}_bucket", route="/v1/products", method="GET", caller="anonymous", le="+Inf"
    ) == (count)
    again = await scrape(client)
    assert (
        again.value(requests, route="/metrics", method="GET", caller="anonymous", status="200") == 1
    )
    assert (
        again.value(requests, route="/v1/products", method="GET", caller="anonymous", status="200")
        == count
    )


async def test_junk_paths_and_methods_never_become_label_values(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    assert (await client.get("/warm-up-the-unmatched-series")).status == 404
    assert (await client.request("PROPFIND", "/v1/products")).status == 405
    before = await scrape(client)
    junk = [f"/junk-{uuid.uuid4().hex}/{index}" for index in range(50)]
    for path in junk:
        response = await client.get(path)
        assert response.status == 404
        await response.read()
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        response = await client.request(method, "/v1/products")
        assert response.status == 405
        await response.read()
    # A route with a variable part is counted by its template, whatever the caller put there.
    bad_ids = [f"x{uuid.uuid4().hex}" for _ in range(20)]
    for bad_id in bad_ids:
        response = await client.get(f"/api/v1/products/{bad_id}")
        assert response.status == 400
        await response.read()
    after = await scrape(client)

    series = {(s.name, tuple(sorted(s.labels.items()))) for s in before.samples}
    series_after = {(s.name, tuple(sorted(s.labels.items()))) for s in after.samples}
    # Only the first scrape of /metrics itself and the first bad id added series.
    added = series_after - series
    routes = {dict(labels).get("route") for _, labels in added}
    assert routes == {"/metrics", "/api/v1/products/{id}"}, added
    requests = f"{NS}_http_requests_total"
    assert (
        after.value(requests, route="unmatched", method="GET", caller="anonymous", status="404")
        == 51
    )
    assert (
        after.value(requests, route="unmatched", method="other", caller="anonymous", status="405")
        == 4
    )
    assert (
        after.value(
            requests, route="/api/v1/products/{id}", method="GET", caller="anonymous", status="400"
        )
        == 20
    )
    for path in junk:
        assert path.split("/")[1] not in after.text
    for bad_id in bad_ids:
        assert bad_id not in after.text
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        assert method not in label_values(after.samples)


async def test_cache_lookups_follow_a_scripted_sequence(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=1.0)
    sandbox.state.faults.products_latency = 0.3
    statuses = await get_many(client, "/v1/products", 20)
    assert statuses == [200] * 20
    sandbox.state.faults.products_latency = 0.0
    assert sandbox.state.products_requests == 1
    metrics = await scrape(client)
    lookups = f"{NS}_cache_lookups_total"
    # Every result's series exists from the start (at 0), so rate() works on it at once.
    assert metrics.values(lookups) == {
        (("result", "miss"),): 1,
        (("result", "collapsed"),): 19,
        (("result", "hit"),): 0,
        (("result", "stale"),): 0,
        (("result", "error"),): 0,
    }
    assert metrics.value(f"{NS}_coalesced_waiters_total", scope="process") == 19

    for _ in range(5):
        response = await client.get("/v1/products")
        assert response.headers["Cache-Status"].startswith("1nce-proxy; hit")
    metrics = await scrape(client)
    assert metrics.value(lookups, result="hit") == 5

    # A slow upstream holds the keeper's refresh (due at the TTL, with no traffic) in flight,
    # so the next caller is answered stale; that refresh is a fill, not a caller's lookup.
    sandbox.state.faults.products_latency = 0.5
    await asyncio.sleep(1.05)
    response = await client.get("/v1/products")
    assert response.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale")
    await eventually(lambda: sandbox.state.products_requests == 2)
    await eventually(lambda: not client.app[CATALOG].cache.refreshing)
    response = await client.get("/v1/products")
    assert response.headers["Cache-Status"].startswith("1nce-proxy; hit")
    metrics = await scrape(client)
    assert metrics.values(lookups) == {
        (("result", "miss"),): 1,
        (("result", "collapsed"),): 19,
        (("result", "hit"),): 6,
        (("result", "stale"),): 1,
        (("result", "error"),): 0,
    }


async def test_upstream_and_token_counters_match_the_sandbox(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(upstream_retries=0)
    service = client.app[CATALOG]
    state = sandbox.state
    assert (await client.get("/v1/products")).status == 200  # token ok, products ok
    state.faults.products_status = 500
    with pytest.raises(UpstreamError):
        await service.refresh()  # products server_error
    state.faults.products_status = None
    await service.refresh()  # products ok
    state.revoke_tokens()
    await service.refresh()  # products unauthorized, token ok, products ok
    state.revoke_tokens()
    state.faults.token_status = 400
    with pytest.raises(UpstreamError):
        await service.refresh()  # products unauthorized, token client_error

    metrics = await scrape(client)
    upstream = f"{NS}_upstream_requests_total"
    assert metrics.values(upstream) == {
        (("endpoint", "products"), ("outcome", "ok")): 3,
        (("endpoint", "products"), ("outcome", "server_error")): 1,
        (("endpoint", "products"), ("outcome", "unauthorized")): 2,
        (("endpoint", "token"), ("outcome", "ok")): 2,
        (("endpoint", "token"), ("outcome", "client_error")): 1,
    }
    # Every request the sandbox received is counted once, under one outcome.
    counted = metrics.values(upstream)
    for endpoint, received in (
        ("products", state.products_requests),
        ("token", state.token_requests),
    ):
        assert sum(v for labels, v in counted.items() if ("endpoint", endpoint) in labels) == (
            received
        )
    assert state.products_requests == 6
    assert state.token_requests == 3
    assert state.tokens_issued == 2
    assert metrics.values(f"{NS}_token_refreshes_total") == {
        (("result", "ok"),): state.tokens_issued,
        (("result", "failed"),): 1,
    }
    # Each histogram counts exactly the events its counter counts.
    seconds = f"{NS}_upstream_request_duration_seconds"
    assert metrics.value(f"{seconds}_count", endpoint="products") == state.products_requests
    assert metrics.value(f"{seconds}_count", endpoint="token") == state.token_requests
    requests = metrics.values(f"{NS}_http_requests_total")
    durations = metrics.values(f"{NS}_http_request_duration_seconds_count")
    by_route: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in requests.items():
        key = tuple(item for item in labels if item[0] != "status")
        by_route[key] = by_route.get(key, 0) + value
    assert durations == by_route


async def test_catalog_gauges_and_build_info(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    client = await make_proxy(cache_ttl=0.5, upstream_retries=0)
    metrics = await scrape(client)
    for name in ("catalog_age_seconds", "catalog_fresh", "catalog_size_bytes"):
        assert metrics.values(f"{NS}_{name}") == {}, name
    assert metrics.values(f"{NS}_build_info") == {
        (("python", platform.python_version()), ("version", __version__)): 1
    }
    assert metrics.value(f"{NS}_redis_up") is None  # no Redis configured

    response = await client.get("/v1/products")
    body = await response.read()
    metrics = await scrape(client)
    age = metrics.value(f"{NS}_catalog_age_seconds")
    assert age is not None
    assert 0 <= age < 0.5
    assert metrics.value(f"{NS}_catalog_fresh") == 1
    assert metrics.value(f"{NS}_catalog_size_bytes") == len(body)

    # Failing before the TTL passes: the keeper's refresh at the TTL fails, so the entry
    # really goes stale (a working upstream would be refreshed ahead, with no traffic).
    sandbox.state.faults.products_status = 500
    cache = client.app[CATALOG].cache
    await asyncio.sleep(0.55)
    await eventually(lambda: sandbox.state.products_requests == 2 and not cache.refreshing)
    metrics = await scrape(client)
    assert metrics.value(f"{NS}_catalog_fresh") == 0
    age = metrics.value(f"{NS}_catalog_age_seconds")
    assert age is not None
    assert age >= 0.5
    # The first fetch and the keeper's one failed refresh: scrapes never fetch.
    assert sandbox.state.products_requests == 2


async def test_process_platform_and_gc_series_describe_this_process(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    metrics = await scrape(client)
    rss = metrics.value("process_resident_memory_bytes")
    assert rss is not None
    assert rss == pytest.approx(_own_rss_bytes(), rel=0.5)
    cpu = metrics.value("process_cpu_seconds_total")
    assert cpu is not None
    assert cpu > 0
    open_fds = metrics.value("process_open_fds")
    assert open_fds is not None
    assert open_fds == pytest.approx(_own_open_fds(), abs=10)
    version = platform.python_version_tuple()
    info = metrics.values("python_info")
    assert [dict(labels)["version"] for labels in info] == [".".join(version)]
    generations = {
        dict(labels)["generation"] for labels in metrics.values("python_gc_collections_total")
    }
    assert generations == {"0", "1", "2"}


def _own_open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def _own_rss_bytes() -> float:
    fields = Path("/proc/self/status").read_text().split("VmRSS:", 1)[1].split()
    assert fields[1] == "kB"
    return float(fields[0]) * 1024


async def test_redis_errors_and_redis_up_follow_redis(
    make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    client = await make_proxy(redis_url=redis_server.url)
    assert (await client.get("/v1/products")).status == 200
    assert (await client.get("/readyz")).status == 200
    metrics = await scrape(client)
    assert metrics.value(f"{NS}_redis_up") == 1
    assert metrics.values(f"{NS}_redis_errors_total") == {}

    redis_server.stop()
    readiness = await client.get("/readyz")
    report = await readiness.json()
    assert report["store"] == {"state": "degraded", "reachable": False}
    metrics = await scrape(client)
    assert metrics.value(f"{NS}_redis_up") == 0
    assert metrics.value(f"{NS}_redis_errors_total", operation="ping") == 1

    redis_server.start()
    readiness = await client.get("/readyz")
    report = await readiness.json()
    assert report["store"] == {"state": "ok", "reachable": True}
    metrics = await scrape(client)
    assert metrics.value(f"{NS}_redis_up") == 1
    assert metrics.value(f"{NS}_redis_errors_total", operation="ping") == 1
