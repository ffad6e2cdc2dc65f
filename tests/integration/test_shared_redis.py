"""Replicas in one process sharing a Redis: one fetch, one token, one refresh per deployment."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.catalog import service as service_module
from proxy.catalog.service import CATALOG
from proxy.upstream.models import Product, parse_catalog
from tests.support.load import burst
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]


async def _replicas(make_proxy: MakeProxy, count: int, **settings: object) -> list[Client]:
    return [await make_proxy(**settings) for _ in range(count)]


async def test_cold_stampede_over_three_replicas_fetches_once(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    sandbox.state.faults.products_latency = 1.0
    replicas = await _replicas(make_proxy, 3, redis_url=redis_server.url)
    bursts = [burst(str(r.make_url("/v1/products")), 100) for r in replicas]

    replies = [reply for group in await asyncio.gather(*bursts) for reply in group]

    assert [reply.status for reply in replies] == [200] * 300
    assert len({reply.body for reply in replies}) == 1
    assert sandbox.state.products_requests == 1
    assert sandbox.state.token_requests == 1


async def test_replicas_share_one_token(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    first, second = await _replicas(make_proxy, 2, redis_url=redis_server.url)
    await first.app[CATALOG].refresh()
    await second.app[CATALOG].refresh()
    assert sandbox.state.products_requests == 2
    assert sandbox.state.token_requests == 1
    assert len(set(sandbox.state.products_authorizations)) == 1


async def test_a_refused_token_is_replaced_once_for_all_replicas(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    first, second = await _replicas(make_proxy, 2, redis_url=redis_server.url)
    await first.app[CATALOG].refresh()
    await second.app[CATALOG].refresh()
    sandbox.state.revoke_tokens()

    await first.app[CATALOG].refresh()  # 401, discards the shared token, fetches a new one
    await second.app[CATALOG].refresh()  # 401 on its copy; the shared one is already new

    assert sandbox.state.token_requests == 2
    authorizations = sandbox.state.products_authorizations
    assert len(authorizations) == 6  # 2 fetches, then 2 x (401 + retry)
    assert authorizations[3] == authorizations[5], "both replicas use the replacement"


async def test_stale_refresh_runs_once_per_deployment(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    replicas = await _replicas(make_proxy, 3, redis_url=redis_server.url, cache_ttl=0.5)
    await replicas[0].get("/v1/products")
    for replica in replicas[1:]:
        await replica.get("/v1/products")
    assert sandbox.state.products_requests == 1
    sandbox.state.catalog = sandbox.state.catalog[:5]
    # A slow upstream: the other keepers find the lock held and wait for the announcement.
    sandbox.state.faults.products_latency = 0.2

    # No traffic at all: every keeper sees the entry go stale at the same moment.
    await asyncio.sleep(2.4)

    # An entry is fresh for 0.5 s from its stamp, taken once its fetch has answered (0.2 s
    # later): deployment fetches are at least 0.7 s apart, the first 0.5 s in, so at most 3
    # fit in 2.4 s (one per replica would be up to 9); keepers 0.6 s late each still make 2.
    refreshes = sandbox.state.products_requests - 1
    assert 2 <= refreshes <= 3, refreshes
    caches = [replica.app[CATALOG].cache for replica in replicas]
    await eventually(lambda: not any(cache.refreshing for cache in caches))
    etags = {cache.local.etag if cache.local is not None else None for cache in caches}
    assert len(etags) == 1, "every replica adopted the one stored entry"
    for replica in replicas:
        body = await (await replica.get("/v1/products")).read()
        assert json.loads(body) == sandbox.state.catalog


async def test_a_refresh_on_one_replica_reaches_the_others_before_their_ttl(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    first, second = await _replicas(make_proxy, 2, redis_url=redis_server.url, cache_ttl=300)
    await first.get("/v1/products")
    await second.get("/v1/products")
    sandbox.state.catalog = sandbox.state.catalog[:2]

    await first.app[CATALOG].refresh()

    async def second_has_new() -> bool:
        body = await (await second.get("/v1/products")).read()
        return bool(json.loads(body) == sandbox.state.catalog)

    deadline = time.monotonic() + 3
    while not await second_has_new():
        assert time.monotonic() < deadline, "the announcement did not reach the other replica"
        await asyncio.sleep(0.05)
    assert sandbox.state.products_requests == 2


async def test_a_dead_holders_lock_delays_the_fill_only_until_it_expires(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    warm = await make_proxy(redis_url=redis_server.url)
    await warm.get("/v1/products")
    catalog_key = next(key for key in redis_server.key_names() if key.endswith(":catalog:v1"))
    assert redis_server.command("DEL", catalog_key) == 1
    # A replica that took the lock and died: nobody releases it, it expires in 1 s.
    assert redis_server.command("SET", f"{catalog_key}:lock", "gone-replica:1:x", "PX", "1000")
    cold = await make_proxy(redis_url=redis_server.url)

    started = time.monotonic()
    response = await cold.get("/v1/products")
    elapsed = time.monotonic() - started

    assert response.status == 200
    assert json.loads(await response.read()) == sandbox.state.catalog
    assert 0.8 <= elapsed < 2.0, elapsed
    assert sandbox.state.products_requests == 2


async def test_a_version_is_parsed_once_by_the_replica_that_fetched_it_and_once_by_others(
    sandbox: Sandbox,
    make_proxy: MakeProxy,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[bytes] = []

    def counting_parse(body: bytes) -> tuple[Product, ...]:
        parsed.append(body)
        return parse_catalog(body)

    # Only the view's parse is counted: the client validates with PRODUCTS' own parser.
    monkeypatch.setattr(service_module, "parse_catalog", counting_parse)
    fetcher, reader = await _replicas(make_proxy, 2, redis_url=redis_server.url)

    for replica in (fetcher, reader, fetcher, reader):
        body = await (await replica.get("/api/v1/products")).json()
        assert body["count"] == len(sandbox.state.catalog)
    assert sandbox.state.products_requests == 1
    assert len(parsed) == 1, "only the replica that read the store parses, and only once"

    sandbox.state.catalog = sandbox.state.catalog[:2]
    await fetcher.app[CATALOG].refresh()
    assert (await (await fetcher.get("/api/v1/products")).json())["count"] == 2
    assert len(parsed) == 1

    async def reader_count() -> int:
        return int((await (await reader.get("/api/v1/products")).json())["count"])

    deadline = time.monotonic() + 3
    while await reader_count() != 2:
        assert time.monotonic() < deadline, "the announcement did not reach the other replica"
        await asyncio.sleep(0.05)
    assert len(parsed) == 2
    assert json.loads(parsed[1]) == sandbox.state.catalog
