"""SIGTERM/SIGINT drain the service: readiness false, requests finish, exit 0. And warm-up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, default_catalog
from tests.support.load import Reply
from tests.support.processes import ProxyProcess, SandboxProcess
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import eventually, until

GRACE = 10.0
ADMIN_TOKEN = "shutdown-admin-token-5d0c"
MISS = "1nce-proxy; fwd=miss; stored"
COLLAPSED = "1nce-proxy; fwd=miss; stored; collapsed"

StartProxy = Callable[..., ProxyProcess]


@pytest.fixture
def start_proxy(sandbox_process: SandboxProcess) -> Iterator[StartProxy]:
    """Start ``python -m proxy`` against the sandbox process; every one is killed at the end."""
    started: list[ProxyProcess] = []

    def start(**settings: str) -> ProxyProcess:
        env = {
            "PROXY_UPSTREAM_URL": sandbox_process.url,
            "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
            "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            "PROXY_SHUTDOWN_GRACE": str(GRACE),
            "PROXY_LOG_LEVEL": "info",
            "PROXY_LOG_FORMAT": "json",
            **{f"PROXY_{name.upper()}": value for name, value in settings.items()},
        }
        proxy = ProxyProcess(env)
        started.append(proxy)
        proxy.start()
        return proxy

    yield start
    for proxy in started:
        proxy.kill()


def new_session() -> aiohttp.ClientSession:
    """One connection per request, so nothing rides on a connection the server closes."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def send(
    session: aiohttp.ClientSession,
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request read whole; a connection failure becomes status 0 with its text."""
    try:
        async with session.request(method, url, headers=headers) as response:
            return Reply(response.status, CIMultiDict(response.headers), await response.read())
    except (aiohttp.ClientError, OSError) as error:
        return Reply(0, CIMultiDict(), f"{type(error).__name__}: {error}".encode())


async def wait_exit(proxy: ProxyProcess, within: float) -> tuple[int, float]:
    """Wait (off the event loop) for the process to end; return its exit code and the wait."""
    process = proxy._process
    assert process is not None
    started = time.monotonic()
    try:
        await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        proxy.kill()
        pytest.fail(f"still running {within} s after the signal; log:\n{proxy.log_text()}")
    waited = time.monotonic() - started
    return proxy.terminate(timeout=1), waited  # only reaps it (and keeps its log)


def events(proxy: ProxyProcess) -> list[str]:
    return [str(record.get("event")) for record in proxy.log_records()]


def assert_clean_exit(proxy: ProxyProcess) -> None:
    log = proxy.log_text()
    assert "Traceback" not in log, log
    assert "error" not in {str(r.get("level")) for r in proxy.log_records()}, log
    seen = events(proxy)
    assert "shutting_down" in seen, log
    assert seen[-1] == "stopped", log


@pytest.mark.slow
async def test_sigterm_lets_in_flight_requests_finish_then_exits_0(
    sandbox_process: SandboxProcess, start_proxy: StartProxy
) -> None:
    await sandbox_process.set_faults(products_latency=2)
    proxy = start_proxy(admin_token=ADMIN_TOKEN)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with new_session() as session:
        gets = [asyncio.create_task(send(session, f"{proxy.url}/v1/products")) for _ in range(20)]

        async def fetching() -> bool:
            return int((await sandbox_process.stats())["products_requests"]) == 1

        # The refresh is asked only once the GETs' fetch has begun: under load, a refresh sent
        # with them could reach the proxy first and start the one fetch the GETs then join.
        await until(fetching, within=10, what="the GETs' fetch began")
        refresh = asyncio.create_task(
            send(session, f"{proxy.url}/admin/refresh", "POST", headers=admin)
        )
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in [*gets, refresh])
        assert (await sandbox_process.stats())["products_requests"] == 1  # one fetch, in flight
        signalled = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        # The listener is closed at once (no shutdown delay set): new connections are refused.
        late = await send(session, f"{proxy.url}/healthz")
        replies = await asyncio.gather(*gets)
        refreshed = await refresh
    code, _ = await wait_exit(proxy, within=GRACE + 5)
    exited_after = time.monotonic() - signalled

    assert late.status == 0, late
    assert [reply.status for reply in replies] == [200] * 20, [r.body[:200] for r in replies]
    expected = default_catalog()
    for reply in replies:
        assert json.loads(reply.body) == expected
        assert reply.headers["Content-Type"].startswith("application/json")
    assert refreshed.status == 200, refreshed.body
    answer: dict[str, Any] = json.loads(refreshed.body)
    assert answer["refreshed"] is True
    statuses = [reply.headers["Cache-Status"] for reply in replies]
    # The 20 GETs shared one fetch: exactly one of them started it. The refresh, asked after
    # that fetch began, waited it out and made its own (docs/design.md, "Admin refresh").
    assert set(statuses) <= {MISS, COLLAPSED}
    assert statuses.count(MISS) == 1
    assert answer["collapsed"] is False
    assert (await sandbox_process.stats())["products_requests"] == 2
    assert code == 0, proxy.log_text()
    # It waited for both fetches (about 1.5 s, then 2 s more), and no longer than the grace.
    assert 3.0 <= exited_after < GRACE, exited_after
    assert_clean_exit(proxy)


@pytest.mark.slow
async def test_sigterm_exits_within_the_grace_when_a_request_outlasts_it(
    sandbox_process: SandboxProcess, start_proxy: StartProxy
) -> None:
    grace = 1.0
    await sandbox_process.set_faults(products_latency=3)
    proxy = start_proxy(shutdown_grace=str(grace))
    async with new_session() as session:
        stuck = asyncio.create_task(send(session, f"{proxy.url}/v1/products"))
        await asyncio.sleep(0.3)
        signalled = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        code, _ = await wait_exit(proxy, within=GRACE)
        exited_after = time.monotonic() - signalled
        reply = await stuck
    assert code == 0, proxy.log_text()
    assert reply.status == 0, reply  # cut off at the grace: it could not finish
    assert "Traceback" not in proxy.log_text(), proxy.log_text()
    assert events(proxy)[-1] == "stopped", proxy.log_text()
    # PROXY_SHUTDOWN_GRACE bounds the whole drain (docs/configuration.md: keep it below the
    # pod's grace period, which Kubernetes enforces with SIGKILL); a little slack for closing down.
    assert grace <= exited_after < grace + 0.75, f"exited {exited_after:.2f} s after SIGTERM"


@pytest.mark.slow
async def test_shutdown_delay_keeps_serving_while_readiness_says_shutting_down(
    start_proxy: StartProxy,
) -> None:
    proxy = start_proxy(shutdown_delay="1")
    async with new_session() as session:
        assert (await send(session, f"{proxy.url}/v1/products")).status == 200
        ready = await send(session, f"{proxy.url}/readyz")
        assert ready.status == 200
        assert json.loads(ready.body)["status"] == "ready"
        signalled = time.monotonic()
        os.kill(proxy.pid, signal.SIGTERM)
        while True:
            ready = await send(session, f"{proxy.url}/readyz")
            if ready.status != 200 or time.monotonic() - signalled > 0.5:
                break
            await asyncio.sleep(0.02)
        products = await send(session, f"{proxy.url}/v1/products")
        health = await send(session, f"{proxy.url}/healthz")
        answered_within = time.monotonic() - signalled
        code, _ = await wait_exit(proxy, within=GRACE + 5)
        exited_after = time.monotonic() - signalled

    assert ready.status == 503, ready
    assert json.loads(ready.body)["status"] == "shutting_down"
    assert products.status == 200
    assert products.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert json.loads(products.body) == default_catalog()
    assert health.status == 200
    assert answered_within < 1.0  # all of it during the delay
    assert code == 0, proxy.log_text()
    assert 1.0 <= exited_after < 1.0 + GRACE, exited_after
    assert_clean_exit(proxy)


@pytest.mark.slow
async def test_sigint_also_exits_0(start_proxy: StartProxy) -> None:
    proxy = start_proxy()
    async with new_session() as session:
        assert (await send(session, f"{proxy.url}/v1/products")).status == 200
    os.kill(proxy.pid, signal.SIGINT)
    code, waited = await wait_exit(proxy, within=GRACE + 5)
    assert code == 0, proxy.log_text()
    assert waited < 3.0
    assert "KeyboardInterrupt" not in proxy.log_text()
    assert_clean_exit(proxy)


async def test_warm_up_fetches_before_any_caller_and_readiness_waits_for_it(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.faults.products_latency = 0.6
    client = await make_proxy(warmup=True)
    await eventually(lambda: sandbox.state.products_requests == 1)
    response = await client.get("/readyz")
    report = await response.json()
    assert (response.status, report["status"]) == (503, "warming")
    deadline = time.monotonic() + 5
    while True:
        response = await client.get("/readyz")
        report = await response.json()
        if response.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert (response.status, report["status"]) == (200, "ready")
    assert report["catalog"]["cached"] is True
    products = await client.get("/v1/products")
    assert products.status == 200
    assert products.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert json.loads(await products.read()) == sandbox.state.catalog
    assert sandbox.state.products_requests == 1
