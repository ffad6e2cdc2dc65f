"""Fixtures: a real redis-server, the sandbox over a real socket, and proxy clients."""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from proxy.app import create_app
from proxy.observability.logging import configure_logging
from tests.support.processes import SandboxProcess
from tests.support.redis import RedisServer
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import make_settings

TIERS = ("unit", "integration", "sandbox", "shipping")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from the folder it lives in (``pytest -m unit``)."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    """Warnings and errors only, uncached so tests that capture logs can reconfigure."""
    configure_logging("warning", "console", cache_loggers=False)


@pytest.fixture(scope="session", autouse=True)
def _enough_file_descriptors() -> None:
    """Stampede tests hold ~1000 sockets in one process; lift a low soft limit once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    emulator = Sandbox()
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
def sandbox_process() -> Iterator[SandboxProcess]:
    """The emulator as its own process (``python -m proxy.sandbox``), driven over HTTP."""
    with SandboxProcess() as emulator:
        yield emulator


@pytest.fixture
async def make_proxy(aiohttp_client: AiohttpClient, sandbox: Sandbox) -> MakeProxy:
    """Build a proxy in front of the sandbox; keyword arguments override settings."""

    async def make(**overrides: Any) -> TestClient[web.Request, web.Application]:
        overrides.setdefault("upstream_url", sandbox.url)
        settings = make_settings(**overrides)
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def proxy(make_proxy: MakeProxy) -> TestClient[web.Request, web.Application]:
    return await make_proxy()
