"""The change feed over three ``python -m proxy`` replicas, one Redis, the sandbox process.

A change fetched by one replica reaches the event streams open on all three, with the same
ids, within a second; a webhook receiver gets each version once, signed, and retries while
it answers 500; a stream ends cleanly when its replica is stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, default_catalog
from tests.support.events import EventReader
from tests.support.net import HOST, serve
from tests.support.processes import ProxyFleet, ProxyProcess, SandboxProcess
from tests.support.redis import RedisServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SECRET = "whsec-test"
ADMIN = {"Authorization": "Bearer adm"}


@dataclass
class Receiver:
    """A webhook receiver: records every POST; answers 500 to the first ``failures`` of each."""

    failures: int = 0
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((dict(request.headers), body))
        delivery = request.headers.get("X-Proxy-Delivery", "")
        attempts = sum(
            1 for headers, _ in self.posts if headers.get("X-Proxy-Delivery") == delivery
        )
        return web.Response(status=500 if attempts <= self.failures else 204)

    def deliveries(self) -> dict[str, list[bytes]]:
        """Bodies received per delivery id, in order."""
        found: dict[str, list[bytes]] = {}
        for headers, body in self.posts:
            found.setdefault(headers["X-Proxy-Delivery"], []).append(body)
        return found


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await serve(runner)
    hook.url = f"http://{HOST}:{port}/hook"
    yield hook
    await runner.cleanup()


@pytest.fixture
def fleets() -> Iterator[list[ProxyFleet]]:
    started: list[ProxyFleet] = []
    yield started
    for fleet in started:
        fleet.stop()


def _env(upstream: SandboxProcess, redis: RedisServer, **settings: str) -> dict[str, str]:
    env = {
        "PROXY_UPSTREAM_URL": upstream.url,
        "PROXY_CLIENT_ID": SANDBOX_CLIENT_ID,
        "PROXY_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "PROXY_REDIS_URL": redis.url,
        "PROXY_LOG_LEVEL": "info",
        "PROXY_UPSTREAM_TIMEOUT": "3",
        "PROXY_LOCK_TIMEOUT": "4",
        "PROXY_ADMIN_TOKEN": "adm",
        "PROXY_ADMIN_REFRESH_INTERVAL": "0",
    }
    env.update({f"PROXY_{name.upper()}": value for name, value in settings.items()})
    return env


async def _open_streams(session: aiohttp.ClientSession, urls: list[str]) -> list[EventReader]:
    readers = []
    for url in urls:
        response = await session.get(f"{url}/api/v1/events")
        assert response.status == 200
        readers.append(EventReader(response))
    return readers


async def _change_price(
    session: aiohttp.ClientSession, upstream: SandboxProcess, refresher: str, amount: float
) -> float:
    catalog = default_catalog()
    catalog[0]["one_time_charges"][0]["amount_net"] = amount
    await upstream.set_catalog(catalog)
    async with session.post(f"{refresher}/admin/refresh", headers=ADMIN) as response:
        assert response.status == 200
    return time.monotonic()


async def test_a_change_reaches_streams_on_all_replicas_within_a_second_with_the_same_ids(
    sandbox_process: SandboxProcess,
    redis_server: RedisServer,
    receiver: Receiver,
    fleets: list[ProxyFleet],
) -> None:
    receiver.failures = 2
    fleet = ProxyFleet(
        _env(sandbox_process, redis_server, webhook_urls=receiver.url, webhook_secret=SECRET)
    )
    fleets.append(fleet)
    fleet.start()
    urls = fleet.urls

    async with aiohttp.ClientSession() as session:
        readers = await _open_streams(session, urls)
        baselines = [await reader.next(within=10) for reader in readers]
        stored = await _change_price(session, sandbox_process, urls[1], 12.5)
        news = [await reader.next(within=3) for reader in readers]
        arrived = time.monotonic() - stored
        for reader in readers:
            reader.response.close()

    assert [event["id"] for event in baselines] == ["1", "1", "1"]
    assert [(event["event"], event["id"]) for event in news] == [("catalog", "2")] * 3
    assert len({event["data"] for event in news}) == 1
    assert arrived < 1.0, f"the last stream heard of the change {arrived:.3f} s after the store"
    assert json.loads(news[0]["data"])["summary"] == {"added": 0, "removed": 0, "changed": 1}
    # Each version once for the deployment: two refusals, then the third attempt lands.
    await eventually(lambda: len(receiver.deliveries()) == 2 and len(receiver.posts) == 6, 15)
    epoch = json.loads(news[0]["data"])["epoch"]
    deliveries = receiver.deliveries()
    assert set(deliveries) == {f"{epoch}:1", f"{epoch}:2"}
    for bodies in deliveries.values():
        assert len(bodies) == 3
        assert len(set(bodies)) == 1
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Proxy-Signature-256"], expected)
        assert headers["X-Proxy-Event"] == "catalog"
    second = json.loads(deliveries[f"{epoch}:2"][0])
    assert second["event"] == "catalog"
    assert second["version"] == 2
    assert second["summary"] == {"added": 0, "removed": 0, "changed": 1}
    # Each version was recorded (and logged) once for the deployment, by whichever replica.
    changed = [
        record
        for replica in fleet.replicas
        for record in replica.log_records()
        if record.get("event") == "catalog_changed"
    ]
    assert sorted(record["version"] for record in changed) == [1, 2]


async def test_a_stream_ends_cleanly_when_its_replica_stops(
    sandbox_process: SandboxProcess, redis_server: RedisServer
) -> None:
    replica = ProxyProcess(_env(sandbox_process, redis_server, shutdown_grace="4"))
    replica.start()
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"{replica.url}/api/v1/events")
            reader = EventReader(response)
            await reader.next(within=10)
            started = time.monotonic()
            stopping = asyncio.create_task(asyncio.to_thread(replica.terminate, 10))
            rest = await asyncio.wait_for(response.content.read(), 5)
            ended = time.monotonic() - started
            code = await stopping
    finally:
        replica.stop()

    assert rest == b""
    assert response.content.at_eof()
    assert code == 0
    # Within the grace period, not at its end: streams are told to end at once.
    assert ended < 2.0
