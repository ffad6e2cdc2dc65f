"""PROXY_MANAGEMENT_PORT: probes and metrics on a port of their own, and only there.

Each test runs ``python -m proxy --sandbox`` as a process, as it runs in a pod, and talks to
both of its ports over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from proxy.app import create_app
from proxy.callers.registry import Callers
from proxy.callers.tokens import CallerTokens
from proxy.observability.metrics import Metrics
from proxy.web.health import healthz
from proxy.web.management import ApiAppNotStartedError, create_management_app
from proxy.web.pipeline import RequestPipeline
from proxy.web.routes import MANAGEMENT_ROUTES, Route, install_routes
from tests.support.net import free_port, http_status
from tests.support.processes import ProxyProcess, run_proxy
from tests.support.settings import make_settings

MANAGEMENT_PATHS = ("/healthz", "/readyz", "/metrics")
API_KEY = "management-port-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SHUTDOWN_DELAY = 2.0
REQUESTS = "product_proxy_http_requests_total"


class Reply:
    """One answer read whole: status, headers and body text."""

    def __init__(self, status: int, headers: Mapping[str, str], text: str) -> None:
        self.status = status
        self.headers = dict(headers)
        self.text = text

    def json(self) -> Any:
        return json.loads(self.text)


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    async with session.request(method, url, headers=headers) as response:
        return Reply(response.status, response.headers, await response.text())


def requests_counted(text: str, route: str, status: str) -> float:
    """The sum of ``product_proxy_http_requests_total`` for one route and status (any caller)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == REQUESTS and (labels["route"], labels["status"]) == (route, status):
                total += sample.value
    return total


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    """A ready proxy with API keys, a warm catalog and a shutdown delay to watch."""
    process = ProxyProcess(
        {
            "PROXY_API_KEYS": API_KEY,
            "PROXY_WARMUP": "true",
            "PROXY_SHUTDOWN_DELAY": str(SHUTDOWN_DELAY),
            "PROXY_LOG_FORMAT": "json",
            "PROXY_LOG_LEVEL": "info",
        },
        args=["--sandbox"],
        management=True,
    )
    process.start()
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # One connection per request, so none rides on a connection a draining server closes.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=10),
    ) as client:
        yield client


async def wait_ready(session: aiohttp.ClientSession, proxy: ProxyProcess) -> Reply:
    """Wait for ``/readyz`` 200 on the management port (the warm-up's first fetch)."""
    deadline = time.monotonic() + 10
    while True:
        ready = await fetch(session, f"{proxy.management_url}/readyz")
        if ready.status == 200 or time.monotonic() > deadline:
            return ready
        await asyncio.sleep(0.05)


async def test_probes_and_metrics_answer_on_the_management_port_only(
    proxy: ProxyProcess, session: aiohttp.ClientSession
) -> None:
    ready = await wait_ready(session, proxy)
    assert ready.status == 200, ready.text
    assert ready.json()["status"] == "ready"
    health = await fetch(session, f"{proxy.management_url}/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    metrics = await fetch(session, f"{proxy.management_url}/metrics")
    assert metrics.status == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert f"# TYPE {REQUESTS} counter" in metrics.text
    # Each answer still went through a pipeline: it carries a request id.
    assert all(len(r.headers["X-Request-ID"]) == 32 for r in (ready, health, metrics))

    for path in MANAGEMENT_PATHS:
        # On the API port they are unknown paths, answered as any other: a JSON 404, with
        # or without a key.
        for headers in ({}, AUTH):
            elsewhere = await fetch(session, f"{proxy.url}{path}", headers=headers)
            assert elsewhere.status == 404, (path, elsewhere.text)
            assert elsewhere.json()["error"]["code"] == "not_found", path
            assert elsewhere.headers["Content-Type"].startswith("application/json")
            assert len(elsewhere.headers["X-Request-ID"]) == 32


async def test_the_api_answers_on_the_api_port_only(
    proxy: ProxyProcess, session: aiohttp.ClientSession
) -> None:
    assert (await wait_ready(session, proxy)).status == 200
    products = await fetch(session, f"{proxy.url}/v1/products", headers=AUTH)
    assert products.status == 200, products.text
    assert isinstance(products.json(), list)
    assert products.json()
    keyless = await fetch(session, f"{proxy.url}/v1/products")
    assert keyless.status == 401
    assert (await fetch(session, f"{proxy.url}/openapi.json")).status == 200

    # The management port knows none of the API's paths and asks for no key: 404 for each,
    # 405 for another method on its own paths.
    for path in ("/v1/products", "/api/v1/products", "/api/v1/categories", "/openapi.json"):
        for headers in ({}, AUTH):
            there = await fetch(session, f"{proxy.management_url}{path}", headers=headers)
            assert there.status == 404, (path, there.text)
            assert there.json()["error"]["code"] == "not_found", path
    refresh = await fetch(session, f"{proxy.management_url}/admin/refresh", method="POST")
    assert refresh.status == 404, refresh.text
    post = await fetch(session, f"{proxy.management_url}/healthz", method="POST")
    assert post.status == 405, post.text
    assert post.json()["error"]["code"] == "method_not_allowed"


async def test_management_metrics_count_the_api_ports_requests(
    proxy: ProxyProcess, session: aiohttp.ClientSession
) -> None:
    assert (await wait_ready(session, proxy)).status == 200
    before = (await fetch(session, f"{proxy.management_url}/metrics")).text
    for _ in range(5):
        assert (await fetch(session, f"{proxy.url}/v1/products", headers=AUTH)).status == 200
    for _ in range(3):
        assert (await fetch(session, f"{proxy.url}/healthz")).status == 404
    after = (await fetch(session, f"{proxy.management_url}/metrics")).text
    counted = requests_counted
    assert counted(after, "/v1/products", "200") - counted(before, "/v1/products", "200") == 5
    # The API port's probe path is an unknown path there, counted as such.
    assert counted(after, "unmatched", "404") - counted(before, "unmatched", "404") == 3
    # The management port's own answers are counted too: the first scrape, and the probes.
    assert counted(after, "/metrics", "200") - counted(before, "/metrics", "200") == 1
    assert counted(after, "/readyz", "200") >= 1


@pytest.mark.slow
async def test_sigterm_turns_management_readiness_false_then_stops_both_ports(
    proxy: ProxyProcess, session: aiohttp.ClientSession
) -> None:
    assert (await wait_ready(session, proxy)).status == 200
    signalled = time.monotonic()
    os.kill(proxy.pid, signal.SIGTERM)
    while True:
        ready = await fetch(session, f"{proxy.management_url}/readyz")
        if ready.status != 200 or time.monotonic() - signalled > SHUTDOWN_DELAY / 2:
            break
        await asyncio.sleep(0.02)
    # During the delay: unready, yet alive, and the API still serves.
    health = await fetch(session, f"{proxy.management_url}/healthz")
    products = await fetch(session, f"{proxy.url}/v1/products", headers=AUTH)
    answered_within = time.monotonic() - signalled
    process = proxy._process  # the test waits for it itself, off the event loop
    assert process is not None
    code = await asyncio.to_thread(process.wait, SHUTDOWN_DELAY + 15)
    exited_after = time.monotonic() - signalled

    assert ready.status == 503, ready.text
    assert ready.json()["status"] == "shutting_down"
    assert health.status == 200
    assert products.status == 200
    assert answered_within < SHUTDOWN_DELAY, answered_within
    assert code == 0, proxy.log_text()
    assert exited_after >= SHUTDOWN_DELAY
    assert proxy.management_port is not None
    for port in (proxy.port, proxy.management_port):
        assert http_status(port, "/healthz") is None, port
    events = [str(record.get("event")) for record in proxy.log_records()]
    assert events[-1] == "stopped", proxy.log_text()
    assert events.index("listening") < events.index("shutting_down"), proxy.log_text()
    assert "Traceback" not in proxy.log_text()
    (listening,) = [r for r in proxy.log_records() if r.get("event") == "listening"]
    assert (listening["port"], listening["management_port"]) == (
        proxy.port,
        proxy.management_port,
    )


def test_the_management_port_must_differ_from_the_api_port() -> None:
    port = free_port()
    env = {"PROXY_PORT": str(port), "PROXY_MANAGEMENT_PORT": str(port)}
    result = run_proxy(env, "--sandbox")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "configuration error: PROXY_MANAGEMENT_PORT must differ from PROXY_PORT"
    ]
    assert http_status(port, "/healthz") is None


async def test_the_management_app_refuses_to_start_before_the_api_app() -> None:
    api = create_app(make_settings("http://127.0.0.1:9", management_port=free_port()))
    runner = web.AppRunner(create_management_app(api))
    with pytest.raises(ApiAppNotStartedError, match="start the API application before"):
        await runner.setup()
    await runner.cleanup()


def test_the_management_routes_are_the_probes_and_the_metrics() -> None:
    assert sorted(route.path for route in MANAGEMENT_ROUTES) == sorted(MANAGEMENT_PATHS)
    assert not any(route.protected for route in MANAGEMENT_ROUTES)


def test_a_management_route_that_asks_for_a_key_is_refused() -> None:
    pipeline = RequestPipeline(
        access_log="off", metrics=Metrics(), callers=Callers((), tokens=CallerTokens())
    )
    keyed = Route("GET", "/status", healthz, protected=True, management=True)
    with pytest.raises(ValueError, match="GET /status: a management route takes no API key"):
        install_routes(web.Application(), pipeline, (keyed,))
