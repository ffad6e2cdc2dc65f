"""The multi-process harness itself: sandbox and proxy processes, load helpers, Sentinel."""

from __future__ import annotations

import json

import pytest

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, default_catalog
from tests.support.load import spread, steady_load
from tests.support.processes import ProxyFleet, SandboxProcess
from tests.support.sentinel import SentinelCluster

pytestmark = pytest.mark.slow


async def test_sandbox_process_reports_stats_and_takes_faults(
    sandbox_process: SandboxProcess,
) -> None:
    stats = await sandbox_process.stats()
    assert stats["token_requests"] == 0
    assert stats["products_requests"] == 0
    assert stats["products_authorizations"] == []

    await sandbox_process.set_faults(products_latency=0.2)
    assert (await sandbox_process.stats())["faults"]["products_latency"] == 0.2

    await sandbox_process.reset()
    assert (await sandbox_process.stats())["faults"]["products_latency"] == 0
    assert await sandbox_process.revoke() == 0
    assert sandbox_process.alive


async def test_proxy_fleet_serves_the_sandbox_catalog_from_every_replica(
    sandbox_process: SandboxProcess,
) -> None:
    catalog = [
        {**product, "product": f"Harness {index}"}
        for index, product in enumerate(default_catalog()[:3])
    ]
    await sandbox_process.set_catalog(catalog)
    fleet = ProxyFleet(
        {
            "PROXY_UPSTREAM_URL": sandbox_process.url,
            "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
            "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "PROXY_LOG_LEVEL": "info",
        },
        size=2,
    )
    try:
        fleet.start()
        assert len(fleet.urls) == 2
        assert len({replica.pid for replica in fleet.replicas}) == 2

        replies = await spread(fleet.urls, "/v1/products", 10)
        assert len(replies) == 10
        assert [reply.status for reply in replies] == [200] * 10, replies[0].body
        assert all(json.loads(reply.body) == catalog for reply in replies)

        load = await steady_load(fleet.urls, "/healthz", seconds=0.5, concurrency=4)
        assert load
        assert {reply.status for reply in load} == {200}

        for replica in fleet.replicas:
            assert replica.terminate(10) == 0, replica.log_text()
            assert not replica.alive
            assert any(record.get("event") == "listening" for record in replica.log_records())

        refused = await spread(fleet.urls, "/healthz", 2, request_timeout=2)
        assert [reply.status for reply in refused] == [0, 0]
        assert refused[0].body
    finally:
        fleet.stop()


def test_sentinel_cluster_fails_over_to_the_replica() -> None:
    cluster = SentinelCluster()
    try:
        cluster.start()
        assert cluster.sentinels_setting.count("127.0.0.1:") == 3
        assert cluster.current_master_port() == cluster.master_port
        assert cluster.command(cluster.master_port, "SET", "k", "v") is True
        assert cluster.command(cluster.master_port, "GET", "k") == b"v"

        assert cluster.kill_master() == cluster.master_port
        assert cluster.wait_for_failover(cluster.master_port) == cluster.replica_port
        assert cluster.current_master_port() == cluster.replica_port
    finally:
        cluster.stop()
