"""Self-healing with a shared Redis: clocks that disagree, cheap stale serving, the token margin."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import redis.asyncio as redis_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from proxy.backplane.keys import KeySpace
from proxy.cache.entry import CatalogEntry
from proxy.catalog.service import CATALOG
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.settings import SETTINGS
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
HOUR = 3600.0


def _keys(client: Client) -> KeySpace:
    settings = client.app[SETTINGS]
    return KeySpace(settings.key_prefix, settings.account_hash)


async def _redis(server: RedisServer) -> redis_asyncio.Redis:
    return redis_asyncio.Redis.from_url(server.url)


def _sample(metrics_text: str, name: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_an_entry_stamped_an_hour_ahead_goes_stale_on_this_clock(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    client = await make_proxy(
        redis_url=redis_server.url, cache_ttl=1.0, admin_token=SecretStr("adm")
    )
    # The keeper's refresh takes 1 s: long enough to see the entry stale meanwhile.
    sandbox.state.faults.products_latency = 1.0
    # What a replica whose clock runs an hour ahead stores.
    body = json.dumps(sandbox.state.catalog).encode()
    ahead = CatalogEntry.create(body, "application/json", time.time() + HOUR)
    db = await _redis(redis_server)
    try:
        await db.set(_keys(client).catalog, ahead.to_bytes(), px=600_000)

        first = await client.get("/v1/products")
        assert first.status == 200
        assert first.headers["Age"] == "0"
        assert first.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
        cache = client.app[CATALOG].cache
        assert cache.local is not None
        seen_at = cache.local.fetched_at
        assert seen_at <= time.time(), "taken as stamped when first seen, not an hour ahead"
        sandbox.state.catalog = sandbox.state.catalog[:3]
        await asyncio.sleep(1.3)
        # Stale on this clock after cache_ttl: the keeper refreshes with no traffic (stale for
        # an hour, it would not have asked before then).
        assert sandbox.state.products_requests == 1, "no refresh once stale on this clock"
        # Re-read from the store (an announcement), the same entry is not taken as newer.
        cache.shared_changed()
        later = await client.get("/v1/products")
        assert later.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale; ttl=-")
        assert int(later.headers["Age"]) >= 1

        metrics = await (await client.get("/metrics")).text()
        assert _sample(metrics, "product_proxy_clock_skew_events_total") == 1.0
        assert _sample(metrics, "product_proxy_catalog_age_seconds") >= 1.0

        # The refresh lands: a fresh entry of this replica's own, stamped on its clock.
        await eventually(lambda: cache.local is not None and cache.local.fetched_at > seen_at)
        fresh = await client.get("/v1/products")
        assert fresh.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
        assert fresh.headers["Age"] == "0"
        assert json.loads(await fresh.read()) == sandbox.state.catalog
        assert cache.local is not None
        assert cache.local.fetched_at <= time.time()
        assert sandbox.state.products_requests == 1

        # An operator's refresh replaces it, whatever the stamp says.
        sandbox.state.faults.products_latency = 0.0
        sandbox.state.catalog = sandbox.state.catalog[:2]
        refreshed = await client.post("/admin/refresh", headers={"Authorization": "Bearer adm"})
        assert refreshed.status == 200
        assert (await refreshed.json())["collapsed"] is False
        answer = await client.get("/api/v1/products")
        assert (await answer.json())["count"] == 2
    finally:
        await db.aclose()


async def test_stale_serving_reads_the_store_about_once_a_second(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    # No retries inside a fill: each fill is one products request, so fills can be counted.
    client = await make_proxy(redis_url=redis_server.url, cache_ttl=0.3, upstream_retries=0)
    assert (await client.get("/v1/products")).status == 200
    cache = client.app[CATALOG].cache
    # Failing before the entry goes stale: the keeper's refresh fails, the entry stays stale.
    sandbox.state.faults.products_status = 500
    await eventually(lambda: sandbox.state.products_requests == 2)
    await eventually(lambda: not cache.refreshing)
    db = await _redis(redis_server)
    try:
        await db.config_resetstat()
        before = sandbox.state.products_requests
        started = time.monotonic()
        statuses: list[str] = []
        # Spread over ~3 s: the keeper's reads and the fills its backoff lets go fall inside.
        for _ in range(30):
            await asyncio.sleep(0.1)
            replies = await asyncio.gather(*(client.get("/v1/products") for _ in range(20)))
            statuses += [reply.headers["Cache-Status"] for reply in replies]
        elapsed = time.monotonic() - started
        stats = await db.info("commandstats")
    finally:
        await db.aclose()
    # A fill whose GETs were counted has reached the sandbox once no fill is running.
    await eventually(lambda: not cache.refreshing)
    fills = sandbox.state.products_requests - before
    assert len(statuses) == 600
    assert all(status.startswith("1nce-proxy; fwd=stale") for status in statuses)
    gets = int(stats.get("cmdstat_get", {}).get("calls", 0))
    # Main read 266 GETs for these 600 requests. Lookups and the keeper share one read of the
    # store a second (plus one); each fill the backoff lets go reads it twice (before and
    # with the lock) and the lock's release is a compare-and-delete script with one GET.
    assert gets <= elapsed + 2 + 3 * fills, (gets, elapsed, fills)


async def _sandbox_token(sandbox: Sandbox) -> str:
    credentials = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode())
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sandbox.url}/oauth/token",
            json={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {credentials.decode()}"},
        ) as response,
    ):
        token: str = (await response.json())["access_token"]
        return token


async def test_a_shared_token_inside_the_margin_is_replaced_by_one_replica(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_server: RedisServer
) -> None:
    first, second = [
        await make_proxy(redis_url=redis_server.url, token_refresh_margin=120) for _ in range(2)
    ]
    old = await _sandbox_token(sandbox)
    db = await _redis(redis_server)
    try:
        stored = json.dumps({"lifetime": HOUR, "token": old}, separators=(",", ":"))
        await db.set(_keys(first).token, stored, px=60_000)  # one minute left: inside 120 s
        sandbox.state.reset_counters()
        sandbox.state.faults.token_latency = 0.5

        renewing = asyncio.create_task(first.get("/v1/products"))
        await eventually(lambda: sandbox.state.token_requests == 1, within=2)
        # The other replica does not wait for the new token: the old one is still good.
        started = time.monotonic()
        token = await second.app[CATALOG]._tokens.get()
        assert time.monotonic() - started < 0.3
        assert token.get_secret_value() == old

        assert (await renewing).status == 200
        new = json.loads(await db.get(_keys(first).token) or b"{}")["token"]
        assert new != old
        assert await db.pttl(_keys(first).token) > (HOUR - 60) * 1000
    finally:
        await db.aclose()
    assert sandbox.state.token_requests == 1
    assert sandbox.state.products_authorizations == [f"Bearer {new}"]
