"""The Redis tier as far as one replica sees it: sharing, isolation, Redis down or frozen."""

from __future__ import annotations

import json
import time

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from proxy.app import create_app
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import make_settings


async def test_replicas_sharing_redis_fetch_once(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    first = await make_proxy(redis_url=redis_server.url)
    second = await make_proxy(redis_url=redis_server.url)
    body = await (await first.get("/v1/products")).read()

    response = await second.get("/v1/products")

    assert await response.read() == body
    assert response.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert sandbox.state.products_requests == 1


async def test_keys_carry_prefix_and_account_hash(
    make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    client = await make_proxy(redis_url=redis_server.url, key_prefix="team-a")
    await client.get("/v1/products")
    keys = redis_server.key_names()
    assert keys
    assert all(key.startswith("team-a:") for key in keys), keys
    assert any(key.endswith(":catalog:v1") for key in keys), keys


async def test_two_accounts_sharing_redis_never_see_each_others_catalog(
    aiohttp_client: AiohttpClient, redis_server: RedisServer
) -> None:
    first, second = Sandbox(), Sandbox()
    await first.start()
    await second.start()
    try:
        second.state.catalog = [{**second.state.catalog[0], "product": "Only in account B"}]
        clients: list[TestClient[web.Request, web.Application]] = []
        for emulator in (first, second):
            settings = make_settings(emulator.url, redis_url=redis_server.url)
            clients.append(await aiohttp_client(create_app(settings)))
        bodies = [json.loads(await (await c.get("/v1/products")).read()) for c in clients]
        assert bodies[0] == first.state.catalog
        assert bodies[1] == second.state.catalog
        assert first.state.products_requests == second.state.products_requests == 1
    finally:
        await first.stop()
        await second.stop()


async def test_requests_are_served_while_redis_is_down_and_redis_is_used_again_after(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    client = await make_proxy(redis_url=redis_server.url, cache_ttl=0.3, redis_timeout=0.2)
    body = await (await client.get("/v1/products")).read()
    redis_server.stop()

    for _ in range(20):  # in-process copy, stale while the refresh goes to the upstream
        response = await client.get("/v1/products")
        assert response.status == 200
        assert await response.read() == body
    cold = await make_proxy(redis_url=redis_server.url, redis_timeout=0.2)
    response = await cold.get("/v1/products")
    assert response.status == 200, "a cold replica falls back to the upstream"
    ready = await (await client.get("/readyz")).json()
    assert ready["store"] == {"state": "degraded", "reachable": False}

    redis_server.start()
    ready_again = await client.get("/readyz")
    assert (await ready_again.json())["store"] == {"state": "ok", "reachable": True}
    fetched = sandbox.state.products_requests
    restarted = await make_proxy(redis_url=redis_server.url)
    await restarted.get("/v1/products")
    assert redis_server.key_names("*:catalog:v1"), "stored in the restarted Redis"
    reader = await make_proxy(redis_url=redis_server.url)
    hit = await reader.get("/v1/products")
    assert hit.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert sandbox.state.products_requests == fetched + 1


async def test_a_frozen_redis_costs_at_most_its_timeout(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    client = await make_proxy(redis_url=redis_server.url, redis_timeout=0.2)
    redis_server.pause()
    try:
        started = time.monotonic()
        response = await client.get("/v1/products")
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert response.status == 200
    assert json.loads(await response.read()) == sandbox.state.catalog
    assert elapsed < 1.0
    assert sandbox.state.products_requests == 1
