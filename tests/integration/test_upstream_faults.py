"""Upstream failures (docs/reliability.md): a warm cache hides them, a cold one reports them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from proxy.catalog.service import CATALOG
from tests.support.net import free_port
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Fault:
    """A way to break the upstream, and what a caller with no cached catalog should get."""

    name: str
    inject: Callable[[Sandbox], Awaitable[None]]
    clear: Callable[[Sandbox], Awaitable[None]]
    status: int
    code: str


async def _set(sandbox: Sandbox, **faults: object) -> None:
    for name, value in faults.items():
        setattr(sandbox.state.faults, name, value)


async def _reset(sandbox: Sandbox) -> None:
    sandbox.state.faults.reset()


async def _stop_server(sandbox: Sandbox) -> None:
    await sandbox.stop()


async def _restart_server(sandbox: Sandbox) -> None:
    await sandbox.start()


FAULTS = [
    Fault(
        "status_500", lambda s: _set(s, products_status=500), _reset, 502, "upstream_bad_response"
    ),
    Fault("hang", lambda s: _set(s, hang=True), _reset, 504, "upstream_timeout"),
    Fault("refused", _stop_server, _restart_server, 503, "upstream_unavailable"),
    Fault(
        "rate_limited",
        lambda s: _set(s, rate_limit_retry_after=1),
        _reset,
        503,
        "upstream_rate_limited",
    ),
    Fault(
        "malformed_body",
        lambda s: _set(s, malformed_body=True),
        _reset,
        502,
        "upstream_bad_response",
    ),
    Fault("wrong_shape", lambda s: _set(s, wrong_shape=True), _reset, 502, "upstream_bad_response"),
    Fault(
        "revoked_token",
        lambda s: _set(s, reject_all_tokens=True),
        _reset,
        502,
        "upstream_auth_failed",
    ),
]
IDS = [fault.name for fault in FAULTS]


@pytest.mark.parametrize("fault", FAULTS, ids=IDS)
async def test_warm_cache_serves_old_data_through_the_fault(
    fault: Fault, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.3, upstream_timeout=0.5)
    first = await client.get("/v1/products")
    old_body, old_etag = await first.read(), first.headers["ETag"]
    before = sandbox.state.products_requests
    await fault.inject(sandbox)
    # Past the TTL the keeper refreshes ahead, with no caller: that refresh meets the fault.
    await asyncio.sleep(0.4)
    cache = client.app[CATALOG].cache
    await eventually(lambda: not cache.refreshing, within=5)
    if fault.name != "refused":
        assert sandbox.state.products_requests > before

    stale = await client.get("/v1/products")
    assert stale.status == 200
    assert await stale.read() == old_body
    assert stale.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale; ttl=-")

    again = await client.get("/v1/products")
    assert again.status == 200
    assert await again.read() == old_body
    assert again.headers["ETag"] == old_etag, "a failed refresh must not replace the entry"


@pytest.mark.parametrize("fault", FAULTS, ids=IDS)
async def test_cold_cache_reports_the_fault_and_caches_nothing(
    fault: Fault, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(upstream_timeout=0.5, upstream_retries=1)
    await fault.inject(sandbox)

    started = time.monotonic()
    response = await client.get("/v1/products")
    elapsed = time.monotonic() - started

    assert response.status == fault.status
    body = await response.json()
    assert body["error"]["code"] == fault.code
    assert body["error"]["message"]
    assert elapsed < 0.5 + 0.5, "the caller hears back within the upstream timeout"
    if fault.status == 503:
        assert int(response.headers["Retry-After"]) >= 1

    # Until the backoff allows the next attempt, callers hear the same at once, and the
    # upstream hears nothing more.
    before = sandbox.state.products_requests
    again = await client.get("/v1/products")
    assert again.status == fault.status
    assert (await again.json())["error"]["code"] == fault.code
    assert sandbox.state.products_requests == before

    await fault.clear(sandbox)
    # A caller asked, so the replica needs a catalog: once the backoff (or Retry-After: 1)
    # has passed, it fetches one by itself, with no further traffic.
    await eventually(lambda: sandbox.state.products_requests == before + 1, within=2.5)
    recovered = await client.get("/v1/products")
    assert recovered.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
    assert recovered.status == 200
    assert json.loads(await recovered.read()) == sandbox.state.catalog
    assert sandbox.state.products_requests == before + 1


async def test_rate_limit_blocks_upstream_calls_until_retry_after(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.faults.rate_limit_retry_after = 2
    client = await make_proxy()
    first = await client.get("/v1/products")
    assert first.status == 503
    assert first.headers["Retry-After"] == "2"
    sandbox.state.faults.reset()

    for _ in range(5):
        blocked = await client.get("/v1/products")
        assert blocked.status == 503
        assert (await blocked.json())["error"]["code"] == "upstream_rate_limited"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 2
    assert sandbox.state.products_requests == 1, "no request may go out before Retry-After"

    await asyncio.sleep(2.05)
    ok = await client.get("/v1/products")
    assert ok.status == 200
    assert sandbox.state.products_requests == 2


async def test_server_errors_are_retried_a_bounded_number_of_times(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.faults.products_status = 500
    client = await make_proxy(upstream_retries=2, upstream_within=5)
    response = await client.get("/v1/products")
    assert response.status == 502
    assert sandbox.state.products_requests == 3


async def test_refused_upstream_is_503_within_the_timeout(make_proxy: MakeProxy) -> None:
    client = await make_proxy(upstream_url=f"http://127.0.0.1:{free_port()}", upstream_timeout=1)
    started = time.monotonic()
    response = await client.get("/v1/products")
    assert time.monotonic() - started < 1.5
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "upstream_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
