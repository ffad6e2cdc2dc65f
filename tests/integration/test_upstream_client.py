"""UpstreamClient over the sandbox: any declared endpoint, each with its own window and metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from proxy.observability.metrics import Metrics
from proxy.upstream.client import Endpoint, UpstreamClient
from proxy.upstream.errors import RateWindowOpen, UpstreamBadResponse, UpstreamRateLimited
from proxy.upstream.models import PRODUCTS
from tests.support.sandbox import Sandbox
from tests.support.upstream import sandbox_upstream


def _stats(body: bytes) -> dict[str, Any]:
    value = json.loads(body)
    if not isinstance(value, dict) or "products_requests" not in value:
        raise ValueError("not the sandbox's stats")
    return value


def _never(body: bytes) -> int:
    raise ValueError(f"refused {len(body)} bytes")


# A second read-only endpoint is a declaration: the sandbox's stats stand in for one.
STATS = Endpoint("stats", "/_sandbox/stats", _stats)
REFUSING = Endpoint("refusing", "/_sandbox/stats", _never)


class Wiring:
    """A client over the sandbox, with the metrics and windows it reports to."""

    def __init__(self, client: UpstreamClient, metrics: Metrics) -> None:
        self.client = client
        self.metrics = metrics

    def requests(self, endpoint: str, outcome: str) -> float:
        labels = {"endpoint": endpoint, "outcome": outcome}
        value = self.metrics.registry.get_sample_value(
            "product_proxy_upstream_requests_total", labels
        )
        return value or 0.0


@pytest.fixture
async def wiring(sandbox: Sandbox) -> AsyncIterator[Wiring]:
    metrics = Metrics()
    async with aiohttp.ClientSession() as session:
        client, tokens = sandbox_upstream(session, sandbox.url, metrics=metrics, retries=0)
        yield Wiring(client, metrics)
        await tokens.close()


async def test_a_declared_endpoint_is_fetched_parsed_and_counted_under_its_name(
    sandbox: Sandbox, wiring: Wiring
) -> None:
    client = wiring.client

    products = await client.fetch(PRODUCTS)
    stats = await client.fetch(STATS)

    assert json.loads(products.body) == sandbox.state.catalog
    assert [product.id for product in products.value] == [p["id"] for p in sandbox.state.catalog]
    assert products.content_type == "application/json;charset=UTF-8"
    assert stats.value["products_requests"] == 1
    assert json.loads(stats.body) == stats.value
    assert client.latest(PRODUCTS) is products
    assert client.latest(STATS) is stats
    assert (client.last_outcome(PRODUCTS), client.last_outcome(STATS)) == ("ok", "ok")
    assert wiring.requests("products", "ok") == 1
    assert wiring.requests("stats", "ok") == 1
    assert sandbox.state.token_requests == 1, "one token serves every endpoint"


async def test_a_body_its_parser_refuses_is_a_bad_response_and_not_kept(
    wiring: Wiring,
) -> None:
    client = wiring.client

    with pytest.raises(UpstreamBadResponse, match="unusable refusing body: refused"):
        await client.fetch(REFUSING)

    assert client.last_outcome(REFUSING) == "UpstreamBadResponse"
    assert client.latest(REFUSING) is None
    assert wiring.requests("refusing", "invalid_body") == 1
    assert client.last_outcome(STATS) == "unknown"


async def test_a_429_holds_off_only_its_own_endpoint(sandbox: Sandbox, wiring: Wiring) -> None:
    client = wiring.client
    sandbox.state.faults.rate_limit_retry_after = 30

    with pytest.raises(UpstreamRateLimited):
        await client.fetch(PRODUCTS)
    with pytest.raises(RateWindowOpen):
        await client.fetch(PRODUCTS)
    stats = await client.fetch(STATS)

    assert sandbox.state.products_requests == 1, "the window kept the second request home"
    assert 29 < client.blocked_for(PRODUCTS) <= 30
    assert client.blocked_for(STATS) == 0
    assert stats.value["products_requests"] == 1
    assert client.last_outcome(PRODUCTS) == "RateWindowOpen"
    assert client.last_outcome(STATS) == "ok"
    assert wiring.requests("products", "rate_limited") == 1
