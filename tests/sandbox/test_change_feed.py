"""Catalog versions, diffs and the event stream of one replica in front of the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from proxy.app import create_app
from proxy.history.feed import FEED
from proxy.observability.metrics import METRICS
from tests.support.events import EventReader
from tests.support.net import HOST
from tests.support.sandbox import MakeProxy, Sandbox, basic_auth
from tests.support.settings import make_settings
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
ADMIN = {"Authorization": "Bearer adm"}


async def _proxy(make_proxy: MakeProxy, **overrides: Any) -> Client:
    overrides.setdefault("admin_token", SecretStr("adm"))
    overrides.setdefault("admin_refresh_interval", 0)
    client = await make_proxy(**overrides)
    await _refresh(client)
    await _wait_for_version(client, 1)
    return client


async def _refresh(client: Client) -> None:
    response = await client.post("/admin/refresh", headers=ADMIN)
    assert response.status == 200, await response.text()


async def _versions(client: Client, **headers: str) -> dict[str, Any]:
    response = await client.get("/api/v1/catalog/versions", headers=headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _wait_for_version(client: Client, version: int) -> None:
    feed = client.app[FEED]

    def reached() -> bool:
        history = feed.history
        return history is not None and history.last == version

    await eventually(reached, within=5)


async def _change(sandbox: Sandbox, client: Client, version: int, edit: Any) -> None:
    edit(sandbox.state.catalog)
    await _refresh(client)
    await _wait_for_version(client, version)


def _product(catalog: list[dict[str, Any]], product_id: int) -> dict[str, Any]:
    return next(product for product in catalog if product["id"] == product_id)


def _price_and_quantity(catalog: list[dict[str, Any]]) -> None:
    _product(catalog, 1001)["one_time_charges"][0]["amount_net"] = 12.5
    _product(catalog, 1002)["maxQuantity"] = 500


def _new_product(catalog: list[dict[str, Any]]) -> None:
    catalog.append(
        {
            "id": 9001,
            "product": "1NCE IoT Lifetime Flat - 1 GB, 10 years",
            "material": "1NCE Lifetime Flat",
            "package_size": 1,
            "minQuantity": 1,
            "maxQuantity": 100,
            "one_time_charges": [{"name": "provisionCharge", "amount_net": 20, "currency": "EUR"}],
            "recurring_charges": [],
        }
    )


async def test_two_changes_in_a_row_give_the_exact_changes_and_summaries(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)

    await _change(sandbox, client, 2, _price_and_quantity)
    first = await client.get("/api/v1/changes", params={"since": "1"})
    await _change(sandbox, client, 3, _new_product)
    second = await client.get("/api/v1/changes", params={"since": "2"})
    both = await client.get("/api/v1/changes", params={"since": "1"})

    assert first.status == 200
    body = await first.json()
    versions = await _versions(client)
    etags = {record["version"]: record["etag"] for record in versions["versions"]}
    assert body["from"] == {"version": 1, "etag": etags[1]}
    assert body["to"] == {"version": 2, "etag": etags[2]}
    assert body["added"] == []
    assert body["removed"] == []
    assert body["changed"] == [
        {
            "id": 1001,
            "changes": [
                {"field": "one_time.0.amount", "before": "10.00", "after": "12.50"},
                {"field": "one_time_total.EUR", "before": "10.00", "after": "12.50"},
            ],
        },
        {"id": 1002, "changes": [{"field": "order.max", "before": 1000, "after": 500}]},
    ]
    assert body["summary"] == {"added": 0, "removed": 0, "changed": 2}
    second_body = await second.json()
    assert [product["id"] for product in second_body["added"]] == [9001]
    assert second_body["added"][0]["one_time_total"] == {"EUR": "20.00"}
    assert second_body["added"][0]["order"] == {"min": 1, "max": 100, "max_per_customer": None}
    assert second_body["changed"] == []
    assert second_body["removed"] == []
    assert second_body["summary"] == {"added": 1, "removed": 0, "changed": 0}
    both_body = await both.json()
    assert both_body["summary"] == {"added": 1, "removed": 0, "changed": 2}
    assert versions["current"] == 3
    assert [record["version"] for record in versions["versions"]] == [3, 2, 1]
    assert [record["summary"] for record in versions["versions"]] == [
        {"added": 1, "removed": 0, "changed": 0},
        {"added": 0, "removed": 0, "changed": 2},
        {"added": 30, "removed": 0, "changed": 0},
    ]
    assert [record["products"] for record in versions["versions"]] == [31, 30, 30]


async def test_refetching_the_same_bytes_is_no_new_version(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)

    await _refresh(client)
    await _refresh(client)
    await asyncio.sleep(1.5)  # two polls of the feed: nothing may be recorded meanwhile

    versions = await _versions(client)
    assert versions["current"] == 1
    assert len(versions["versions"]) == 1
    assert sandbox.state.products_requests == 3


async def test_a_return_to_earlier_bytes_is_a_new_version(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)
    original = json.loads(json.dumps(sandbox.state.catalog))

    await _change(sandbox, client, 2, _price_and_quantity)
    await _change(sandbox, client, 3, lambda catalog: catalog.__setitem__(slice(None), original))

    versions = await _versions(client)
    records = {record["version"]: record for record in versions["versions"]}
    assert records[3]["etag"] == records[1]["etag"] != records[2]["etag"]
    back = await (await client.get("/api/v1/changes", params={"since": "2"})).json()
    assert back["summary"] == {"added": 0, "removed": 0, "changed": 2}
    same = await (await client.get("/api/v1/changes", params={"since": "1"})).json()
    assert same["summary"] == {"added": 0, "removed": 0, "changed": 0}


async def test_bytes_with_no_visible_difference_make_a_version_with_an_empty_diff(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)

    # An unknown upstream field: other bytes, the same simplified products.
    await _change(sandbox, client, 2, lambda catalog: catalog[0].update(internal_note="x"))

    body = await (await client.get("/api/v1/changes", params={"since": "1"})).json()
    assert body["to"]["version"] == 2
    assert body["to"]["etag"] != body["from"]["etag"]
    assert (body["added"], body["removed"], body["changed"]) == ([], [], [])


async def test_since_the_current_version_is_empty_and_answers_304_on_its_etag(
    make_proxy: MakeProxy,
) -> None:
    client = await _proxy(make_proxy)

    response = await client.get("/api/v1/changes", params={"since": "1"})
    etag = response.headers["ETag"]
    again = await client.get(
        "/api/v1/changes", params={"since": "1"}, headers={"If-None-Match": etag}
    )
    listing = await client.get("/api/v1/catalog/versions")
    listing_again = await client.get(
        "/api/v1/catalog/versions", headers={"If-None-Match": listing.headers["ETag"]}
    )

    body = await response.json()
    assert body["from"] == body["to"]
    assert (body["added"], body["removed"], body["changed"]) == ([], [], [])
    assert body["summary"] == {"added": 0, "removed": 0, "changed": 0}
    assert again.status == 304
    assert await again.read() == b""
    assert listing_again.status == 304


async def test_an_expired_version_is_410_naming_the_oldest_kept(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy, history_versions=2)

    await _change(sandbox, client, 2, _price_and_quantity)
    await _change(sandbox, client, 3, _new_product)
    gone = await client.get("/api/v1/changes", params={"since": "1"})
    kept = await client.get("/api/v1/changes", params={"since": "2"})
    ahead = await client.get("/api/v1/changes", params={"since": "4"})

    assert gone.status == 410
    error = (await gone.json())["error"]
    assert error["code"] == "version_gone"
    assert (error["oldest"], error["current"]) == (2, 3)
    assert kept.status == 200
    assert ahead.status == 410
    versions = await _versions(client)
    assert [record["version"] for record in versions["versions"]] == [3, 2]
    assert versions["oldest"] == 2


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("", "since"),
        ("since=", "since"),
        ("since=0", "since"),
        ("since=-1", "since"),
        ("since=1.0", "since"),
        ("since=99999999999999999999", "since"),
        ("since=%D9%A3", "since"),
        ("since=1&since=2", "since"),
        ("since=1&epoch=XYZ", "epoch"),
        ("since=1&other=1", "other"),
    ],
)
async def test_a_malformed_query_is_400_naming_the_parameter(
    make_proxy: MakeProxy, query: str, parameter: str
) -> None:
    client = await _proxy(make_proxy)

    response = await client.get(f"/api/v1/changes?{query}")

    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_parameter"
    assert error["parameter"] == parameter


async def test_a_since_from_another_epoch_is_410(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy)
    epoch = (await _versions(client))["epoch"]

    same = await client.get("/api/v1/changes", params={"since": "1", "epoch": epoch})
    other = await client.get("/api/v1/changes", params={"since": "1", "epoch": "abc123"})

    assert same.status == 200
    assert (await same.json())["epoch"] == epoch
    assert other.status == 410
    assert (await other.json())["error"]["epoch"] == epoch


async def test_api_keys_guard_versions_changes_and_events(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy, api_keys=(SecretStr("team-a:k1"),))

    for path in ("/api/v1/catalog/versions", "/api/v1/changes?since=1", "/api/v1/events"):
        refused = await client.get(path)
        assert refused.status == 401, path
        assert (await refused.json())["error"]["code"] == "unauthorized"
    allowed = await client.get("/api/v1/catalog/versions", headers={"Authorization": "Bearer k1"})
    assert allowed.status == 200
    assert (await allowed.json())["current"] == 1


@contextlib.asynccontextmanager
async def _stream(
    client: Client, headers: dict[str, str] | None = None, query: str = ""
) -> AsyncIterator[EventReader]:
    response = await client.get(f"/api/v1/events{query}", headers=headers or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    try:
        yield EventReader(response)
    finally:
        response.close()


async def test_a_stream_starts_with_the_current_version_then_each_new_one(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)
    epoch = (await _versions(client))["epoch"]

    async with _stream(client) as reader:
        baseline = await reader.next()
        await _change(sandbox, client, 2, _price_and_quantity)
        news = await reader.next()

    assert baseline["event"] == "catalog"
    assert baseline["id"] == "1"
    assert json.loads(baseline["data"])["version"] == 1
    assert news["event"] == "catalog"
    assert news["id"] == "2"
    data = json.loads(news["data"])
    assert data["epoch"] == epoch
    assert data["summary"] == {"added": 0, "removed": 0, "changed": 2}
    assert data["products"] == 30
    assert set(data) == {"epoch", "version", "etag", "stored_at", "products", "summary"}


async def test_last_event_id_resumes_with_every_version_after_it(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy)
    await _change(sandbox, client, 2, _price_and_quantity)
    await _change(sandbox, client, 3, _new_product)

    async with _stream(client, {"Last-Event-ID": "1"}) as reader:
        events = [await reader.next(), await reader.next()]
    async with _stream(client, {"Last-Event-ID": "3"}) as reader:
        with pytest.raises(TimeoutError):
            await reader.next(within=0.5)

    assert [(event["event"], event["id"]) for event in events] == [
        ("catalog", "2"),
        ("catalog", "3"),
    ]


async def test_last_event_id_past_the_kept_history_gets_one_resync(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    client = await _proxy(make_proxy, history_versions=2)
    await _change(sandbox, client, 2, _price_and_quantity)
    await _change(sandbox, client, 3, _new_product)
    await _change(sandbox, client, 4, lambda catalog: catalog.pop())

    async with _stream(client, {"Last-Event-ID": "2"}) as reader:
        kept = [await reader.next(), await reader.next()]
    async with _stream(client, {"Last-Event-ID": "1"}) as reader:
        expired = await reader.next()
        with pytest.raises(TimeoutError):
            await reader.next(within=0.3)
    async with _stream(client, {"Last-Event-ID": "9"}) as reader:
        ahead = await reader.next()
    async with _stream(client, {"Last-Event-ID": "4"}, query="?epoch=abc") as reader:
        other_epoch = await reader.next()

    # Versions 3 and 4 (those after 2) are kept; version 2, the one after 1, is not.
    assert [(event["event"], event["id"]) for event in kept] == [
        ("catalog", "3"),
        ("catalog", "4"),
    ]
    assert (expired["event"], expired["id"]) == ("resync", "4")
    assert json.loads(expired["data"])["summary"] == {"added": 0, "removed": 1, "changed": 0}
    assert (ahead["event"], ahead["id"]) == ("resync", "4")
    assert (other_epoch["event"], other_epoch["id"]) == ("resync", "4")


async def test_a_stream_before_any_catalog_waits_for_the_first(
    make_proxy: MakeProxy, sandbox: Sandbox
) -> None:
    sandbox.state.faults.products_status = 503
    client = await make_proxy()

    async with _stream(client) as reader:
        with pytest.raises(TimeoutError):
            await reader.next(within=0.5)
        sandbox.state.faults.products_status = None
        first = await reader.next(within=40)

    assert (first["event"], first["id"]) == ("catalog", "1")


async def test_idle_streams_get_keepalive_comments(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy, stream_keepalive=0.2)

    async with _stream(client) as reader:
        await reader.next()
        with pytest.raises(TimeoutError):
            await reader.next(within=0.7)

    assert reader.comments.count(": keep-alive") >= 2


@pytest.mark.parametrize("credential", ["key", "caller-token"])
async def test_a_stream_ends_with_revoked_once_its_credential_is_revoked(
    make_proxy: MakeProxy, sandbox: Sandbox, tmp_path: Path, credential: str
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("billing:billing-k1\nportal:portal-k1\n")
    client = await _proxy(
        make_proxy, api_keys_file=str(keys), api_keys_reload_interval=0.05, stream_keepalive=0.2
    )
    bearer = "billing-k1"
    if credential == "caller-token":
        grant = await client.post(
            "/management-api/oauth/token",
            json={"grant_type": "client_credentials"},
            headers={"Authorization": basic_auth("billing", "billing-k1")},
        )
        bearer = (await grant.json())["access_token"]
    headers = {"Authorization": f"Bearer {bearer}"}

    async with (
        _stream(client, headers) as reader,
        _stream(client, {"Authorization": "Bearer portal-k1"}) as other,
    ):
        assert (await reader.next())["id"] == "1"
        assert (await other.next())["id"] == "1"
        keys.write_text("portal:portal-k1\n")  # billing's key revoked
        revoked = await reader.next(within=5)
        with pytest.raises(EOFError):
            await reader.next(within=2)
        # Another caller's stream goes on, and gets the next version; only it holds a slot.
        await _change(sandbox, client, 2, _price_and_quantity)
        assert (await other.next())["id"] == "2"
        metrics = (await (await client.get("/metrics")).text()).splitlines()
        assert "product_proxy_event_streams 1.0" in metrics

    assert revoked["event"] == "revoked"
    assert "id" not in revoked
    assert "no longer valid" in json.loads(revoked["data"])["reason"]


async def test_streams_beyond_the_limit_get_503(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy, max_streams=2)

    first = await client.get("/api/v1/events")
    second = await client.get("/api/v1/events")
    third = await client.get("/api/v1/events")
    first.close()
    await eventually(lambda: _open_streams(client.app) == 1)
    fourth = await client.get("/api/v1/events")

    assert (first.status, second.status, third.status) == (200, 200, 503)
    assert third.headers["Retry-After"] == "5"
    assert (await third.json())["error"]["code"] == "too_many_streams"
    assert fourth.status == 200
    second.close()
    fourth.close()


def _recorded(app: web.Application, version: int) -> bool:
    history = app[FEED].history
    return history is not None and history.last == version


def _open_streams(app: web.Application) -> int:
    value = app[METRICS].registry.get_sample_value("product_proxy_event_streams")
    return int(value or 0)


async def test_streams_end_cleanly_when_the_service_stops(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy)
    response = await client.get("/api/v1/events")
    reader = EventReader(response)
    await reader.next()

    await client.app.shutdown()
    rest = await asyncio.wait_for(response.content.read(), 2)

    # The chunked body ended with its terminator: a clean end, not a cut connection.
    assert rest == b""
    assert response.content.at_eof()
    assert _open_streams(client.app) == 0


async def test_a_malformed_last_event_id_is_400(make_proxy: MakeProxy) -> None:
    client = await _proxy(make_proxy)

    response = await client.get("/api/v1/events", headers={"Last-Event-ID": "abc"})

    assert response.status == 400
    assert (await response.json())["error"]["parameter"] == "Last-Event-ID"
    assert _open_streams(client.app) == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_reader_that_stops_reading_is_dropped_not_buffered_for(sandbox: Sandbox) -> None:
    app = create_app(
        make_settings(
            sandbox.url,
            admin_token=SecretStr("adm"),
            admin_refresh_interval=0,
            history_versions=1000,
            stream_keepalive=0.5,
        )
    )
    # The replica's side of every connection gets a small, fixed send buffer (accepted
    # sockets inherit it), as a busy host's would be; loopback's autotuning would otherwise
    # take megabytes before a write ever waits.
    listener = socket.create_server((HOST, 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    port = listener.getsockname()[1]
    try:
        versions = 400
        async with aiohttp.ClientSession(f"http://{HOST}:{port}") as session:
            for version in range(1, versions + 1):
                catalog = sandbox.state.catalog
                _product(catalog, 1001)["one_time_charges"][0]["amount_net"] = version
                async with session.post("/admin/refresh", headers=ADMIN) as response:
                    assert response.status == 200
                await eventually(functools.partial(_recorded, app, version))
            # A reader that asks for every kept version (about 100 KB of events) and then
            # reads nothing.
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            try:
                reader.connect((HOST, port))
                reader.sendall(
                    b"GET /api/v1/events HTTP/1.1\r\nHost: proxy\r\nLast-Event-ID: 1\r\n\r\n"
                )
                await eventually(lambda: _open_streams(app) == 1, within=5)
                started = time.monotonic()
                # Ended after two keep-alive intervals of a write that could go nowhere.
                await eventually(lambda: _open_streams(app) == 0, within=10)
                ended = time.monotonic() - started
            finally:
                reader.close()
            async with session.get("/api/v1/catalog/versions") as response:
                current = (await response.json())["current"]
    finally:
        await runner.cleanup()

    assert ended < 5
    # The replica goes on serving others.
    assert current == versions
