"""The 1NCE emulator: protocol, tokens, faults, counters, control API, catalog and its drift."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
import zlib
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from proxy.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_STATE,
    Faults,
    SandboxState,
    create_sandbox_app,
    default_catalog,
    drift_product,
    drifted,
)
from proxy.upstream.models import parse_catalog
from tests.support.processes import SandboxProcess
from tests.support.published import product_document
from tests.support.sandbox import basic_auth
from tests.support.settings import REPO_ROOT, clean_env
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]

GRANT = {"grant_type": "client_credentials"}
AUTH = {"Authorization": basic_auth(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)}
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_sandbox_app())


def state_of(client: Client) -> SandboxState:
    return client.app[SANDBOX_STATE]


async def get_token(client: Client, prefix: str = "") -> str:
    response = await client.post(f"{prefix}/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 200
    body = await response.json()
    token: str = body["access_token"]
    return token


async def get_products(client: Client, token: str, prefix: str = "") -> aiohttp.ClientResponse:
    return await client.get(f"{prefix}/v1/products", headers={"Authorization": f"Bearer {token}"})


# --- token endpoint ---------------------------------------------------------------------------


async def test_token_success_body(client: Client) -> None:
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {
        "status_code",
        "access_token",
        "token_type",
        "expires_in",
        "userId",
        "scope",
    }
    assert body["status_code"] == 200
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 3600
    assert body["userId"] == "user"
    assert body["scope"] == "all"
    assert JWT_SHAPE.match(body["access_token"])
    assert 2800 <= len(body["access_token"]) <= 3300


async def test_every_token_request_issues_a_new_token_and_old_ones_stay_valid(
    client: Client,
) -> None:
    first = await get_token(client)
    second = await get_token(client)
    assert first != second
    for token in (first, second):
        assert (await get_products(client, token)).status == 200


async def test_upstream_routes_also_live_under_management_api(client: Client) -> None:
    token = await get_token(client, "/management-api")
    response = await get_products(client, token, "/management-api")
    assert response.status == 200
    assert await response.json() == default_catalog()


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [(SANDBOX_CLIENT_ID, "wrong-secret"), ("someone-else", SANDBOX_CLIENT_SECRET), ("", "")],
)
async def test_bad_credentials(client: Client, client_id: str, client_secret: str) -> None:
    headers = {"Authorization": basic_auth(client_id, client_secret)}
    response = await client.post("/oauth/token", json=GRANT, headers=headers)
    assert response.status == 400
    assert await response.json() == {
        "statusCode": 400,
        "errorCode": "CognitoAuthenticationError",
        "message": "User does not exist.",
    }


async def test_custom_credentials(aiohttp_client: AiohttpClient) -> None:
    secret = secrets.token_urlsafe()
    client = await aiohttp_client(create_sandbox_app(client_id="me", client_secret=secret))
    headers = {"Authorization": basic_auth("me", secret)}
    ok = await client.post("/oauth/token", json=GRANT, headers=headers)
    assert ok.status == 200
    default = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert default.status == 400


@pytest.mark.parametrize(
    ("kwargs", "error_code"),
    [
        ({"data": "grant_type=client_credentials", "headers": AUTH}, "UnsupportedContentTypeError"),
        ({"data": json.dumps(GRANT), "headers": AUTH}, "UnsupportedContentTypeError"),
        (
            {"data": b"", "headers": {"Content-Type": "application/json", **AUTH}},
            "BodyValidationError",
        ),
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json", **AUTH}},
            "BodyValidationError",
        ),
        ({"json": {"grant_type": "password"}, "headers": AUTH}, "BodyValidationError"),
        ({"json": [GRANT], "headers": AUTH}, "BodyValidationError"),
        ({"json": GRANT}, "AuthValidationError"),
        ({"json": GRANT, "headers": {"Authorization": "Bearer abc"}}, "AuthValidationError"),
        ({"json": GRANT, "headers": {"Authorization": "Basic %%%"}}, "AuthValidationError"),
    ],
)
async def test_token_request_errors(
    client: Client, kwargs: dict[str, Any], error_code: str
) -> None:
    response = await client.post("/oauth/token", **kwargs)
    assert response.status == 400
    body = await response.json()
    assert body["statusCode"] == 400
    assert body["errorCode"] == error_code
    assert body["message"]


# --- products endpoint ------------------------------------------------------------------------


async def test_products_success(client: Client) -> None:
    response = await get_products(client, await get_token(client))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert await response.json() == default_catalog()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic c2FuZGJveC1jbGllbnQ6c2FuZGJveC1zZWNyZXQ="},
    ],
)
async def test_products_needs_an_issued_bearer_token(
    client: Client, headers: dict[str, str]
) -> None:
    await get_token(client)
    response = await client.get("/v1/products", headers=headers)
    assert response.status == 401
    assert await response.read() == b""


async def test_expired_token_is_rejected(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(token_ttl=1))
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert (await response.json())["expires_in"] == 1
    token = (await response.json())["access_token"]
    assert (await get_products(client, token)).status == 200
    await asyncio.sleep(1.05)
    expired = await get_products(client, token)
    assert expired.status == 401
    assert await expired.read() == b""


async def test_revoke_tokens_invalidates_tokens_issued_so_far(client: Client) -> None:
    old = await get_token(client)
    assert state_of(client).revoke_tokens() == 1
    assert (await get_products(client, old)).status == 401
    new = await get_token(client)
    assert (await get_products(client, new)).status == 200
    assert (await get_products(client, old)).status == 401


async def test_catalog_replacement_is_served(client: Client) -> None:
    token = await get_token(client)
    state_of(client).catalog = default_catalog()[:3]
    body = await (await get_products(client, token)).json()
    assert [product["id"] for product in body] == [1001, 1002, 1003]


# --- faults -----------------------------------------------------------------------------------


async def test_products_latency(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.products_latency = 0.2
    started = time.monotonic()
    response = await get_products(client, token)
    assert response.status == 200
    assert time.monotonic() - started >= 0.2


async def test_token_latency(client: Client) -> None:
    state_of(client).faults.token_latency = 0.2
    started = time.monotonic()
    await get_token(client)
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("status", "error_code"),
    [
        (500, "InternalServerError"),
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
    ],
)
async def test_products_status_5xx_has_a_json_body(
    client: Client, status: int, error_code: str
) -> None:
    token = await get_token(client)
    state_of(client).faults.products_status = status
    response = await get_products(client, token)
    assert response.status == status
    body = await response.json()
    assert body["statusCode"] == status
    assert body["errorCode"] == error_code
    assert body["message"]


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_products_status_4xx_has_an_empty_body(client: Client, status: int) -> None:
    token = await get_token(client)
    state_of(client).faults.products_status = status
    response = await get_products(client, token)
    assert response.status == status
    assert await response.read() == b""


async def test_rate_limit_with_retry_after(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.rate_limit_retry_after = 7
    response = await get_products(client, token)
    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    assert await response.read() == b""


async def test_malformed_body(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.malformed_body = True
    response = await get_products(client, token)
    assert response.status == 200
    assert response.content_type == "application/json"
    with pytest.raises(ValueError, match=r"."):
        json.loads(await response.read())


async def test_wrong_shape(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.wrong_shape = True
    response = await get_products(client, token)
    assert response.status == 200
    body = json.loads(await response.read())
    assert not isinstance(body, list)


async def test_reject_all_tokens(client: Client) -> None:
    state_of(client).faults.reject_all_tokens = True
    token = await get_token(client)
    response = await get_products(client, token)
    assert response.status == 401
    assert await response.read() == b""


async def test_token_status_400_is_bad_credentials(client: Client) -> None:
    state_of(client).faults.token_status = 400
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["errorCode"] == "CognitoAuthenticationError"


async def test_token_status_5xx(client: Client) -> None:
    state_of(client).faults.token_status = 503
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 503
    body = await response.json()
    assert body["statusCode"] == 503
    assert body["errorCode"] == "ServiceUnavailable"


async def test_times_limits_products_faults_then_switches_them_off(client: Client) -> None:
    token = await get_token(client)
    faults = state_of(client).faults
    faults.products_status = 500
    faults.token_latency = 0.01
    faults.times = 2
    assert (await get_products(client, token)).status == 500
    assert faults.times == 1
    assert (await get_products(client, token)).status == 500
    assert (await get_products(client, token)).status == 200
    assert faults.products_status is None
    assert faults.times is None
    # Token faults are not limited by `times`.
    assert faults.token_latency == 0.01


@pytest.mark.parametrize(
    ("setting", "status"),
    [
        ({"rate_limit_retry_after": 1}, 429),
        ({"products_status": 502}, 502),
        ({"malformed_body": True}, 401),
        ({"wrong_shape": True}, 401),
    ],
)
async def test_faults_before_and_after_the_token_check(
    client: Client, setting: dict[str, Any], status: int
) -> None:
    state_of(client).faults.load(setting)
    response = await get_products(client, "not-a-token")
    assert response.status == status


async def test_rate_limit_wins_over_status(client: Client) -> None:
    state_of(client).faults.load({"rate_limit_retry_after": 3, "products_status": 500})
    assert (await get_products(client, await get_token(client))).status == 429


async def test_hang_times_out_and_the_app_still_closes_quickly(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.hang = True
    timeout = aiohttp.ClientTimeout(total=0.5)
    with pytest.raises(TimeoutError):
        await client.get(
            "/v1/products", headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 1.0


async def test_shutdown_releases_a_hanging_request(client: Client) -> None:
    token = await get_token(client)
    state_of(client).faults.hang = True
    pending = asyncio.create_task(get_products(client, token))
    await asyncio.sleep(0.2)
    assert not pending.done()
    started = time.monotonic()
    await client.server.close()
    assert time.monotonic() - started < 1.0
    response = await pending
    assert response.status == 503


# --- counters ---------------------------------------------------------------------------------


async def test_counters_count_every_request(client: Client) -> None:
    state = state_of(client)
    token = await get_token(client)
    await client.post("/oauth/token", json=GRANT)
    await get_products(client, token)
    await client.get("/v1/products")
    state.faults.products_status = 500
    await get_products(client, token)
    assert state.token_requests == 2
    assert state.tokens_issued == 1
    assert state.products_requests == 3
    assert state.products_authorizations == [f"Bearer {token}", "", f"Bearer {token}"]
    state.reset_counters()
    assert state.token_requests == 0
    assert state.products_requests == 0
    assert state.products_authorizations == []


# --- control API ------------------------------------------------------------------------------


async def test_control_stats(client: Client) -> None:
    token = await get_token(client)
    await get_products(client, token)
    response = await client.get("/_sandbox/stats")
    assert response.status == 200
    stats = await response.json()
    assert stats["token_requests"] == 1
    assert stats["products_requests"] == 1
    assert stats["products_authorizations"] == [f"Bearer {token}"]
    assert stats["tokens_valid"] == 1
    assert stats["catalog_size"] == len(default_catalog())
    assert stats["faults"] == Faults().as_dict()


async def test_control_faults_replace_the_faults(client: Client) -> None:
    faults = state_of(client).faults
    response = await client.post("/_sandbox/faults", json={"hang": True, "products_latency": 1})
    assert response.status == 200
    assert faults.hang is True
    assert faults.products_latency == 1.0
    response = await client.post("/_sandbox/faults", json={"rate_limit_retry_after": 5})
    assert response.status == 200
    assert (await response.json())["rate_limit_retry_after"] == 5
    assert faults.hang is False
    assert faults.products_latency == 0.0
    assert faults.rate_limit_retry_after == 5


@pytest.mark.parametrize(
    "body",
    [
        {"no_such_fault": True},
        {"hang": "yes"},
        {"products_latency": -1},
        {"products_latency": True},
        {"products_status": 200},
        {"times": -1},
        {"token_status": "500"},
        [],
    ],
)
async def test_control_faults_rejects_bad_settings(client: Client, body: object) -> None:
    state_of(client).faults.hang = True
    response = await client.post("/_sandbox/faults", json=body)
    assert response.status == 400
    assert (await response.json())["error"]
    # A rejected setting changes nothing.
    assert state_of(client).faults.hang is True


async def test_control_faults_rejects_a_body_that_is_not_json(client: Client) -> None:
    response = await client.post("/_sandbox/faults", data=b"{", headers={"Content-Type": "x"})
    assert response.status == 400


async def test_control_revoke(client: Client) -> None:
    token = await get_token(client)
    response = await client.post("/_sandbox/revoke")
    assert response.status == 200
    assert await response.json() == {"revoked": 1}
    assert (await get_products(client, token)).status == 401


async def test_control_reset(client: Client) -> None:
    state = state_of(client)
    token = await get_token(client)
    state.faults.hang = True
    state.catalog = []
    response = await client.post("/_sandbox/reset")
    assert response.status == 200
    stats = await response.json()
    assert stats["token_requests"] == 0
    assert stats["tokens_valid"] == 0
    assert state.faults == Faults()
    assert state.catalog == default_catalog()
    assert (await get_products(client, token)).status == 401


async def test_control_catalog(client: Client) -> None:
    catalog = [{"id": 7, "product": "Test product", "material": "Test"}]
    response = await client.put("/_sandbox/catalog", json=catalog)
    assert response.status == 200
    assert await (await get_products(client, await get_token(client))).json() == catalog
    bad: object
    for bad in ({"products": []}, [1, 2]):
        assert (await client.put("/_sandbox/catalog", json=bad)).status == 400
    assert (await client.put("/_sandbox/catalog", data=b"[")).status == 400


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_size_and_unique_ids() -> None:
    catalog = default_catalog()
    assert 20 <= len(catalog) <= 40
    ids = [product["id"] for product in catalog]
    assert all(isinstance(product_id, int) for product_id in ids)
    assert len(set(ids)) == len(ids)


def test_catalog_is_a_new_deep_copy_every_call() -> None:
    first = default_catalog()
    first[0]["one_time_charges"][0]["amount_net"] = 999
    first.pop()
    assert default_catalog()[0]["one_time_charges"][0]["amount_net"] == 10
    assert len(default_catalog()) == len(first) + 1


def test_catalog_has_the_openapi_example_product() -> None:
    product = next(product for product in default_catalog() if product["id"] == 1001)
    assert product["product"] == "1NCE IoT FlexSIM - Standard"
    assert product["material"] == "1NCE FlexSIM"
    assert product["min_contract_duration"] == 120
    assert product["one_time_charges"] == [
        {"name": "provisionCharge", "amount_net": 10, "currency": "EUR"}
    ]


@pytest.mark.parametrize(
    "words",
    [
        ("Lifetime Flat",),
        ("FlexSIM",),
        ("MFF2",),
        ("Industrial",),
        ("Business",),
        ("Top-up", "top up"),
        ("High Data",),
        ("Device Locator",),
        ("Device Inspector",),
        ("Device Controller",),
        ("Energy Saver",),
        ("Device Integrator",),
        ("Cloud Integrator",),
        ("Device Authenticator",),
        ("2FF", "3FF", "4FF"),
    ],
)
def test_catalog_covers_every_family(words: tuple[str, ...]) -> None:
    names = [f"{product['product']} {product['material']}".lower() for product in default_catalog()]
    assert any(word.lower() in name for name in names for word in words)


def test_lifetime_flat_products_look_like_the_real_offer() -> None:
    flats = [product for product in default_catalog() if "Lifetime Flat" in product["product"]]
    assert flats
    for product in flats:
        assert product["min_contract_duration"] == 120
        assert "500 MB + 250 SMS" in product["product"]
    single = [product for product in flats if product["package_size"] == 1]
    assert all(10 <= product["one_time_charges"][0]["amount_net"] <= 14 for product in single)


def test_high_data_addons_have_recurring_charges() -> None:
    addons = [product for product in default_catalog() if "High Data" in product["product"]]
    assert len(addons) >= 3
    assert all(product["recurring_charges"] for product in addons)


def test_catalog_has_the_irregularities_of_real_bodies() -> None:
    catalog = default_catalog()
    schema_fields = set(product_document()["components"]["schemas"]["Product"]["properties"])
    assert any(product["recurring_charges"] is None for product in catalog)
    assert any(isinstance(product["recurring_charges"], dict) for product in catalog)
    assert any(set(product) - schema_fields for product in catalog)
    assert any("maxQuantity" not in product for product in catalog)
    charges = [
        charge
        for product in catalog
        for key in ("one_time_charges", "recurring_charges")
        for charge in (product[key] if isinstance(product[key], list) else [product[key] or {}])
    ]
    assert any(charge.get("currency") == "USD" for charge in charges)
    amounts = [charge["amount_net"] for charge in charges if charge]
    assert all(isinstance(amount, int | float) for amount in amounts)
    assert any(isinstance(amount, float) for amount in amounts)


# --- the Faults object ------------------------------------------------------------------------


def test_faults_reset_and_load() -> None:
    faults = Faults(hang=True, products_status=500, times=3)
    faults.reset()
    assert faults == Faults()
    faults.load({"token_status": 502, "token_latency": 0.5})
    assert faults == Faults(token_status=502, token_latency=0.5)
    with pytest.raises(ValueError, match="unknown"):
        faults.load({"nope": 1})
    assert faults == Faults(token_status=502, token_latency=0.5)


def test_faults_times_zero_means_no_fault() -> None:
    faults = Faults(products_status=500, times=0)
    assert faults.for_products_request().products_status is None
    assert faults == Faults()


def test_state_is_created_with_the_app_arguments() -> None:
    secret = secrets.token_urlsafe()
    app = create_sandbox_app(client_id="a", client_secret=secret, token_ttl=5, catalog=[])
    state = app[SANDBOX_STATE]
    assert (state.client_id, state.client_secret, state.token_ttl, state.catalog) == (
        "a",
        secret,
        5,
        [],
    )
    shared = SandboxState()
    assert create_sandbox_app(state=shared)[SANDBOX_STATE] is shared
    with pytest.raises(ValueError, match="token_ttl"):
        create_sandbox_app(token_ttl=0)
    assert "secret" not in repr(SandboxState())


# --- bounds faults: redirects, oversized bodies, gzip bombs, rate limits on tokens -------------


async def test_redirect_to_answers_302_before_the_token_check(client: Client) -> None:
    state_of(client).faults.redirect_to = "http://elsewhere.invalid/v1/products"
    response = await client.get("/v1/products", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "http://elsewhere.invalid/v1/products"
    assert state_of(client).products_requests == 1


@pytest.mark.parametrize("size", [0, 1, 65_535, 65_536, 3 * 65_536 + 5])
async def test_oversized_body_is_streamed_with_exactly_n_bytes(client: Client, size: int) -> None:
    token = await get_token(client)
    state_of(client).faults.oversized_body = size
    response = await get_products(client, token)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert "Content-Length" not in response.headers
    assert response.headers["Transfer-Encoding"] == "chunked"
    body = await response.read()
    assert len(body) == size
    opening = b'[{"id":1001,"product":"1NCE IoT FlexSIM - Standard"'
    assert body[: len(opening)] == opening[:size]
    assert state_of(client).streamed_bytes == size
    assert state_of(client).streams_cut == 0


async def test_oversized_body_needs_a_valid_token(client: Client) -> None:
    state_of(client).faults.oversized_body = 10
    response = await get_products(client, "not-a-token")
    assert response.status == 401


async def test_oversized_body_stops_when_the_client_leaves(client: Client) -> None:
    state = state_of(client)
    token = await get_token(client)
    state.faults.oversized_body = 1_000_000_000
    response = await get_products(client, token)
    assert len(await response.content.readexactly(100_000)) == 100_000
    response.close()
    await eventually(lambda: state.streams_cut == 1)
    assert 100_000 <= state.streamed_bytes < 64_000_000


@pytest.mark.parametrize("size", [0, 1, 1_000_000, 30_000_000])
async def test_gzip_bomb_inflates_to_exactly_n_bytes(client: Client, size: int) -> None:
    token = await get_token(client)
    state_of(client).faults.gzip_bomb = size
    response = await client.get(
        "/v1/products", headers={"Authorization": f"Bearer {token}"}, auto_decompress=False
    )
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert "Content-Length" not in response.headers
    wire = await response.read()
    inflated = zlib.decompress(wire, 16 + zlib.MAX_WBITS)
    assert len(inflated) == size
    assert inflated.count(0) == size
    assert state_of(client).streamed_bytes == len(wire)
    if size >= 1_000_000:
        assert len(wire) * 500 < size


async def test_gzip_bomb_stops_when_the_client_leaves(client: Client) -> None:
    state = state_of(client)
    token = await get_token(client)
    state.faults.gzip_bomb = 100 * 2**30
    started = time.monotonic()
    response = await client.get(
        "/v1/products", headers={"Authorization": f"Bearer {token}"}, auto_decompress=False
    )
    assert len(await response.content.readexactly(10_000)) == 10_000
    response.close()
    await eventually(lambda: state.streams_cut == 1)
    # 100 GiB would take minutes to compress; the sandbox stopped long before.
    assert time.monotonic() - started < 5
    assert state.streamed_bytes < 20_000_000


@pytest.mark.parametrize(
    ("fault", "value"), [("redirect_to", "http://x.invalid/"), ("oversized_body", 5)]
)
async def test_new_products_faults_obey_times(client: Client, fault: str, value: object) -> None:
    token = await get_token(client)
    faults = state_of(client).faults
    faults.load({fault: value, "times": 1})
    first = await client.get(
        "/v1/products", headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
    )
    assert first.status == (302 if fault == "redirect_to" else 200)
    assert len(await first.read()) in {0, 5}
    second = await get_products(client, token)
    assert second.status == 200
    assert await second.json() == default_catalog()
    assert faults == Faults()


async def test_gzip_bomb_obeys_times(client: Client) -> None:
    token = await get_token(client)
    faults = state_of(client).faults
    faults.load({"gzip_bomb": 10, "times": 1})
    first = await get_products(client, token)
    assert await first.read() == bytes(10)
    assert await (await get_products(client, token)).json() == default_catalog()


async def test_token_rate_limit_retry_after(client: Client) -> None:
    state_of(client).faults.token_rate_limit_retry_after = 9
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 429
    assert response.headers["Retry-After"] == "9"
    assert await response.read() == b""
    assert state_of(client).tokens_issued == 0


@pytest.mark.parametrize(
    "value", ["Wed, 21 Oct 2015 07:28:00 GMT", "-5", "soon", "", "1.5", "99999999999999999999"]
)
@pytest.mark.parametrize(
    "setting",
    [
        {"rate_limit_retry_after": 3},
        {"products_status": 429},
        {"token_rate_limit_retry_after": 3},
        {"token_status": 429},
    ],
)
async def test_retry_after_header_is_sent_verbatim_with_every_429(
    client: Client, setting: dict[str, Any], value: str
) -> None:
    token = await get_token(client)
    state_of(client).faults.load({**setting, "retry_after_header": value})
    if any(name.startswith("token") for name in setting):
        response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    else:
        response = await get_products(client, token)
    assert response.status == 429
    assert response.headers.getall("Retry-After") == [value]


async def test_products_status_429_has_no_retry_after_unless_told(client: Client) -> None:
    state_of(client).faults.products_status = 429
    response = await get_products(client, await get_token(client))
    assert response.status == 429
    assert "Retry-After" not in response.headers


async def test_token_hang_times_out_and_shutdown_releases_it(client: Client) -> None:
    state_of(client).faults.token_hang = True
    with pytest.raises(TimeoutError):
        await client.post(
            "/oauth/token", json=GRANT, headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.3)
        )
    pending = asyncio.create_task(client.post("/oauth/token", json=GRANT, headers=AUTH))
    await asyncio.sleep(0.2)
    assert not pending.done()
    started = time.monotonic()
    await client.server.close()
    assert time.monotonic() - started < 1.0
    response = await pending
    assert response.status == 503
    assert state_of(client).tokens_issued == 0


async def test_token_redirect_to(client: Client) -> None:
    state_of(client).faults.token_redirect_to = "https://login.elsewhere.invalid/token"
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "https://login.elsewhere.invalid/token"
    assert state_of(client).tokens_issued == 0


async def test_token_oversized_body(client: Client) -> None:
    state_of(client).faults.token_oversized_body = 200_000
    response = await client.post("/oauth/token", json=GRANT, headers=AUTH)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert "Content-Length" not in response.headers
    body = await response.read()
    assert len(body) == 200_000
    assert body.startswith(b'{"access_token":"abcdef')
    assert state_of(client).tokens_issued == 0
    # Bad credentials still get their usual answer.
    bad = {"Authorization": basic_auth(SANDBOX_CLIENT_ID, "wrong")}
    refused = await client.post("/oauth/token", json=GRANT, headers=bad)
    assert refused.status == 400


async def test_token_faults_are_not_limited_by_times(client: Client) -> None:
    token = await get_token(client)
    faults = state_of(client).faults
    faults.load({"token_redirect_to": "http://x.invalid/", "products_status": 500, "times": 1})
    await get_products(client, token)
    assert faults.times is None
    assert faults.token_redirect_to == "http://x.invalid/"


async def test_control_faults_sets_the_new_switches(client: Client) -> None:
    settings = {
        "redirect_to": "http://a.invalid/x",
        "oversized_body": 1000,
        "gzip_bomb": 2000,
        "token_rate_limit_retry_after": 4,
        "token_hang": True,
        "token_redirect_to": "http://b.invalid/y",
        "token_oversized_body": 3000,
        "retry_after_header": "Wed, 21 Oct 2015 07:28:00 GMT",
    }
    response = await client.post("/_sandbox/faults", json=settings)
    assert response.status == 200
    active = await response.json()
    assert {name: active[name] for name in settings} == settings
    expected = Faults()
    expected.load(settings)
    assert state_of(client).faults == expected
    assert expected.token_hang is True


@pytest.mark.parametrize(
    "body",
    [
        {"redirect_to": 5},
        {"redirect_to": ""},
        {"redirect_to": "http://x.invalid/\r\nX-Evil: 1"},
        {"token_redirect_to": ["http://x.invalid/"]},
        {"oversized_body": -1},
        {"oversized_body": 1.5},
        {"gzip_bomb": True},
        {"token_oversized_body": "10"},
        {"token_rate_limit_retry_after": -3},
        {"token_hang": 1},
        {"retry_after_header": 7},
        {"retry_after_header": "1\n2"},
        {"retry_after_header": "caf\u00e9"},
    ],
)
async def test_control_faults_rejects_bad_new_switches(client: Client, body: object) -> None:
    state_of(client).faults.hang = True
    response = await client.post("/_sandbox/faults", json=body)
    assert response.status == 400
    assert (await response.json())["error"]
    assert state_of(client).faults == Faults(hang=True)


async def test_stream_counters_in_stats_and_reset(client: Client) -> None:
    state = state_of(client)
    state.faults.oversized_body = 70_000
    await (await get_products(client, await get_token(client))).read()
    stats = await (await client.get("/_sandbox/stats")).json()
    assert (stats["streamed_bytes"], stats["streams_cut"]) == (70_000, 0)
    state.streams_cut = 2
    state.reset_counters()
    assert (state.streamed_bytes, state.streams_cut) == (0, 0)


# --- drift ------------------------------------------------------------------------------------


def product(catalog: list[dict[str, Any]], product_id: int) -> dict[str, Any]:
    return next(item for item in catalog if item["id"] == product_id)


def changed_default(price: float, limit: int, *, added: bool = False) -> list[dict[str, Any]]:
    """The default catalog with product 1001's price, 1201's limit and maybe 1305 set."""
    catalog = default_catalog()
    product(catalog, 1001)["one_time_charges"][0]["amount_net"] = price
    product(catalog, 1201)["maxQuantity"] = limit
    return [*catalog, drift_product()] if added else catalog


def replay(steps: int) -> list[dict[str, Any]]:
    """The default catalog after ``steps`` drift steps."""
    catalog = default_catalog()
    for step in range(1, steps + 1):
        catalog, _ = drifted(catalog, step)
    return catalog


def test_drift_cycle_changes_a_price_a_limit_then_adds_and_removes_a_product() -> None:
    state = SandboxState()
    expected = [
        ("product 1001 one-time provisionCharge: 10 -> 10.5 EUR", changed_default(10.5, 100)),
        ("product 1201 maxQuantity: 100 -> 200", changed_default(10.5, 200)),
        (
            "product 1305 added: 1NCE High Data IoT Add-on - 50 GB",
            changed_default(10.5, 200, added=True),
        ),
        ("product 1305 removed", changed_default(10.5, 200)),
        # The next cycle: the price moves further, the limit goes back down.
        ("product 1001 one-time provisionCharge: 10.5 -> 11.0 EUR", changed_default(11.0, 200)),
        ("product 1201 maxQuantity: 200 -> 100", changed_default(11.0, 100)),
        (
            "product 1305 added: 1NCE High Data IoT Add-on - 50 GB",
            changed_default(11.0, 100, added=True),
        ),
        ("product 1305 removed", changed_default(11.0, 100)),
        ("product 1001 one-time provisionCharge: 11.0 -> 11.5 EUR", changed_default(11.5, 100)),
        ("product 1201 maxQuantity: 100 -> 200", changed_default(11.5, 200)),
    ]
    for step, (description, catalog) in enumerate(expected, start=1):
        assert state.drift() == description
        assert state.drift_steps == step
        assert state.catalog == catalog
    assert [item["id"] for item in state.catalog] == [item["id"] for item in default_catalog()]


def test_drift_is_deterministic_and_starts_over_after_a_reset() -> None:
    def nine_steps(state: SandboxState) -> list[tuple[str, str]]:
        # Compared as JSON text: 11.0 and 11 are equal numbers but different bytes.
        return [(state.drift(), json.dumps(state.catalog, separators=(",", ":"))) for _ in range(9)]

    state = SandboxState()
    first = nine_steps(state)
    state.reset()
    assert state.drift_steps == 0
    assert state.catalog == default_catalog()
    assert nine_steps(state) == first
    assert nine_steps(SandboxState()) == first
    assert '"amount_net":10.5,' in first[0][1]
    assert '"amount_net":11.0,' in first[4][1]
    assert json.loads(first[8][1]) == replay(9)


def test_drifted_leaves_its_argument_alone_and_counts_from_one() -> None:
    original = default_catalog()
    state = SandboxState(catalog=original)
    for _ in range(4):
        state.drift()
    assert original == default_catalog()
    assert state.catalog is not original
    with pytest.raises(ValueError, match="from 1"):
        drifted(default_catalog(), 0)


def test_drift_changes_nothing_in_a_catalog_without_its_products() -> None:
    catalog = [{"id": 7, "product": "Test product", "material": "Test"}]
    state = SandboxState(catalog=catalog)
    descriptions = [state.drift() for _ in range(2)]
    assert descriptions == [
        "product 1001 has no priced one-time charge: no change",
        "product 1201 has no maxQuantity: no change",
    ]
    assert state.catalog == catalog
    assert state.drift() == "product 1305 added: 1NCE High Data IoT Add-on - 50 GB"
    assert state.drift() == "product 1305 removed"
    assert state.drift_steps == 4
    assert state.catalog == catalog


def test_every_drifted_catalog_parses_and_the_new_product_is_a_high_data_addon() -> None:
    catalog = default_catalog()
    for step in range(1, 9):
        catalog, _ = drifted(catalog, step)
        products = parse_catalog(json.dumps(catalog).encode())
        assert len(products) == len(default_catalog()) + (1 if step % 4 == 3 else 0)
    added = parse_catalog(json.dumps(replay(3)).encode())[-1]
    assert added.id == 1305
    assert 1305 not in {item["id"] for item in default_catalog()}
    assert added.material == "1NCE High Data IoT"
    assert added.max_quantity == 500
    assert added.min_contract_duration == 24
    assert [charge.amount_net for charge in added.recurring_charges] == [Decimal("24.99")]
    assert [charge.amount_net for charge in added.one_time_charges] == [Decimal(5)]


async def test_drift_changes_what_the_products_endpoint_serves(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_sandbox_app(drift=0.05))
    state = state_of(client)
    token = await get_token(client)
    await eventually(lambda: state.drift_steps >= 5, within=5)
    before = state.drift_steps
    response = await get_products(client, token)
    body = await response.json()
    after = state.drift_steps
    assert response.status == 200
    # The body is the catalog of some step between the two reads, never a mix.
    assert body in [replay(steps) for steps in range(before, after + 1)]
    assert product(body, 1001)["one_time_charges"][0]["amount_net"] >= 11.0
    assert (await (await client.get("/_sandbox/stats")).json())["drift_steps"] >= before


async def test_drift_stops_when_the_app_stops(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(drift=0.05))
    state = state_of(client)
    await eventually(lambda: state.drift_steps >= 1, within=5)
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 1.0
    stopped_at = state.drift_steps
    await asyncio.sleep(0.2)
    assert state.drift_steps == stopped_at


async def test_nothing_drifts_without_the_option(client: Client) -> None:
    token = await get_token(client)
    await asyncio.sleep(0.3)
    state = state_of(client)
    assert state.drift_steps == 0
    assert await (await get_products(client, token)).json() == default_catalog()
    assert (await (await client.get("/_sandbox/stats")).json())["drift_steps"] == 0


async def test_reset_starts_the_drift_cycle_over(client: Client) -> None:
    state = state_of(client)
    state.drift()
    state.drift()
    response = await client.post("/_sandbox/reset")
    assert (await response.json())["drift_steps"] == 0
    assert state.drift() == "product 1001 one-time provisionCharge: 10 -> 10.5 EUR"


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_drift_must_be_a_positive_number_of_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match="drift"):
        create_sandbox_app(drift=seconds)
    with pytest.raises(ValueError, match="drift"):
        create_sandbox_app(state=SandboxState(), drift=seconds)


class DriftingSandboxProcess(SandboxProcess):
    """``python -m proxy.sandbox --drift 0.05``."""

    def _argv(self) -> list[str]:
        return [*super()._argv(), "--drift", "0.05"]


async def test_sandbox_command_drifts_with_the_option() -> None:
    with DriftingSandboxProcess() as emulator:
        deadline = time.monotonic() + 5
        while (stats := await emulator.stats())["drift_steps"] < 3:
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.05)
        assert stats["catalog_size"] in {30, 31}
    log = emulator.log_text()
    assert "catalog drift every 0.05 s" in log
    assert "product 1001 one-time provisionCharge: 10 -> 10.5 EUR" in log


@pytest.mark.parametrize("value", ["0", "-2", "nan"])
def test_sandbox_command_refuses_a_drift_that_is_not_positive(value: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "proxy.sandbox", "--port", "0", "--drift", value],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2
    assert "--drift must be a number of seconds > 0" in result.stderr
    assert "Traceback" not in result.stderr
