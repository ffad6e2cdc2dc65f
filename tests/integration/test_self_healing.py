"""Issue "Self-healing", items 1-5, end to end: the real app in front of the real sandbox.

1. readiness never deadlocks: a replica that needs a catalog fills it with only probes coming;
2. a huge ``Retry-After`` is capped (``PROXY_RETRY_AFTER_MAX``);
3. attempts refused inside a ``Retry-After`` window do not grow the backoff;
4. a 429 from the token endpoint is a rate limit, not refused credentials;
5. redirects are never followed and oversized answers are refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

import pytest
from aiohttp import ClientResponse, hdrs, web
from aiohttp.test_utils import TestClient

from proxy.catalog.service import CATALOG
from proxy.sandbox.faults import Faults
from tests.support.net import serve
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]

PROBE_INTERVAL = 0.05
CALLER_INTERVAL = 0.1


def _switch(sandbox: Sandbox, **switches: object) -> None:
    """Turn sandbox faults on, refusing a switch this sandbox does not have."""
    known = {field.name for field in fields(Faults)}
    for name, value in switches.items():
        assert name in known, f"the sandbox has no fault switch {name!r}"
        setattr(sandbox.state.faults, name, value)


async def _probe_until(
    client: Client, status: int, *, within: float, state: str | None = None
) -> dict[str, Any]:
    """Poll ``/readyz`` (and nothing else) until it answers ``status`` (and ``state``).

    Returns that answer's body.
    """
    deadline = time.monotonic() + within
    last: tuple[int, object] = (0, None)
    while time.monotonic() < deadline:
        response = await client.get("/readyz")
        body = await response.json()
        if response.status == status and state in {None, body["status"]}:
            assert isinstance(body, dict)
            return body
        last = (response.status, body)
        await asyncio.sleep(PROBE_INTERVAL)
    raise AssertionError(f"/readyz did not answer {status} within {within}s; last: {last}")


async def _error(response: ClientResponse) -> tuple[int, str]:
    """Status and error code of a JSON error answer."""
    body = await response.json()
    return response.status, body["error"]["code"]


async def _metric(client: Client, line_start: str) -> str:
    """The line of ``/metrics`` that starts with ``line_start``, or an empty string."""
    text = await (await client.get("/metrics")).text()
    return next((line for line in text.splitlines() if line.startswith(line_start)), "")


class Target:
    """A second server a redirect points at: counts what reaches it and what it was sent."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self.authorizations: list[str | None] = []
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.authorizations.append(request.headers.get(hdrs.AUTHORIZATION))
        # Whatever was asked, a plausible answer: following the redirect would "work".
        if request.path.endswith("/oauth/token"):
            return web.json_response({"access_token": "stolen", "expires_in": 3600})
        return web.json_response([])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.port = await serve(runner)
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    server = Target()
    await server.start()
    yield server
    await server.stop()


# --- 1. Readiness deadlock -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [{"products_status": 503}, {"token_status": 503}], ids=["products_503", "token_503"]
)
async def test_a_failed_warm_up_heals_with_only_probes(
    fault: dict[str, object], sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    _switch(sandbox, **fault)
    client = await make_proxy(warmup=True)

    # "warming" at first, "unavailable" once the warm-up has failed.
    failed = await _probe_until(client, 503, within=4, state="unavailable")
    assert failed["catalog"] == {"cached": False}
    assert sandbox.state.token_requests + sandbox.state.products_requests > 0

    sandbox.state.faults.reset()
    before = sandbox.state.products_requests
    ready = await _probe_until(client, 200, within=5)

    assert ready["status"] == "ready"
    assert ready["catalog"]["usable"] is True
    assert sandbox.state.products_requests > before, "the replica fetched after recovery"


async def test_a_catalog_aged_out_during_an_outage_is_refilled_with_only_probes(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.5, stale_ttl=0.5)
    assert (await client.get("/v1/products")).status == 200
    _switch(sandbox, products_status=500)

    # Once the catalog is older than ttl + stale_ttl, the keeper tries, fails: not ready.
    unready = await _probe_until(client, 503, within=4)
    assert unready["catalog"]["usable"] is False
    failed = sandbox.state.products_requests
    assert failed > 1, "the keeper tried to refill with no caller asking"

    sandbox.state.faults.reset()
    ready = await _probe_until(client, 200, within=5)

    assert ready["catalog"]["usable"] is True
    assert ready["catalog"]["stale"] is False
    assert sandbox.state.products_requests > failed


async def test_an_idle_replica_without_warm_up_asks_the_upstream_nothing(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    ends = time.monotonic() + 2
    while time.monotonic() < ends:
        response = await client.get("/readyz")
        assert response.status == 200, "no catalog yet, but nothing is failing: ready"
        await asyncio.sleep(CALLER_INTERVAL)

    assert sandbox.state.token_requests == 0
    assert sandbox.state.products_requests == 0


# --- 2. Retry-After bound --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"rate_limit_retry_after": 999_999_999},
        {"rate_limit_retry_after": 1, "retry_after_header": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
    ids=["seconds", "http_date"],
)
async def test_a_huge_retry_after_is_capped_at_retry_after_max(
    fault: dict[str, object], sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    _switch(sandbox, **fault)

    response = await client.get("/v1/products")

    assert await _error(response) == (503, "upstream_rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 300
    ready = await client.get("/readyz")
    assert (await ready.json())["upstream"]["rate_limited_for"] <= 300


async def test_the_next_fill_goes_out_when_the_capped_window_ends(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(retry_after_max=2)
    _switch(sandbox, rate_limit_retry_after=999_999_999)

    response = await client.get("/v1/products")
    limited_at = time.monotonic()
    assert await _error(response) == (503, "upstream_rate_limited")
    assert response.headers["Retry-After"] == "2"
    assert sandbox.state.products_requests == 1

    sandbox.state.faults.reset()
    # No caller traffic from here: the keeper fills once the 2 s window has passed.
    await eventually(lambda: sandbox.state.products_requests == 2, within=3.5)
    waited = time.monotonic() - limited_at

    assert waited > 1.5, f"the window was not honoured: refilled after {waited:.2f}s"
    recovered = await client.get("/v1/products")
    assert recovered.status == 200
    assert json.loads(await recovered.read()) == sandbox.state.catalog
    assert recovered.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
    assert sandbox.state.products_requests == 2


# --- 3. Recovery lag -------------------------------------------------------------------------

# 4 s, not 3: the old doubling pauses (1, 2, 4, ...) ended 1 + 2 = 3 s after the 429, right at
# a 3 s window's end, so only a longer window shows the lag they caused.
WINDOW = 4


@pytest.mark.slow
async def test_attempts_refused_inside_a_window_do_not_delay_the_recovery(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.3)
    first = await client.get("/v1/products")
    assert first.status == 200
    old_body = await first.read()
    cache = client.app[CATALOG].cache
    assert cache.local is not None
    filled_at = cache.local.fetched_at
    await asyncio.sleep(0.4)
    _switch(sandbox, rate_limit_retry_after=WINDOW)
    before = sandbox.state.products_requests

    stale = await client.get("/v1/products")
    assert stale.status == 200
    await eventually(lambda: sandbox.state.products_requests == before + 1, within=2)
    limited_at = time.monotonic()
    # Any request that left inside the window would now succeed, and be counted.
    sandbox.state.faults.reset()

    while time.monotonic() < limited_at + WINDOW - 0.2:
        response = await client.get("/v1/products")
        assert response.status == 200
        assert await response.read() == old_body
        assert response.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale; ttl=-")
        assert sandbox.state.products_requests == before + 1, "a request left inside the window"
        await asyncio.sleep(CALLER_INTERVAL)

    deadline = limited_at + WINDOW + 1.5
    while sandbox.state.products_requests == before + 1 and time.monotonic() < deadline:
        assert (await client.get("/v1/products")).status == 200
        await asyncio.sleep(CALLER_INTERVAL)
    lag = time.monotonic() - limited_at - WINDOW

    assert sandbox.state.products_requests == before + 2, (
        f"no fill within 1.5 s of the window's end ({lag:.2f}s after it)"
    )
    await eventually(lambda: cache.local is not None and cache.local.fetched_at > filled_at)


async def test_cold_callers_refused_inside_a_window_do_not_delay_the_keeper(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    _switch(sandbox, rate_limit_retry_after=2)
    first = await client.get("/v1/products")
    limited_at = time.monotonic()
    assert await _error(first) == (503, "upstream_rate_limited")
    sandbox.state.faults.reset()

    # Each of these fills is refused inside the replica (the window is open): ~18 of them.
    refused = 0
    while time.monotonic() < limited_at + 1.8:
        response = await client.get("/v1/products")
        assert await _error(response) == (503, "upstream_rate_limited")
        assert 1 <= int(response.headers["Retry-After"]) <= 2
        refused += 1
        await asyncio.sleep(CALLER_INTERVAL)
    assert refused > 10
    assert sandbox.state.products_requests == 1

    # No caller from here: the keeper fills soon after the window ends, not after a pause
    # grown by every refused attempt.
    await eventually(lambda: sandbox.state.products_requests == 2, within=2.0)
    lag = time.monotonic() - limited_at - 2
    assert lag < 1.0, f"the keeper filled {lag:.2f}s after the window's end"
    recovered = await client.get("/v1/products")
    assert recovered.status == 200
    assert recovered.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")


# --- 4. Token endpoint 429 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "longest"),
    [({"token_rate_limit_retry_after": 5}, 5), ({"token_status": 429}, 30)],
    ids=["retry_after_5", "no_retry_after"],
)
async def test_a_token_endpoint_429_is_a_rate_limit_and_is_honoured(
    fault: dict[str, object], longest: int, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    _switch(sandbox, **fault)

    for _ in range(4):
        response = await client.get("/v1/products")
        assert await _error(response) == (503, "upstream_rate_limited")
        assert 1 <= int(response.headers["Retry-After"]) <= longest
        await asyncio.sleep(CALLER_INTERVAL)

    assert sandbox.state.token_requests == 1, "a token request went out inside the window"
    assert sandbox.state.products_requests == 0
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["token"] == "rate_limited"


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "upstream_bad_response"), (400, "upstream_auth_failed")],
    ids=["server_error", "bad_credentials"],
)
async def test_other_token_endpoint_failures_keep_their_meaning(
    status: int, code: str, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    _switch(sandbox, token_status=status)

    response = await client.get("/v1/products")

    assert await _error(response) == (502, code)
    assert sandbox.state.products_requests == 0


# --- 5. Redirects and oversized answers ------------------------------------------------------


async def test_a_products_redirect_is_not_followed_on_a_cold_cache(
    sandbox: Sandbox, make_proxy: MakeProxy, target: Target
) -> None:
    client = await make_proxy()
    _switch(sandbox, redirect_to=target.url("/v1/products"))

    response = await client.get("/v1/products")

    assert await _error(response) == (502, "upstream_bad_response")
    assert sandbox.state.products_requests == 1
    assert target.requests == 0
    assert target.authorizations == []
    line = 'product_proxy_upstream_requests_total{endpoint="products",outcome="redirect"}'
    assert await _metric(client, line) == f"{line} 1.0"


async def test_a_products_redirect_on_a_stale_cache_serves_the_stale_catalog(
    sandbox: Sandbox, make_proxy: MakeProxy, target: Target
) -> None:
    client = await make_proxy(cache_ttl=0.3)
    first = await client.get("/v1/products")
    old_body, old_etag = await first.read(), first.headers["ETag"]
    await asyncio.sleep(0.4)
    _switch(sandbox, redirect_to=target.url("/v1/products"))
    before = sandbox.state.products_requests

    stale = await client.get("/v1/products")
    assert stale.status == 200
    assert await stale.read() == old_body
    cache = client.app[CATALOG].cache
    await eventually(lambda: sandbox.state.products_requests > before)
    await eventually(lambda: not cache.refreshing)

    again = await client.get("/v1/products")
    assert again.status == 200
    assert await again.read() == old_body
    assert again.headers["ETag"] == old_etag
    assert target.requests == 0


async def test_a_token_redirect_is_not_followed(
    sandbox: Sandbox, make_proxy: MakeProxy, target: Target
) -> None:
    client = await make_proxy()
    _switch(sandbox, token_redirect_to=target.url("/oauth/token"))

    response = await client.get("/v1/products")

    assert await _error(response) == (502, "upstream_bad_response")
    assert sandbox.state.token_requests == 1
    assert sandbox.state.products_requests == 0
    assert target.requests == 0


@pytest.mark.parametrize("fault", ["oversized_body", "gzip_bomb"])
async def test_an_oversized_answer_is_refused_and_counted(
    fault: str, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    _switch(sandbox, **{fault: 20_000_000})

    response = await client.get("/v1/products")

    assert await _error(response) == (502, "upstream_bad_response")
    assert sandbox.state.products_requests == 1
    line = 'product_proxy_upstream_requests_total{endpoint="products",outcome="too_large"}'
    assert await _metric(client, line) == f"{line} 1.0"


async def test_a_stale_catalog_whose_refresh_failed_catches_up_with_no_traffic(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    # A 1 s TTL: the caught-up entry stays fresh while it is checked (the keeper refreshes
    # ahead, so with a shorter one it would fetch again meanwhile).
    client = await make_proxy(cache_ttl=1.0, upstream_retries=0)
    assert (await client.get("/v1/products")).status == 200
    # Failing before the entry goes stale: the keeper's refresh ahead fails.
    sandbox.state.faults.products_status = 500
    await asyncio.sleep(1.1)
    stale = await client.get("/v1/products")
    assert stale.headers["Cache-Status"].startswith("1nce-proxy; fwd=stale")
    await eventually(lambda: sandbox.state.products_requests == 2)

    # The upstream recovers with a new catalog; nobody calls the proxy any more.
    sandbox.state.catalog = sandbox.state.catalog[:3]
    sandbox.state.faults.products_status = None
    before = sandbox.state.products_requests
    await eventually(lambda: sandbox.state.products_requests == before + 1, within=3)
    await eventually(lambda: not client.app[CATALOG].cache.refreshing)

    answer = await client.get("/api/v1/products")
    assert (await answer.json())["count"] == 3
    assert sandbox.state.products_requests == before + 1


async def test_an_idle_replica_keeps_its_catalog_fresh_with_no_traffic(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=0.3)
    assert (await client.get("/v1/products")).status == 200
    sandbox.state.catalog = sandbox.state.catalog[:4]
    await asyncio.sleep(1.5)

    # Each refresh goes out once its entry, stamped after the previous fetch answered, is
    # 0.3 s old: more than 0.3 s apart, so at most 5 in 1.5 s; 3 even if each is 0.3 s late.
    assert 4 <= sandbox.state.products_requests <= 6, sandbox.state.products_requests
    cache = client.app[CATALOG].cache
    # Not in the instant between an entry going stale and its refresh landing.
    await eventually(
        lambda: cache.local is not None and cache.freshness.ttl_left(cache.local, time.time()) > 0.1
    )
    answer = await client.get("/v1/products")
    assert answer.headers["Cache-Status"].startswith("1nce-proxy; hit; ttl=")
    assert json.loads(await answer.read()) == sandbox.state.catalog
