"""The prepared hit paths: gzip variant, reused headers and API bodies stay correct."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest

from proxy.catalog.service import CATALOG
from proxy.web.answers import accepts_gzip
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.waiting import until


async def test_gzip_variant_is_the_same_catalog_with_its_own_etag(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    plain = await client.get("/v1/products", headers={"Accept-Encoding": "identity"})
    plain_body = await plain.read()
    zipped = await client.get(
        "/v1/products", headers={"Accept-Encoding": "br, gzip;q=0.8"}, auto_decompress=False
    )
    raw = await zipped.read()

    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert plain.headers["Vary"] == "Accept-Encoding"
    assert "Content-Encoding" not in plain.headers
    assert gzip.decompress(raw) == plain_body
    assert len(raw) < len(plain_body) / 3
    # The compressed variant's ETag is the weak form of the identity one.
    assert zipped.headers["ETag"] == f"W/{plain.headers['ETag']}"
    for tag in (zipped.headers["ETag"], plain.headers["ETag"]):
        again = await client.get(
            "/v1/products", headers={"Accept-Encoding": "gzip", "If-None-Match": tag}
        )
        assert again.status == 304, tag
        assert again.headers["ETag"] == zipped.headers["ETag"]
    assert sandbox.state.products_requests == 1


async def test_the_published_etag_validates_for_a_client_that_accepts_gzip(
    make_proxy: MakeProxy,
) -> None:
    # httpx, requests and browsers send Accept-Encoding: gzip; the versions listing, events and
    # webhooks publish the catalog's identity ETag.
    client = await make_proxy()
    await client.get("/v1/products")
    listed: dict[str, Any] = {"versions": []}

    async def recorded() -> bool:
        listed.update(await (await client.get("/api/v1/catalog/versions")).json())
        return bool(listed["versions"])

    # The change feed records the first version within about a second.
    await until(recorded, 5, "the first catalog version is listed")
    published = listed["versions"][0]["etag"]
    answer = await client.get(
        "/v1/products", headers={"Accept-Encoding": "gzip, deflate", "If-None-Match": published}
    )
    assert answer.status == 304
    assert await answer.read() == b""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0", False),
        ("identity", False),
        ("", False),
        (None, False),
        ("notgzip", False),
    ],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:  # noqa: FBT001
    assert accepts_gzip(header) is expected


async def test_reused_headers_follow_the_catalogs_age(make_proxy: MakeProxy) -> None:
    client = await make_proxy(cache_ttl=3)
    first = await client.get("/v1/products")
    assert first.headers["Age"] == "0"
    await asyncio.sleep(1.1)
    later = await client.get("/v1/products")
    assert later.headers["Age"] == "1"
    assert later.headers["Cache-Control"] == "max-age=1"
    assert later.headers["Cache-Status"] == "1nce-proxy; hit; ttl=1"
    api = await client.get("/api/v1/products")
    assert (await api.json())["catalog"]["age_seconds"] == 1


async def test_prepared_api_bodies_change_with_the_catalog(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    first = await (await client.get("/api/v1/products?category=other")).json()
    assert [p["id"] for p in first["products"]] == [1501, 1502]
    sandbox.state.catalog = [
        {**product, "product": "Renamed"} if product["id"] == 1501 else product
        for product in sandbox.state.catalog
    ]
    await client.app[CATALOG].refresh()
    second = await (await client.get("/api/v1/products?category=other")).json()
    assert second["products"][0]["name"] == "Renamed"
    assert second["count"] == 2
    assert second["catalog"]["stale"] is False
    raw = await (await client.get("/api/v1/products/1501")).read()
    assert json.loads(raw)["product"]["name"] == "Renamed"
