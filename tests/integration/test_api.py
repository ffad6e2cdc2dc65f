"""The internal catalog API over real HTTP: filters, sorting, lookups, errors, keys, admin."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from proxy.catalog.service import CATALOG
from tests.support.sandbox import MakeProxy, Sandbox


async def _json(client: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, **kwargs)
    return response.status, await response.json()


def _ids(body: dict[str, Any]) -> list[int]:
    return [product["id"] for product in body["products"]]


async def test_list_has_every_product_and_the_catalog_block(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    status, body = await _json(client, "/api/v1/products")
    assert status == 200
    assert body["count"] == len(sandbox.state.catalog) == len(body["products"])
    assert _ids(body) == sorted(p["id"] for p in sandbox.state.catalog)
    catalog = body["catalog"]
    assert catalog["stale"] is False
    assert catalog["age_seconds"] == 0
    assert catalog["fetched_at"].endswith("Z")
    first = body["products"][0]
    assert first == {
        "id": 1001,
        "name": "1NCE IoT FlexSIM - Standard",
        "material": "1NCE FlexSIM",
        "category": "sim",
        "grade": "industrial",
        "form_factor": "2ff/3ff/4ff",
        "package_size": 1,
        "order": {"min": 1, "max": 1000, "max_per_customer": None},
        "contract_months": 120,
        "one_time": [{"name": "provisionCharge", "amount": "10.00", "currency": "EUR"}],
        "recurring": [],
        "one_time_total": {"EUR": "10.00"},
        "recurring_total": {},
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("category=os_service", list(range(1401, 1408))),
        ("category=topup&category=high_data_addon", [1201, 1202, 1203, 1301, 1302, 1303, 1304]),
        ("category=topup&category=other", [1201, 1202, 1203, 1501, 1502]),
        ("material=1nce%20os", list(range(1401, 1408))),
        ("q=mff2", [1106, 1107, 1108]),
        ("q=BUSINESS&category=sim", [1104, 1105, 1108]),
        ("id=1303&id=1001", [1001, 1303]),
        ("id=1303&id=1001&sort=-id", [1303, 1001]),
        ("category=high_data_addon&sort=-price", [1303, 1304, 1301, 1302]),
        ("category=lifetime_flat&sort=price", [1002, 1006, 1005, 1003, 1004]),
        ("category=other&sort=-name", [1501, 1502]),
        ("q=no-such-thing", []),
    ],
)
async def test_filters_and_sorting(make_proxy: MakeProxy, query: str, expected: list[int]) -> None:
    client = await make_proxy()
    status, body = await _json(client, f"/api/v1/products?{query}")
    assert status == 200
    assert _ids(body) == expected
    assert body["count"] == len(expected)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("category=foo", "category"),
        ("sort=cost", "sort"),
        ("id=abc", "id"),
        ("id=0", "id"),
        ("id=99999999999999999999", "id"),
        ("q=", "q"),
        ("material=a&material=b", "material"),
        ("colour=red", "colour"),
        ("category=SIM", "category"),
        ("id=1001,1002", "id"),
    ],
)
async def test_bad_parameters_get_400_naming_them(
    make_proxy: MakeProxy, query: str, parameter: str
) -> None:
    client = await make_proxy()
    status, body = await _json(client, f"/api/v1/products?{query}")
    assert status == 400
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["parameter"] == parameter
    assert body["error"]["allowed"]
    assert parameter in body["error"]["message"]


async def test_product_by_id_404_and_400(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    status, body = await _json(client, "/api/v1/products/1404")
    assert status == 200
    assert body["product"]["name"] == "1NCE OS Energy Saver"
    assert body["product"]["category"] == "os_service"
    assert body["catalog"]["stale"] is False
    status, body = await _json(client, "/api/v1/products/4242")
    assert status == 404
    assert body["error"] == {"code": "not_found", "message": "no product with id 4242"}
    for bad in ("abc", "0", "-5", "1.5", "99999999999999999999"):
        status, body = await _json(client, f"/api/v1/products/{bad}")
        assert status == 400, bad
        assert body["error"]["parameter"] == "id"


async def test_categories_cover_all_six_with_counts(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    status, body = await _json(client, "/api/v1/categories")
    assert status == 200
    assert body["categories"] == [
        {"category": "lifetime_flat", "count": 5},
        {"category": "sim", "count": 9},
        {"category": "topup", "count": 3},
        {"category": "high_data_addon", "count": 4},
        {"category": "os_service", "count": 7},
        {"category": "other", "count": 2},
    ]
    assert sum(c["count"] for c in body["categories"]) == len(sandbox.state.catalog)


async def test_awkward_products_are_listed_not_dropped(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.catalog = [
        {"id": 1, "recurring_charges": None, "one_time_charges": None},
        {
            "id": 2,
            "product": "Mystery Box",
            "recurring_charges": {"name": "m", "amount_net": 1.5, "currency": "chf"},
        },
        {
            "id": 3,
            "product": "Two currencies",
            "one_time_charges": [
                {"name": "a", "amount_net": 0.1, "currency": "EUR"},
                {"name": "b", "amount_net": 0.2, "currency": "EUR"},
                {"name": "c", "amount_net": 3, "currency": "USD"},
                {"name": "d", "amount_net": None, "currency": "EUR"},
                "junk",
            ],
            "surprise": {"nested": [1, 2]},
        },
        {"id": 4, "product": None, "material": 42, "package_size": "ten", "minQuantity": True},
    ]
    client = await make_proxy()
    status, body = await _json(client, "/api/v1/products")
    assert status == 200
    assert _ids(body) == [1, 2, 3, 4]
    by_id = {p["id"]: p for p in body["products"]}
    assert by_id[1]["one_time"] == []
    assert by_id[1]["category"] == "other"
    assert by_id[2]["recurring"] == [{"name": "m", "amount": "1.50", "currency": "CHF"}]
    assert by_id[2]["recurring_total"] == {"CHF": "1.50"}
    assert by_id[3]["one_time_total"] == {"EUR": "0.30", "USD": "3.00"}
    assert {"name": "d", "amount": None, "currency": "EUR"} in by_id[3]["one_time"]
    assert by_id[4]["name"] is None
    assert by_id[4]["material"] is None
    assert by_id[4]["package_size"] is None
    _, cats = await _json(client, "/api/v1/categories")
    assert {c["category"]: c["count"] for c in cats["categories"]}["other"] == 4


async def test_the_view_is_built_once_per_catalog_version(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    service = client.app[CATALOG]
    for path in ("/api/v1/products", "/api/v1/categories", "/api/v1/products/1001") * 10:
        assert (await client.get(path)).status == 200
    view = service.view_of(await service.lookup())
    assert service.view_of(await service.lookup()) is view
    sandbox.state.catalog = sandbox.state.catalog[:3]
    await service.refresh()
    _, body = await _json(client, "/api/v1/products")
    assert body["count"] == 3
    new = service.view_of(await service.lookup())
    assert new is not view
    assert len(new.products) == 3


async def test_api_etags_differ_by_query_and_answer_304(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    sims = await client.get("/api/v1/products?category=sim")
    tops = await client.get("/api/v1/products?category=topup")
    etag = sims.headers["ETag"]
    assert etag.startswith('W/"')
    assert etag != tops.headers["ETag"]
    assert sims.headers["Cache-Status"] == "1nce-proxy; fwd=miss; stored"
    again = await client.get("/api/v1/products?category=sim", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["Cache-Status"].startswith("1nce-proxy; hit")


async def test_api_keys_protect_api_and_v1_but_not_probes(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(api_keys=(SecretStr("key-one"), SecretStr("key-two")))
    for path in ("/api/v1/products", "/api/v1/categories", "/v1/products", "/api/v1/nope"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "key-one"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="1nce-proxy"'
            assert (await response.json())["error"]["code"] == "unauthorized"
    assert sandbox.state.products_requests == 0, "refused callers never reach the upstream"
    for key in ("key-one", "key-two"):
        response = await client.get("/api/v1/products", headers={"Authorization": f"Bearer {key}"})
        assert response.status == 200
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await client.get(path)).status == 200


async def test_admin_refresh_is_off_without_a_token(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.post("/admin/refresh", headers={"Authorization": "Bearer x"})
    assert response.status == 404
    assert "PROXY_ADMIN_TOKEN" in (await response.json())["error"]["message"]
    assert sandbox.state.products_requests == 0


async def test_admin_refresh_fetches_once_per_interval(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(admin_token=SecretStr("adm"), admin_refresh_interval=1)
    wrong = await client.post("/admin/refresh", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    await client.get("/v1/products")
    sandbox.state.catalog = sandbox.state.catalog[:4]
    auth = {"Authorization": "Bearer adm"}

    first = await client.post("/admin/refresh", headers=auth, data=b"{not json")
    assert first.status == 200
    result = await first.json()
    assert result["refreshed"] is True
    assert result["collapsed"] is False
    second = await client.post("/admin/refresh", headers=auth)
    assert second.status == 429
    assert second.headers["Retry-After"] == "1"
    assert sandbox.state.products_requests == 2
    _, body = await _json(client, "/api/v1/products")
    assert body["count"] == 4, "the refreshed catalog is served"

    await asyncio.sleep(1.05)
    assert (await client.post("/admin/refresh", headers=auth)).status == 200
    assert sandbox.state.products_requests == 3


async def test_admin_refresh_never_ends_with_a_fetch_begun_before_it(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(admin_token=SecretStr("adm"))
    sandbox.state.faults.products_latency = 0.5
    cold = asyncio.create_task(client.get("/v1/products"))
    await asyncio.sleep(0.1)
    # The operator fixed the catalog upstream after the cold fetch left: it may be old.
    sandbox.state.catalog = sandbox.state.catalog[:3]
    refreshed = await client.post("/admin/refresh", headers={"Authorization": "Bearer adm"})
    assert refreshed.status == 200
    assert (await refreshed.json())["collapsed"] is False
    assert (await cold).status == 200
    assert sandbox.state.products_requests == 2
    _, body = await _json(client, "/api/v1/products")
    assert body["count"] == 3


async def test_unknown_routes_and_wrong_methods_are_json(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    response = await client.get("/nowhere")
    assert response.status == 404
    assert await response.json() == {
        "error": {"code": "not_found", "message": "no such resource: /nowhere"}
    }
    response = await client.delete("/api/v1/products")
    assert response.status == 405
    assert response.headers["Allow"] == "GET"
    body = await response.json()
    assert body["error"]["code"] == "method_not_allowed"
    response = await client.get("/admin/refresh")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


async def test_openapi_document_is_served_as_packaged(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = json.loads(await response.read())
    assert document["openapi"].startswith("3.")
    assert "/api/v1/products/{id}" in document["paths"]
