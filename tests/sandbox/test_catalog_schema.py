"""The emulator's two catalogs against 1NCE's published product schema (tests/data).

``irregular`` (the default) keeps the odd shapes real bodies have; ``strict`` serves the same
products valid against 1NCE's ``Product`` schema, for clients generated from that schema.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from pytest_aiohttp import AiohttpClient

from proxy.sandbox import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SandboxState,
    create_sandbox_app,
    default_catalog,
)
from proxy.sandbox.catalog import DRIFT_CYCLE, builtin_catalog, drift_product
from tests.support.processes import ProxyProcess, SandboxProcess
from tests.support.published import (
    PRODUCT_SCHEMA_KEYWORDS,
    product_document,
    products_validator,
    schema_keywords,
)
from tests.support.sandbox import basic_auth

GRANT = {"grant_type": "client_credentials"}
AUTH = {"Authorization": basic_auth(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)}
CHARGE_LISTS = ("one_time_charges", "recurring_charges")


def invalid_ids(catalog: list[dict[str, Any]], *, extra_fields: bool = True) -> set[int]:
    """Return the ids of the products the published schema refuses."""
    errors = products_validator(extra_fields=extra_fields).iter_errors(catalog)
    return {catalog[error.path[0]]["id"] for error in errors}


def assert_valid(catalog: object) -> None:
    """Fail naming every place where ``catalog`` breaks the published schema (extras refused)."""
    errors = [
        f"{list(error.path)}: {error.message}"
        for error in products_validator(extra_fields=False).iter_errors(catalog)
    ]
    assert errors == []


def test_the_copy_of_the_schema_uses_only_keywords_the_validator_checks() -> None:
    document = product_document()
    schemas = document["components"]["schemas"]
    assert set(schemas) == {"Product", "Charge"}
    answers = document["paths"]["/v1/products"]["get"]["responses"]["200"]["content"]
    used = schema_keywords([*schemas.values(), *(answer["schema"] for answer in answers.values())])
    assert used <= PRODUCT_SCHEMA_KEYWORDS, used - PRODUCT_SCHEMA_KEYWORDS
    assert {"type", "properties", "items", "$ref"} <= used


def test_the_strict_catalog_is_valid_against_the_published_schema() -> None:
    catalog = builtin_catalog("strict")
    assert_valid(catalog)
    assert all(isinstance(product["recurring_charges"], list) for product in catalog)


def test_the_default_catalog_keeps_what_the_schema_refuses() -> None:
    catalog = default_catalog()
    refused = invalid_ids(catalog)
    # A null array (1104), a single charge object (1303), nulls in an integer field (1001).
    assert {1001, 1104, 1303} <= refused
    assert 1404 not in refused
    # Unknown fields (1404) break only a client that refuses fields it does not know.
    assert 1404 in invalid_ids(catalog, extra_fields=False)
    assert builtin_catalog("irregular") == catalog


def test_both_catalogs_hold_the_same_products() -> None:
    irregular, strict = default_catalog(), builtin_catalog("strict")
    published = set(product_document()["components"]["schemas"]["Product"]["properties"])
    assert [product["id"] for product in strict] == [product["id"] for product in irregular]
    for before, after in zip(irregular, strict, strict=True):
        for name, value in after.items():
            if name in CHARGE_LISTS:
                continue
            assert value == before[name], (before["id"], name)
        # Only nulls and fields unknown to the schema are left out.
        for name in set(before) - set(after):
            assert before[name] is None or name not in published, (before["id"], name)
    by_id = {product["id"]: product for product in strict}
    single = next(product for product in irregular if product["id"] == 1303)
    assert by_id[1303]["recurring_charges"] == [single["recurring_charges"]]
    assert by_id[1104]["recurring_charges"] == []
    assert by_id[1001]["one_time_charges"] == [
        {"name": "provisionCharge", "amount_net": 10, "currency": "EUR"}
    ]
    assert "maxQuantityPerCustomer" not in by_id[1001]
    assert by_id[1005]["maxQuantityPerCustomer"] == 5000


def test_drift_keeps_a_strict_catalog_strict() -> None:
    assert_valid([drift_product()])
    state = SandboxState(catalog=builtin_catalog("strict"), catalog_style="strict")
    changes = []
    for _ in range(2 * DRIFT_CYCLE):
        changes.append(state.drift())
        assert_valid(state.catalog)
    # Every step changed something (a step that cannot apply says "no change").
    assert not [change for change in changes if "no change" in change]
    assert state.catalog != builtin_catalog("strict")


async def test_the_emulator_serves_and_resets_to_the_strict_catalog(
    aiohttp_client: AiohttpClient,
) -> None:
    client: TestClient[Request, Application] = await aiohttp_client(
        create_sandbox_app(catalog_style="strict")
    )
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["catalog_style"] == "strict"
    body = await _products(client)
    assert_valid(body)
    assert body == builtin_catalog("strict")
    assert (await client.put("/_sandbox/catalog", json=default_catalog())).status == 200
    assert await _products(client) == default_catalog()
    assert (await client.post("/_sandbox/reset")).status == 200
    assert await _products(client) == builtin_catalog("strict")


async def _products(client: TestClient[Request, Application]) -> Any:
    token = await (await client.post("/oauth/token", json=GRANT, headers=AUTH)).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    response = await client.get("/v1/products", headers=headers)
    assert response.status == 200
    return await response.json()


async def test_the_emulator_command_serves_the_strict_catalog_on_request() -> None:
    with SandboxProcess(catalog="strict") as emulator:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.post(f"{emulator.url}/oauth/token", json=GRANT, headers=AUTH) as got:
                token = (await got.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{emulator.url}/v1/products", headers=headers) as got:
                body = await got.json()
    assert_valid(body)
    assert body == builtin_catalog("strict")


@pytest.mark.parametrize("style", ["strict", "irregular"])
async def test_the_sandbox_demo_passes_the_chosen_catalog_through(style: str) -> None:
    with ProxyProcess({}, args=["--sandbox", "--sandbox-catalog", style]) as service:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{service.url}/v1/products") as got,
        ):
            assert got.status == 200
            body = await got.json()
    assert body == builtin_catalog("strict" if style == "strict" else "irregular")
    assert (invalid_ids(body) == set()) is (style == "strict")
    started = next(r for r in service.log_records() if r["event"] == "sandbox_started")
    assert started["catalog"] == style
