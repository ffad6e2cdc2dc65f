"""GET /v1/products: cold stampedes, TTL hits, stale-while-revalidate, conditional requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import pytest

from proxy.catalog.service import CATALOG
from tests.support.load import burst
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually


def _backend(request: pytest.FixtureRequest, backend: str) -> dict[str, Any]:
    if backend == "memory":
        return {}
    server: RedisServer = request.getfixturevalue("redis_server")
    return {"redis_url": server.url}


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_cold_stampede_makes_one_upstream_fetch(
    request: pytest.FixtureRequest, backend: str, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    # The upstream is slow, so the 500 callers arrive while the fetch runs (connections past
    # the listen backlog are retried by the kernel after 1 s, hence more than that).
    sandbox.state.faults.products_latency = 1.5
    client = await make_proxy(**_backend(request, backend))

    replies = await burst(str(client.make_url("/v1/products")), 500)

    assert [reply.status for reply in replies] == [200] * 500
    assert len({reply.body for reply in replies}) == 1
    assert json.loads(replies[0].body) == sandbox.state.catalog
    assert sandbox.state.products_requests == 1
    assert sandbox.state.token_requests == 1
    outcomes = Counter(reply.headers["Cache-Status"] for reply in replies)
    assert outcomes["1nce-proxy; fwd=miss; stored"] == 1
    assert outcomes["1nce-proxy; fwd=miss; stored; collapsed"] >= 400, outcomes
    assert {reply.headers["ETag"] for reply in replies} == {replies[0].headers["ETag"]}


async def test_body_and_content_type_are_the_upstreams(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.get("/v1/products")
    body = await response.read()
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert json.loads(body) == sandbox.state.catalog
    assert response.headers["Cache-Status"] == "1nce-proxy; fwd=miss; stored"
    assert response.headers["Age"] == "0"
    assert response.headers["Cache-Control"] in {"max-age=299", "max-age=300"}


async def test_fresh_catalog_is_served_without_upstream_calls(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=60)
    first = await client.get("/v1/products")
    first_body = await first.read()
    for _ in range(50):
        response = await client.get("/v1/products")
        assert await response.read() == first_body
        assert response.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
        assert response.headers["ETag"] == first.headers["ETag"]
    assert sandbox.state.products_requests == 1
    assert sandbox.state.token_requests == 1


async def test_stale_entry_is_served_at_once_while_one_refresh_runs(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.5, upstream_timeout=5)
    old = await (await client.get("/v1/products")).read()
    # Slowed before the TTL passes: the keeper's refresh at the TTL (no traffic needed) is
    # still in flight when the burst comes, so the burst sees the stale entry.
    sandbox.state.catalog = [{**sandbox.state.catalog[0], "product": "Renamed"}]
    sandbox.state.faults.products_latency = 3.0
    await asyncio.sleep(0.6)

    started = time.monotonic()
    replies = await burst(str(client.make_url("/v1/products")), 100)
    elapsed = time.monotonic() - started

    # The refresh lands about 2.9 s after the burst starts; a burst that waited on it would
    # take that long (the bound leaves room for a loaded machine, not for a wait).
    assert elapsed < 2.0, "stale answers must not wait for the refresh"
    assert {reply.body for reply in replies} == {old}
    assert all(
        reply.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale; ttl=-")
        for reply in replies
    )
    assert all(reply.headers["Cache-Control"] == "max-age=0" for reply in replies)
    await eventually(lambda: sandbox.state.products_requests == 2)
    cache = client.app[CATALOG].cache
    # The refresh lands after the upstream's latency.
    await eventually(lambda: not cache.refreshing)

    fresh = await client.get("/v1/products")
    assert json.loads(await fresh.read())[0]["product"] == "Renamed"
    assert fresh.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert sandbox.state.products_requests == 2


async def test_if_none_match_gets_304(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    identity = {"Accept-Encoding": "identity"}
    first = await client.get("/v1/products", headers=identity)
    etag = first.headers["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = await client.get("/v1/products", headers={**identity, "If-None-Match": header})
        assert response.status == 304, header
        assert await response.read() == b""
        assert response.headers["ETag"] == etag
        assert response.headers["Cache-Status"].startswith("1nce-proxy; hit")
    other = await client.get("/v1/products", headers={"If-None-Match": '"other"'})
    assert other.status == 200
    assert await other.read() == await first.read()


async def test_caller_authorization_never_goes_upstream(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.get("/v1/products", headers={"Authorization": "Bearer caller-key"})
    assert response.status == 200
    assert len(sandbox.state.products_authorizations) == 1
    sent = sandbox.state.products_authorizations[0]
    assert sent.startswith("Bearer ")
    assert "caller-key" not in sent
    assert len(sent) > 1000  # the sandbox's ~3 KB token, not anything of the caller's


async def test_retry_after_a_5xx_gets_the_catalog(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    sandbox.state.faults.products_status = 503
    sandbox.state.faults.times = 1
    client = await make_proxy()
    response = await client.get("/v1/products")
    assert response.status == 200
    assert json.loads(await response.read()) == sandbox.state.catalog
    assert sandbox.state.products_requests == 2
