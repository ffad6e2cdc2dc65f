"""Probes: /healthz is always 200 while serving, /readyz tells the truth."""

from __future__ import annotations

from proxy.catalog.service import CATALOG
from proxy.web.health import LIFECYCLE
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually


async def test_healthz_is_200_even_when_the_upstream_is_down(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    await sandbox.stop()
    client = await make_proxy()
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_before_and_after_the_first_fetch(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    before = await client.get("/readyz")
    assert before.status == 200
    body = await before.json()
    assert body["status"] == "ready"
    assert body["catalog"] == {"cached": False}
    assert body["upstream"]["last_outcome"] == "unknown"
    assert body["token"] == "none"
    assert body["store"] == {"state": "memory", "reachable": True}

    await client.get("/v1/products")
    after = await (await client.get("/readyz")).json()
    assert after["catalog"]["cached"] is True
    assert after["catalog"]["stale"] is False
    assert after["upstream"]["last_outcome"] == "ok"
    assert after["token"] == "valid"


async def test_readyz_is_503_with_no_catalog_and_a_failing_upstream(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.faults.products_status = 500
    client = await make_proxy(upstream_retries=0)
    assert (await client.get("/v1/products")).status == 502
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["upstream"]["last_outcome"] == "UpstreamBadResponse"


async def test_readyz_stays_200_on_a_stale_catalog_while_the_upstream_fails(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.2, upstream_retries=0)
    await client.get("/v1/products")
    # Failing before the TTL passes, so the keeper's refresh at the TTL fails and the entry
    # really goes stale (a working upstream would be refreshed ahead, with no traffic).
    sandbox.state.faults.products_status = 500
    cache = client.app[CATALOG].cache
    await eventually(lambda: sandbox.state.products_requests == 2 and not cache.refreshing)
    stale = await client.get("/v1/products")
    assert stale.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale")

    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["catalog"]["stale"] is True
    assert body["catalog"]["usable"] is True
    assert body["upstream"]["last_outcome"] == "UpstreamBadResponse"
    assert sandbox.state.products_requests == 2


async def test_readyz_is_503_while_draining(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    await client.get("/v1/products")
    client.app[LIFECYCLE].shutting_down = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["status"] == "shutting_down"
    products = await client.get("/v1/products")
    assert products.status == 200, "in-flight and late requests are still answered"
