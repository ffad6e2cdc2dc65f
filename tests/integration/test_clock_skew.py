"""Two replicas on one Redis, one with a clock an hour off: every catalog change is recorded once.

Stamps written by one replica (catalog entries, version records) are read by the other on its
own clock (``proxy.clock.OwnClock``). Before that rule covered the change feed, a replica whose
clock ran ahead recorded a version stamped an hour ahead, and the other replica's catalogs,
stamped on a correct clock, never looked newer: no version, event or webhook until real time
caught up, while ``/v1/products`` served the new catalog.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from proxy.app import create_app
from proxy.sandbox import default_catalog
from tests.support.redis import RedisServer
from tests.support.sandbox import Sandbox
from tests.support.settings import make_settings
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(60)

Client = TestClient[web.Request, web.Application]
HOUR = 3600.0
ADMIN_TOKEN = "adm"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHANGES = 4


def _shifted(offset: float) -> Callable[[], float]:
    return lambda: time.time() + offset


async def _versions(client: Client) -> dict[str, Any]:
    response = await client.get("/api/v1/catalog/versions")
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _current_is(client: Client, version: int) -> bool:
    current: int | None = (await _versions(client))["current"]
    return current == version


async def _refresh(client: Client) -> str:
    response = await client.post("/admin/refresh", headers=ADMIN)
    assert response.status == 200, await response.text()
    etag: str = (await response.json())["etag"]
    return etag


@pytest.mark.parametrize(
    ("first", "second"),
    [(HOUR, 0.0), (0.0, -HOUR), (0.0, HOUR), (-HOUR, 0.0)],
    ids=["first-ahead", "second-behind", "second-ahead", "first-behind"],
)
async def test_every_change_is_recorded_once_whatever_one_replica_s_clock_says(
    aiohttp_client: AiohttpClient,
    sandbox: Sandbox,
    redis_server: RedisServer,
    first: float,
    second: float,
) -> None:
    settings = make_settings(
        sandbox.url,
        redis_url=redis_server.url,
        # Long: only the refreshes below fetch, so the test says which replica records.
        cache_ttl=300.0,
        admin_token=ADMIN_TOKEN,
        admin_refresh_interval=0.0,
    )
    replicas = [
        await aiohttp_client(create_app(settings, clock=_shifted(offset)))
        for offset in (first, second)
    ]
    recorded: list[str] = []
    for change in range(CHANGES + 1):
        catalog = default_catalog()
        catalog[0]["one_time_charges"][0]["amount_net"] = 100 + change
        sandbox.state.catalog = catalog
        refresher, other = replicas[change % 2], replicas[(change + 1) % 2]
        etag = await _refresh(refresher)
        recorded.append(etag)

        # Recorded once, by whichever replica, and seen by both before the next change.
        for client in (refresher, other):
            await until(
                functools.partial(_current_is, client, change + 1),
                within=10,
                what=f"change {change} recorded",
            )
    versions = (await _versions(replicas[0]))["versions"]
    assert [version["version"] for version in versions] == list(range(CHANGES + 1, 0, -1))
    assert [version["etag"] for version in reversed(versions)] == recorded
    assert sandbox.state.products_requests == CHANGES + 1
