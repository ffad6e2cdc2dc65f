"""Three ``python -m proxy`` replicas, one Redis, one sandbox process: one cache, one client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from tests.support.load import spread, steady_load
from tests.support.processes import ProxyFleet, SandboxProcess
from tests.support.redis import RedisServer
from tests.support.sentinel import SentinelCluster
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _env(upstream: SandboxProcess, **settings: str) -> dict[str, str]:
    env = {
        "PROXY_UPSTREAM_URL": upstream.url,
        "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
        "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PROXY_LOG_LEVEL": "warning",
        "PROXY_UPSTREAM_TIMEOUT": "3",
        "PROXY_LOCK_TIMEOUT": "4",
    }
    env.update({f"PROXY_{name.upper()}": value for name, value in settings.items()})
    return env


@pytest.fixture
def fleet_factory() -> Iterator[list[ProxyFleet]]:
    fleets: list[ProxyFleet] = []
    yield fleets
    for fleet in fleets:
        fleet.stop()


def _start(fleets: list[ProxyFleet], env: dict[str, str], size: int = 3) -> ProxyFleet:
    fleet = ProxyFleet(env, size)
    fleets.append(fleet)
    fleet.start()
    return fleet


async def _readyz(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        body: dict[str, object] = await response.json()
        return body


async def test_cold_stampede_of_600_over_three_replicas_is_one_fetch(
    sandbox_process: SandboxProcess, redis_server: RedisServer, fleet_factory: list[ProxyFleet]
) -> None:
    fleet = _start(fleet_factory, _env(sandbox_process, redis_url=redis_server.url))
    # Slow enough that all 600 arrive (past listen-backlog SYN retries) while it runs.
    await sandbox_process.set_faults(products_latency=1.5)

    replies = await spread(fleet.urls, "/v1/products", 600)

    assert [reply.status for reply in replies] == [200] * 600
    assert len({reply.body for reply in replies}) == 1
    stats = await sandbox_process.stats()
    assert len(json.loads(replies[0].body)) == stats["catalog_size"]
    assert stats["products_requests"] == 1
    assert stats["token_requests"] == 1


async def test_refresh_past_the_ttl_under_load_is_one_fetch(
    sandbox_process: SandboxProcess, redis_server: RedisServer, fleet_factory: list[ProxyFleet]
) -> None:
    fleet = _start(fleet_factory, _env(sandbox_process, redis_url=redis_server.url, cache_ttl="2"))
    warm = await spread(fleet.urls, "/v1/products", 3)
    assert {reply.status for reply in warm} == {200}
    assert (await sandbox_process.stats())["products_requests"] == 1
    # The refresh (ahead, by one replica's keeper, at the TTL) is still in flight under load.
    await sandbox_process.set_faults(products_latency=1.0)
    await asyncio.sleep(2.1)

    replies = await steady_load(fleet.urls, "/v1/products", seconds=1.2, concurrency=30)

    assert len(replies) > 100
    assert {reply.status for reply in replies} == {200}
    statuses = {reply.headers["Cache-Status"].split(";")[1].strip() for reply in replies}
    assert "fwd=stale" in statuses
    await asyncio.sleep(0.5)
    assert (await sandbox_process.stats())["products_requests"] == 2


async def test_killing_the_lock_holder_mid_fetch_hands_the_fetch_to_another_replica(
    sandbox_process: SandboxProcess, redis_server: RedisServer, fleet_factory: list[ProxyFleet]
) -> None:
    fleet = _start(fleet_factory, _env(sandbox_process, redis_url=redis_server.url))
    await sandbox_process.set_faults(products_latency=2.0)
    load = asyncio.create_task(spread(fleet.urls, "/v1/products", 90))

    holder = await _lock_holder(redis_server)
    await _until_fetch_sent(sandbox_process)
    victim = next(replica for replica in fleet.replicas if replica.pid == holder)
    victim.kill()
    killed_at = time.monotonic()
    replies = await load
    finished = time.monotonic() - killed_at

    survivors = [
        r for r, url in zip(replies, _targets(fleet.urls, 90), strict=True) if url != victim.url
    ]
    assert len(survivors) == 60
    assert {reply.status for reply in survivors} == {200}
    assert len({reply.body for reply in survivors}) == 1
    # The lock (4 s) expires, another replica fetches (2 s); nobody waits much longer.
    assert finished < 4 + 2 + 1.5, finished
    assert (await sandbox_process.stats())["products_requests"] == 2


async def _lock_holder(redis_server: RedisServer) -> int:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        locks = redis_server.key_names("*:catalog:v1:lock")
        if locks:
            value: bytes = redis_server.command("GET", locks[0])
            return int(value.decode().split(":")[1])  # "<host>:<pid>:<random>"
        await asyncio.sleep(0.02)
    raise AssertionError("no replica took the catalog lock")


async def _until_fetch_sent(sandbox: SandboxProcess) -> None:
    """Return once the holder's products request has reached the upstream."""
    deadline = time.monotonic() + 5
    while (await sandbox.stats())["products_requests"] == 0:
        assert time.monotonic() < deadline, "the holder never sent its fetch"
        await asyncio.sleep(0.02)


def _targets(urls: list[str], count: int) -> list[str]:
    return [urls[index % len(urls)] for index in range(count)]


async def test_redis_killed_and_restarted_under_load_fails_no_request(
    sandbox_process: SandboxProcess, redis_server: RedisServer, fleet_factory: list[ProxyFleet]
) -> None:
    env = _env(sandbox_process, redis_url=redis_server.url, cache_ttl="1", redis_timeout="0.2")
    fleet = _start(fleet_factory, env)
    await spread(fleet.urls, "/v1/products", 3)
    load = asyncio.create_task(steady_load(fleet.urls, "/v1/products", seconds=6, concurrency=20))
    await asyncio.sleep(1)
    redis_server.stop()
    degraded = [await _readyz(url) for url in fleet.urls]
    await asyncio.sleep(1.5)
    redis_server.start()
    replies = await load

    assert len(replies) > 200
    assert [reply for reply in replies if reply.status != 200] == []
    assert all(r["store"] == {"state": "degraded", "reachable": False} for r in degraded)
    for url in fleet.urls:
        assert (await _readyz(url))["store"] == {"state": "ok", "reachable": True}
    # With a 1 s TTL, refreshes after the restart store the catalog in Redis again.
    await spread(fleet.urls, "/v1/products", 30)
    await eventually(lambda: bool(redis_server.key_names("*:catalog:v1")), within=5)


async def test_sentinel_failover_under_load_is_followed(
    sandbox_process: SandboxProcess, fleet_factory: list[ProxyFleet]
) -> None:
    with SentinelCluster() as cluster:
        env = _env(
            sandbox_process,
            redis_sentinels=cluster.sentinels_setting,
            redis_sentinel_master=cluster.master_name,
            cache_ttl="1",
            redis_timeout="0.2",
        )
        fleet = _start(fleet_factory, env, size=2)
        await spread(fleet.urls, "/v1/products", 2)
        old_master = cluster.current_master_port()
        assert cluster.command(old_master, "KEYS", "*:catalog:v1")
        load = asyncio.create_task(
            steady_load(fleet.urls, "/v1/products", seconds=10, concurrency=10)
        )
        await asyncio.sleep(1)
        cluster.kill_master()
        new_master = await asyncio.to_thread(cluster.wait_for_failover, old_master)
        replies = await load

        assert new_master != old_master
        assert len(replies) > 100
        assert [reply for reply in replies if reply.status != 200] == []
        assert cluster.command(new_master, "FLUSHALL") is True
        await spread(fleet.urls, "/v1/products", 20)
        await asyncio.sleep(1.1)
        await spread(fleet.urls, "/v1/products", 20)
        await eventually(
            lambda: bool(cluster.command(new_master, "KEYS", "*:catalog:v1")), within=10
        )
        for url in fleet.urls:
            assert (await _readyz(url))["store"] == {"state": "ok", "reachable": True}
