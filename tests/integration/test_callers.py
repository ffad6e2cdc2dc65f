"""Knowing the callers: named keys, the key file, the caller label, logs, and the 1NCE drop-in."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from proxy.callers.keys import fingerprint
from tests.support.logs import Captured, capture
from tests.support.published import token_error_schema, token_error_validator
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import REPO_ROOT
from tests.support.waiting import until

Client = TestClient[web.Request, web.Application]
BILLING_KEY = "billing-key-8c1d0e"
PORTAL_OLD = "portal-key-old-51fa"
PORTAL_NEW = "portal-key-new-93b2"
BARE_KEY = "bare-key-7e2a4c"
KEYS = (
    SecretStr(f"billing:{BILLING_KEY}"),
    SecretStr(f"portal:{PORTAL_OLD}"),
    SecretStr(f"portal:{PORTAL_NEW}"),
    SecretStr(BARE_KEY),
)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
GRANT = {"grant_type": "client_credentials"}
# A 400's errorCode as the drop-in and the emulator write one: `_refuse("Code", ...)`,
# `_upstream_error(status, "Code", ...)` (the token fault's 400) or `return "Code", "message"`.
ERROR_CODE_LITERAL = re.compile(r'(?:_refuse\(|_upstream_error\(status,\s*|return\s+)"(\w+)",')


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    with capture("debug", "json") as captured:
        yield captured


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


async def _requests_by_caller(client: Client) -> dict[tuple[str, str, str], float]:
    """``http_requests_total`` as {(route, status, caller): count}."""
    response = await client.get("/metrics")
    text = await response.text()
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "product_proxy_http_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[labels["route"], labels["status"], labels["caller"]] = sample.value
    return counts


async def test_each_key_names_its_caller_in_the_request_counter(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=KEYS)
    for key in (BILLING_KEY, BILLING_KEY, PORTAL_OLD, PORTAL_NEW, BARE_KEY):
        response = await client.get("/v1/products", headers=_bearer(key))
        assert response.status == 200
        await response.read()
    refused = await client.get("/v1/products", headers=_bearer("not-a-key"))
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthorized"
    assert (await client.get("/healthz")).status == 200
    counts = await _requests_by_caller(client)
    assert counts[("/v1/products", "200", "billing")] == 2
    assert counts[("/v1/products", "200", "portal")] == 2
    assert counts[("/v1/products", "200", fingerprint(BARE_KEY))] == 1
    assert counts[("/v1/products", "401", "unauthenticated")] == 1
    assert counts[("/healthz", "200", "anonymous")] == 1


async def test_token_requests_are_counted_and_logged_under_the_callers_name(
    json_logs: Captured, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(api_keys=KEYS, access_log="all")
    json_logs.clear()
    for headers in (_basic("billing", BILLING_KEY), _basic("portal", PORTAL_NEW)):
        response = await client.post("/management-api/oauth/token", json=GRANT, headers=headers)
        assert response.status == 200
    refused = await client.post(
        "/management-api/oauth/token", json=GRANT, headers=_basic("billing", "wrong")
    )
    assert refused.status == 400

    route = "/management-api/oauth/token"
    counts = await _requests_by_caller(client)
    assert {key: value for key, value in counts.items() if key[0] == route} == {
        (route, "200", "billing"): 1,
        (route, "200", "portal"): 1,
        (route, "400", "unauthenticated"): 1,
    }
    access = [
        line
        for line in json_logs.records()
        if line.get("event") == "request" and line.get("http.route") == route
    ]
    assert [line["caller"] for line in access] == ["billing", "portal", "unauthenticated"]


async def test_caller_label_values_stay_bounded(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=KEYS)
    for index in range(40):
        for path in ("/v1/products", f"/api/v1/junk-{index}", f"/elsewhere/{index}"):
            response = await client.get(path, headers=_bearer(f"guess-{index}"))
            await response.read()
    response = await client.get("/api/v1/nothing-here", headers=_bearer(BILLING_KEY))
    assert response.status == 404
    counts = await _requests_by_caller(client)
    callers = {caller for _, _, caller in counts}
    assert callers == {"unauthenticated", "anonymous", "billing"}
    assert counts[("unmatched", "401", "unauthenticated")] == 40
    assert counts[("unmatched", "404", "anonymous")] == 40
    assert counts[("unmatched", "404", "billing")] == 1


async def test_every_line_of_a_request_names_its_caller_and_trace(
    json_logs: Captured, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(api_keys=KEYS, access_log="all")
    json_logs.clear()
    headers = {**_bearer(BILLING_KEY), "traceparent": TRACEPARENT, "User-Agent": "billing/2.1"}
    response = await client.get("/v1/products", headers=headers)
    assert response.status == 200
    await response.read()
    assert sandbox.state.products_requests == 1
    records = json_logs.serving()
    assert {record["event"] for record in records} >= {"token_refreshed", "request"}
    for record in records:
        assert record["caller"] == "billing", record
        assert record["trace_id"] == TRACE_ID, record
        assert record["span_id"] == PARENT_ID, record
        assert record["request_id"] == response.headers["X-Request-ID"], record
    [access] = json_logs.requests()
    assert access["user_agent.original"] == "billing/2.1"
    assert access["http.route"] == "/v1/products"
    assert BILLING_KEY not in json_logs.text()


@pytest.mark.parametrize(
    "traceparent",
    [
        f"01-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
        "x" * 5000,
    ],
    ids=["version", "uppercase", "zero-trace", "zero-span", "extra", "junk"],
)
async def test_an_invalid_traceparent_is_ignored_never_echoed(
    json_logs: Captured, make_proxy: MakeProxy, traceparent: str
) -> None:
    client = await make_proxy(access_log="all")
    response = await client.get("/healthz", headers={"traceparent": traceparent})
    assert response.status == 200
    [access] = json_logs.requests()
    assert "trace_id" not in access
    assert "span_id" not in access
    assert traceparent not in json_logs.text()
    assert traceparent not in str(response.headers)


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))


async def test_the_key_file_is_reread_without_a_restart(
    tmp_path: Path, make_proxy: MakeProxy
) -> None:
    path = tmp_path / "api-keys"
    _write(path, f"billing:{BILLING_KEY}\n", 1_000_000_000)
    # The file wins over the listed keys.
    client = await make_proxy(
        api_keys=(SecretStr("listed:listed-key-1"),),
        api_keys_file=str(path),
        api_keys_reload_interval=0.1,
    )

    async def status(key: str) -> int:
        response = await client.get("/api/v1/categories", headers=_bearer(key))
        await response.read()
        return response.status

    assert await status(BILLING_KEY) == 200
    assert await status("listed-key-1") == 401
    # Rotation: the new key added beside the old one, then the old one removed.
    _write(path, f"billing:{BILLING_KEY}\nbilling:{PORTAL_NEW}\n", 2_000_000_000)
    await _eventually_status(status, PORTAL_NEW, 200)
    assert await status(BILLING_KEY) == 200
    _write(path, f"billing:{PORTAL_NEW}\n", 3_000_000_000)
    await _eventually_status(status, BILLING_KEY, 401)
    assert await status(PORTAL_NEW) == 200
    counts = await _requests_by_caller(client)
    assert counts[("/api/v1/categories", "200", "billing")] >= 4


async def _eventually_status(
    status: Callable[[str], Awaitable[int]], key: str, expected: int
) -> None:
    for _ in range(50):
        if await status(key) == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{key} did not become {expected} within 2.5 s")


async def _dropin_token(client: Client, client_id: str, secret: str) -> dict[str, Any]:
    response = await client.post(
        "/management-api/oauth/token", json=GRANT, headers=_basic(client_id, secret)
    )
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json()
    return body


async def test_a_1nce_client_flow_gets_the_upstream_bytes_under_its_caller(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(api_keys=KEYS)
    body = await _dropin_token(client, "portal", PORTAL_NEW)
    assert set(body) == {
        "status_code",
        "access_token",
        "token_type",
        "expires_in",
        "userId",
        "scope",
    }
    assert (body["status_code"], body["token_type"], body["expires_in"]) == (200, "bearer", 3600)
    assert body["userId"] == "portal"
    token = body["access_token"]
    assert sandbox.state.token_requests == 0  # the proxy issued it, not 1NCE

    dropin = await client.get("/management-api/v1/products", headers=_bearer(token))
    assert dropin.status == 200
    direct = await client.get("/v1/products", headers=_bearer(BILLING_KEY))
    assert await dropin.read() == await direct.read()
    assert dropin.headers["ETag"] == direct.headers["ETag"]
    assert sandbox.state.products_requests == 1
    counts = await _requests_by_caller(client)
    assert counts[("/management-api/v1/products", "200", "portal")] == 1
    assert counts[("/management-api/oauth/token", "200", "portal")] == 1

    # 1NCE's own token never reaches a caller.
    issued = list(sandbox.state.tokens)
    assert issued
    for upstream_token in issued:
        assert upstream_token not in token
        assert upstream_token not in str(dropin.headers)


async def test_a_bare_key_uses_its_fingerprint_as_client_id(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=KEYS)
    body = await _dropin_token(client, fingerprint(BARE_KEY), BARE_KEY)
    assert body["userId"] == fingerprint(BARE_KEY)
    response = await client.get(
        "/management-api/v1/products", headers=_bearer(body["access_token"])
    )
    assert response.status == 200


def _assert_1nce_token_error(answer: object) -> str:
    """Check ``answer`` against 1NCE's published token error shape; return its errorCode."""
    token_error_validator().validate(answer)
    assert isinstance(answer, dict)
    # The schema allows more fields; 1NCE's answers have exactly these.
    assert set(answer) == set(token_error_schema()["required"]), answer
    assert answer["message"]
    code: str = answer["errorCode"]
    return code


def test_only_1nce_token_error_codes_can_be_emitted() -> None:
    allowed = set(token_error_schema()["properties"]["errorCode"]["enum"])
    # Every errorCode literal in the drop-in endpoint and in the emulator's token endpoint.
    for source in ("proxy/web/dropin.py", "proxy/sandbox/app.py"):
        text = (REPO_ROOT / source).read_text()
        emitted = set(ERROR_CODE_LITERAL.findall(text))
        assert emitted, source
        assert emitted <= allowed, (source, emitted - allowed)
    document = json.loads((REPO_ROOT / "proxy" / "web" / "openapi.json").read_text())
    published = document["components"]["schemas"]["OnceError"]["properties"]["errorCode"]
    assert set(published["enum"]) == allowed


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        (_basic("portal", BILLING_KEY), GRANT, "CognitoAuthenticationError"),
        (_basic("billing", "wrong"), GRANT, "CognitoAuthenticationError"),
        (_basic("nobody", BILLING_KEY), GRANT, "CognitoAuthenticationError"),
        (_bearer(BILLING_KEY), GRANT, "AuthValidationError"),
        ({}, GRANT, "AuthValidationError"),
        (_basic("billing", BILLING_KEY), {"grant_type": "password"}, "BodyValidationError"),
        (_basic("billing", BILLING_KEY), {"padding": "x" * 5000}, "BodyValidationError"),
    ],
    ids=["other-callers-key", "wrong-key", "unknown-name", "bearer", "none", "grant", "large"],
)
async def test_bad_token_requests_get_1nce_error_shapes(
    sandbox: Sandbox, make_proxy: MakeProxy, headers: dict[str, str], body: object, code: str
) -> None:
    client = await make_proxy(api_keys=KEYS)
    response = await client.post("/management-api/oauth/token", json=body, headers=headers)
    assert response.status == 400
    assert _assert_1nce_token_error(await response.json()) == code
    assert BILLING_KEY not in await response.text()
    assert sandbox.state.token_requests == 0


@pytest.mark.parametrize("depth", [3000, 4000])
async def test_a_body_nested_too_deep_to_parse_is_a_body_validation_error(
    sandbox: Sandbox, make_proxy: MakeProxy, depth: int
) -> None:
    client = await make_proxy(api_keys=KEYS)
    with capture("debug", "json") as captured:
        response = await client.post(
            "/management-api/oauth/token",
            data="[" * depth,
            headers={**_basic("billing", BILLING_KEY), "Content-Type": "application/json"},
        )
    assert response.status == 400
    assert _assert_1nce_token_error(await response.json()) == "BodyValidationError"
    assert not [line for line in captured.records() if line.get("level") == "error"]
    assert sandbox.state.token_requests == 0
    # Still serving, and the endpoint still works for a good request.
    good = await client.post(
        "/management-api/oauth/token", json=GRANT, headers=_basic("billing", BILLING_KEY)
    )
    assert good.status == 200


async def test_a_form_body_is_refused_in_1nce_shape(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=KEYS)
    response = await client.post(
        "/management-api/oauth/token",
        data="grant_type=client_credentials",
        headers={
            **_basic("billing", BILLING_KEY),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status == 400
    assert (await response.json())["errorCode"] == "UnsupportedContentTypeError"


async def test_products_need_a_valid_bearer(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=KEYS)
    for headers in ({}, _bearer("ppt1.forged.token"), _bearer("nope")):
        response = await client.get("/management-api/v1/products", headers=headers)
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_removing_a_key_revokes_its_caller_tokens(
    tmp_path: Path, make_proxy: MakeProxy
) -> None:
    path = tmp_path / "api-keys"
    _write(path, f"portal:{PORTAL_OLD}\nportal:{PORTAL_NEW}\n", 1_000_000_000)
    client = await make_proxy(api_keys_file=str(path), api_keys_reload_interval=0.1)
    old = (await _dropin_token(client, "portal", PORTAL_OLD))["access_token"]
    new = (await _dropin_token(client, "portal", PORTAL_NEW))["access_token"]

    async def status(token: str) -> int:
        response = await client.get("/management-api/v1/products", headers=_bearer(token))
        await response.read()
        return response.status

    assert (await status(old), await status(new)) == (200, 200)
    _write(path, f"portal:{PORTAL_NEW}\n", 2_000_000_000)
    await _eventually_status(status, old, 401)
    assert await status(new) == 200


async def test_with_no_keys_any_credentials_get_an_anonymous_token(
    make_proxy: MakeProxy,
) -> None:
    client = await make_proxy()
    body = await _dropin_token(client, "whoever", "whatever")
    assert body["userId"] == "anonymous"
    response = await client.get(
        "/management-api/v1/products", headers=_bearer(body["access_token"])
    )
    assert response.status == 200
    counts = await _requests_by_caller(client)
    assert counts[("/management-api/v1/products", "200", "anonymous")] == 1


async def _key_file_usable(client: Client) -> str:
    text = await (await client.get("/metrics")).text()
    lines = [line for line in text.splitlines() if line.startswith("product_proxy_api_keys_file")]
    return "\n".join(lines)


async def _until_key_file_usable(client: Client, expected: str) -> None:
    async def shown() -> bool:
        return await _key_file_usable(client) == expected

    await until(shown, 5, f"/metrics shows {expected}")


async def test_the_key_file_metric_follows_the_file_and_the_last_keys_hold(
    tmp_path: Path, make_proxy: MakeProxy
) -> None:
    path = tmp_path / "api-keys"
    _write(path, f"billing:{BILLING_KEY}\n", 1_000_000_000)
    client = await make_proxy(api_keys_file=str(path), api_keys_reload_interval=0.1)
    without = await make_proxy(api_keys=KEYS)
    assert await _key_file_usable(without) == ""
    assert await _key_file_usable(client) == "product_proxy_api_keys_file_usable 1.0"

    path.write_bytes(b"billing:\n")  # a name with no key: unusable
    await _until_key_file_usable(client, "product_proxy_api_keys_file_usable 0.0")
    response = await client.get("/v1/products", headers=_bearer(BILLING_KEY))
    assert response.status == 200  # the last good keys hold

    _write(path, f"billing:{BILLING_KEY}\n", 2_000_000_000)
    await _until_key_file_usable(client, "product_proxy_api_keys_file_usable 1.0")
