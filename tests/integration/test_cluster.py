"""Replicas sharing a real Redis Cluster: one fetch, one refresh, announcements, a failover.

Three masters with a replica each (``tests/support/cluster.py``); the proxies are in-process apps
over real sockets, each with its own cluster client and subscription, in front of the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from proxy.backplane.interface import BACKPLANE
from proxy.backplane.keys import KeySpace
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.catalog.service import CATALOG
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.settings import SETTINGS
from tests.support.cluster import LocalCluster, running_cluster
from tests.support.load import burst, spread, steady_load
from tests.support.processes import ProxyFleet, SandboxProcess
from tests.support.redis import RedisNode
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually, until

pytestmark = [pytest.mark.slow]

Client = TestClient[web.Request, web.Application]
ADMIN_TOKEN = "cluster-admin-token"
PASSWORD = "cluster-test-password"


@pytest.fixture
def redis_cluster() -> Iterator[LocalCluster]:
    """Three masters and three replicas, up and in sync; every node killed afterwards."""
    yield from running_cluster()


@pytest.fixture
def protected_cluster() -> Iterator[LocalCluster]:
    """The same cluster with ``requirepass`` and ``masterauth`` on every node."""
    yield from running_cluster(password=PASSWORD)


async def _replicas(make_proxy: MakeProxy, count: int, **settings: Any) -> list[Client]:
    """Start ``count`` replicas and wait until each has found the cluster (as /readyz says).

    A cluster client's first call reads the slot map and the command table (tens of ms of
    CPU here), which can outlast the 0.25 s call budget on a busy machine; readiness probes
    do that before any traffic in a real deployment, and so does this.
    """
    replicas = [await make_proxy(**settings) for _ in range(count)]
    await until(lambda: _all_store_ok(replicas), 10, "every replica reaches the cluster")
    return replicas


def _base(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


def _keys(client: Client) -> KeySpace:
    settings = client.app[SETTINGS]
    return KeySpace(settings.key_prefix, settings.account_hash)


def _stored(cluster: LocalCluster, key: str) -> bytes | None:
    """Read ``key`` straight from the node that serves its slot (no redirection followed)."""
    value = cluster.command(cluster.master_for_key(key), "GET", key)
    return value if isinstance(value, bytes) else None


async def _readyz(client: Client) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get("/readyz")).json()
    return body


async def _count(client: Client) -> int:
    response = await client.get("/api/v1/products")
    assert response.status == 200
    count: int = (await response.json())["count"]
    return count


async def _store_ok(client: Client) -> bool:
    return bool((await _readyz(client))["store"] == {"state": "ok", "reachable": True})


async def test_cold_stampede_over_three_replicas_fetches_once(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    sandbox.state.faults.products_latency = 1.0
    replicas = await _replicas(make_proxy, 3, redis_cluster_nodes=redis_cluster.nodes_setting)
    bursts = [burst(str(r.make_url("/v1/products")), 100) for r in replicas]

    replies = [reply for group in await asyncio.gather(*bursts) for reply in group]

    assert [reply.status for reply in replies] == [200] * 300
    assert len({reply.body for reply in replies}) == 1
    assert sandbox.state.products_requests == 1
    assert sandbox.state.token_requests == 1
    keys = _keys(replicas[0])
    assert _stored(redis_cluster, keys.catalog) is not None
    assert _stored(redis_cluster, keys.token) is not None
    slots = {redis_cluster.slot(key) for key in (keys.catalog, keys.token, keys.catalog_lock)}
    assert len(slots) == 1, "one deployment's keys share one slot"
    for replica in replicas:
        assert await _store_ok(replica)


async def test_ttl_refresh_under_load_is_one_fetch_per_period(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    ttl, seconds = 1.0, 3.5
    replicas = await _replicas(
        make_proxy, 3, redis_cluster_nodes=redis_cluster.nodes_setting, cache_ttl=ttl
    )
    for replica in replicas:
        assert (await replica.get("/v1/products")).status == 200
    assert sandbox.state.products_requests == 1
    sandbox.state.faults.products_latency = 0.05

    replies = await steady_load(
        [_base(r) for r in replicas], "/v1/products", seconds=seconds, concurrency=12
    )

    assert {reply.status for reply in replies} == {200}
    assert len(replies) > 300
    refreshes = sandbox.state.products_requests - 1
    periods = seconds / ttl
    # One replica each would be three per period; the deployment makes one.
    assert math.floor(periods) - 1 <= refreshes <= math.ceil(periods) + 1, refreshes
    assert sandbox.state.token_requests == 1


async def _warm_listening_replicas(
    make_proxy: MakeProxy, sandbox: Sandbox, redis_cluster: LocalCluster
) -> list[Client]:
    """Three replicas with the admin API on, each holding the full catalog and subscribed."""
    replicas = await _replicas(
        make_proxy,
        3,
        redis_cluster_nodes=redis_cluster.nodes_setting,
        cache_ttl=300,
        admin_token=SecretStr(ADMIN_TOKEN),
    )
    for replica in replicas:
        assert await _count(replica) == len(sandbox.state.catalog)
    await eventually(lambda: all(_plane(r).listening for r in replicas))
    return replicas


async def test_admin_refresh_on_one_replica_reaches_the_others_within_a_second(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    assert len(sandbox.state.catalog) > 3
    replicas = await _warm_listening_replicas(make_proxy, sandbox, redis_cluster)
    sandbox.state.catalog = sandbox.state.catalog[:3]

    await _refresh_and_see_it_spread(replicas, expected=3)

    assert sandbox.state.products_requests == 2


async def test_the_listener_moves_on_when_its_node_dies(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    replicas = await _warm_listening_replicas(make_proxy, sandbox, redis_cluster)
    channel = _keys(replicas[0]).events
    listened = await asyncio.to_thread(redis_cluster.subscribers, channel)
    assert sum(listened.values()) == 3, listened
    port = max(listened, key=lambda each: listened[each])

    await asyncio.to_thread(_kill_and_heal, redis_cluster, redis_cluster.node(port))

    await eventually(lambda: all(_plane(r).listening for r in replicas), within=10)
    # A listener counts as listening once its SUBSCRIBE is sent; the node counts it once it has
    # read it, a moment later on a busy machine.
    moved: dict[int, int] = {}

    async def all_resubscribed() -> bool:
        moved.clear()
        moved.update(await asyncio.to_thread(redis_cluster.subscribers, channel))
        return sum(moved.values()) == 3

    await until(all_resubscribed, 10, "every replica subscribes on a live node")
    assert port not in moved
    await until(lambda: _all_store_ok(replicas), 20, "every replica's store is ok again")
    sandbox.state.catalog = sandbox.state.catalog[:3]
    await _refresh_and_see_it_spread(replicas, expected=3)


@pytest.mark.timeout(120)
async def test_killing_the_deployments_master_under_load_fails_no_request(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    ttl = 2.0
    seeds = redis_cluster.nodes_setting
    replicas = await _replicas(make_proxy, 3, redis_cluster_nodes=seeds, cache_ttl=ttl)
    for replica in replicas:
        assert (await replica.get("/v1/products")).status == 200
    assert sandbox.state.products_requests == 1
    keys = _keys(replicas[0])
    slot = redis_cluster.slot(keys.catalog)
    master = redis_cluster.master_for_slot(slot)
    sandbox.state.faults.products_latency = 0.05

    async def kill_soon() -> float:
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await asyncio.to_thread(redis_cluster.kill, master)
        promoted = await asyncio.to_thread(redis_cluster.wait_failover, slot)
        assert promoted.port != master.port
        return time.monotonic() - started

    load = steady_load([_base(r) for r in replicas], "/v1/products", seconds=9, concurrency=12)
    replies, failover_seconds = await asyncio.gather(load, kill_soon())

    assert failover_seconds < 9 - 1.0, "the load covered the whole failover"
    statuses = [reply.status for reply in replies]
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert len(replies) > 300
    await until(lambda: _all_store_ok(replicas), 20, "every replica's store is ok again")
    await eventually(lambda: all(_plane(r).listening for r in replicas), within=10)

    # Coalescing works again: the keepers refresh ahead once per TTL for all three replicas
    # (one each, alone, would be three per period).
    caches = [replica.app[CATALOG].cache for replica in replicas]
    await eventually(lambda: not any(cache.refreshing for cache in caches))
    before = sandbox.state.products_requests
    sandbox.state.catalog = sandbox.state.catalog[:5]
    await asyncio.sleep(3 * ttl + 0.3)
    await eventually(lambda: not any(cache.refreshing for cache in caches))
    assert 2 <= sandbox.state.products_requests - before <= 4
    for replica in replicas:
        body = await (await replica.get("/v1/products")).read()
        assert json.loads(body) == sandbox.state.catalog
    for replica in replicas:
        await replica.close()  # their keepers would refresh during the cold fill below

    # A cold fill by new replicas, seeded with the dead node too, is one fetch as well.
    catalog_master = redis_cluster.master_for_key(keys.catalog)
    assert redis_cluster.command(catalog_master, "DEL", keys.catalog) == 1
    sandbox.state.catalog = sandbox.state.catalog[:4]
    tokens = sandbox.state.token_requests
    before = sandbox.state.products_requests
    fresh = await _replicas(make_proxy, 3, redis_cluster_nodes=seeds, cache_ttl=ttl)
    bursts = [burst(str(r.make_url("/v1/products")), 50) for r in fresh]
    cold = [reply for group in await asyncio.gather(*bursts) for reply in group]
    assert [reply.status for reply in cold] == [200] * 150
    assert {json.loads(reply.body) == sandbox.state.catalog for reply in cold} == {True}
    assert sandbox.state.products_requests == before + 1
    assert sandbox.state.token_requests == tokens, "the shared token survived the failover"


async def test_a_failover_while_idle_costs_no_extra_fetch(
    sandbox: Sandbox, make_proxy: MakeProxy, redis_cluster: LocalCluster
) -> None:
    ttl = 1.0
    # The three clients reload the slot map and command table at once (tens of ms of CPU
    # each, one process): a roomy budget keeps this test about the retry, not the CPU.
    replicas = await _replicas(
        make_proxy,
        3,
        redis_cluster_nodes=redis_cluster.nodes_setting,
        cache_ttl=ttl,
        redis_timeout=1.0,
    )
    for replica in replicas:
        assert (await replica.get("/v1/products")).status == 200
    slot = redis_cluster.slot(_keys(replicas[0]).catalog)
    master = redis_cluster.master_for_slot(slot)
    # The fill's announcement makes every keeper read the store once; let that happen first.
    await asyncio.sleep(0.3)

    # Callers are quiet meanwhile. While the slot has no master the keepers' refreshes fail
    # open (each replica alone, by design); once the replica is promoted, they coalesce again.
    await asyncio.to_thread(redis_cluster.kill, master)
    await asyncio.to_thread(redis_cluster.wait_failover, slot)
    await until(lambda: _all_store_ok(replicas), 20, "every replica's store is ok again")
    before = sandbox.state.products_requests
    started = time.monotonic()
    await asyncio.sleep(2 * ttl + 0.2)
    bursts = [burst(str(r.make_url("/v1/products")), 50) for r in replicas]
    answers = [reply for group in await asyncio.gather(*bursts) for reply in group]

    assert {reply.status for reply in answers} == {200}
    caches = [replica.app[CATALOG].cache for replica in replicas]
    await eventually(lambda: not any(cache.refreshing for cache in caches))
    periods = (time.monotonic() - started) / ttl
    # One fetch per TTL period for the deployment (plus one at the edge), where three
    # replicas each fetching alone after the failover would make about three per period.
    assert 1 <= sandbox.state.products_requests - before <= periods + 1
    for replica in replicas:
        assert await _store_ok(replica)


async def test_a_password_protected_cluster(
    sandbox: Sandbox, make_proxy: MakeProxy, protected_cluster: LocalCluster
) -> None:
    seeds = protected_cluster.nodes_setting
    first, second = await _replicas(
        make_proxy, 2, redis_cluster_nodes=seeds, redis_password=SecretStr(PASSWORD)
    )
    wrong = await make_proxy(redis_cluster_nodes=seeds, redis_password=SecretStr("wrong"))

    for replica in (first, second):
        assert (await replica.get("/v1/products")).status == 200
    assert sandbox.state.products_requests == 1
    assert _stored(protected_cluster, _keys(first).catalog) is not None
    assert await _store_ok(first)
    await eventually(lambda: _plane(first).listening and _plane(second).listening)
    # A wrong password is a store that cannot be used: served all the same, and reported.
    assert (await wrong.get("/v1/products")).status == 200
    assert (await _readyz(wrong))["store"] == {"state": "degraded", "reachable": False}
    assert not _plane(wrong).listening


async def test_three_processes_configured_by_environment_share_the_cluster(
    sandbox_process: SandboxProcess, protected_cluster: LocalCluster
) -> None:
    env = {
        "PROXY_UPSTREAM_URL": sandbox_process.url,
        "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
        "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PROXY_LOG_LEVEL": "warning",
        "PROXY_REDIS_CLUSTER_NODES": protected_cluster.nodes_setting,
        "PROXY_REDIS_PASSWORD": PASSWORD,
    }
    with ProxyFleet(env, 3) as fleet:

        async def all_reach_the_cluster() -> bool:
            stores = [(await _process_readyz(url))["store"] for url in fleet.urls]
            return stores == [{"state": "ok", "reachable": True}] * 3

        await until(all_reach_the_cluster, 10, "every process reaches the cluster")
        # Slow enough that every request arrives while the one fetch runs.
        await sandbox_process.set_faults(products_latency=1.5)
        replies = await spread(fleet.urls, "/v1/products", 300)

    assert [reply.status for reply in replies] == [200] * 300
    assert len({reply.body for reply in replies}) == 1
    stats = await sandbox_process.stats()
    assert stats["products_requests"] == 1
    assert stats["token_requests"] == 1


async def _process_readyz(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        body: dict[str, Any] = await response.json()
        return body


def _plane(client: Client) -> RedisBackplane:
    backplane = client.app[BACKPLANE]
    assert isinstance(backplane, RedisBackplane)
    return backplane


async def _all_store_ok(replicas: list[Client]) -> bool:
    return all([await _store_ok(replica) for replica in replicas])


async def _refresh_and_see_it_spread(replicas: list[Client], *, expected: int) -> None:
    """Refresh on the first replica; within a second the others serve what it fetched."""
    first, *others = replicas
    response = await first.post(
        "/admin/refresh", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status == 200, await response.text()
    refreshed = time.monotonic()
    assert await _count(first) == expected

    async def others_see_it() -> bool:
        return all([await _count(other) == expected for other in others])

    await until(others_see_it, 1.0, "the other replicas adopt the refreshed catalog")
    # Their copies were fresh for 300 s: only the announcement can have made them look.
    assert time.monotonic() - refreshed < 1.0


def _kill_and_heal(cluster: LocalCluster, node: RedisNode) -> None:
    """Kill ``node``; if it served slots, wait until its replica has taken them over."""
    served = cluster.command(node, "CLUSTER", "SLOTS")
    slots = [int(start) for start, _end, master, *_ in served if int(master[1]) == node.port]
    cluster.kill(node)
    for slot in slots:
        cluster.wait_failover(slot)
