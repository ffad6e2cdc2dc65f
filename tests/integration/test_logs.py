"""Log lines: JSON objects carrying the request id, the access-log modes, and no secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.catalog.service import CATALOG
from proxy.sandbox import SANDBOX_CLIENT_SECRET
from proxy.upstream.errors import UpstreamError
from tests.support.logs import Captured, capture
from tests.support.sandbox import MakeProxy, Sandbox

Client = TestClient[web.Request, web.Application]
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
API_KEY = "logs-api-key-4a1f9c0e7d2b"
ADMIN_TOKEN = "logs-admin-token-93be51d07c"


@pytest.fixture
def json_logs() -> Iterator[Captured]:
    with capture("debug", "json") as captured:
        yield captured


@pytest.fixture
def console_logs() -> Iterator[Captured]:
    with capture("info", "console") as captured:
        yield captured


def parses_as_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


async def fetch(
    client: Client, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, str]:
    """Send one request, read it whole; return its status and echoed request id."""
    response = await client.request(method, path, headers=headers)
    await response.read()
    return response.status, response.headers["X-Request-ID"]


async def test_request_id_is_on_every_line_of_a_cold_request(
    json_logs: Captured, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all")
    json_logs.clear()
    response = await client.get("/v1/products", headers={"X-Request-ID": "test-req-1"})
    await response.read()
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "test-req-1"
    assert sandbox.state.products_requests == 1

    records = json_logs.serving()
    events = [record["event"] for record in records]
    assert "token_refreshed" in events
    assert "catalog_stored" in events
    assert events[-1] == "request"
    assert events.count("request") == 1
    assert [record.get("request_id") for record in records] == ["test-req-1"] * len(records)
    line = records[-1]
    method, route, status = "http.request.method", "http.route", "http.response.status_code"
    assert (line[method], line[route], line[status]) == ("GET", "/v1/products", 200)
    # What was sent: the compressed body, as its Content-Length says.
    assert line["http.response.body.size"] == int(response.headers["Content-Length"])
    assert line["client.address"] == "127.0.0.1"
    assert line["user_agent.original"].startswith("Python/")
    assert line["caller"] == "anonymous"
    # No trace context was sent and tracing is off: none is made up.
    assert "trace_id" not in line
    assert "span_id" not in line
    assert "path" not in line
    assert line["level"] == "info"
    assert isinstance(line["duration_ms"], float | int)


async def test_a_request_without_an_id_gets_a_new_one(
    json_logs: Captured, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all")
    first_status, first_id = await fetch(client, "/healthz")
    second_status, second_id = await fetch(client, "/nope")
    assert (first_status, second_status) == (200, 404)
    assert GENERATED_ID.match(first_id), first_id
    assert GENERATED_ID.match(second_id), second_id
    assert first_id != second_id
    assert [(r["http.route"], r["request_id"]) for r in json_logs.requests()] == [
        ("/healthz", first_id),
        ("unmatched", second_id),
    ]


@pytest.mark.parametrize(
    "given",
    [
        "has spaces in it",
        "a" * 200,
        "b" * 129,
        "semi;colon",
        'quote"d',
        "slash/ed",
        "",
    ],
    ids=["spaces", "200-chars", "129-chars", "semicolon", "quote", "slash", "empty"],
)
async def test_an_unsafe_request_id_is_replaced(
    json_logs: Captured, make_proxy: MakeProxy, given: str
) -> None:
    client = await make_proxy(access_log="all")
    status, echoed = await fetch(client, "/healthz", {"X-Request-ID": given})
    assert status == 200
    assert GENERATED_ID.match(echoed), echoed
    [line] = json_logs.requests()
    assert line["request_id"] == echoed
    if given:
        assert given not in json_logs.text()


@pytest.mark.parametrize("given", ["c" * 128, "Trace-1.2_3:4"], ids=["128-chars", "punctuation"])
async def test_a_plain_request_id_is_kept(
    json_logs: Captured, make_proxy: MakeProxy, given: str
) -> None:
    client = await make_proxy(access_log="all")
    status, echoed = await fetch(client, "/healthz", {"X-Request-ID": given})
    assert (status, echoed) == (200, given)
    [line] = json_logs.requests()
    assert line["request_id"] == given


async def test_access_log_all_writes_one_line_per_request(
    json_logs: Captured, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all")
    assert (await fetch(client, "/v1/products"))[0] == 200
    assert (await fetch(client, "/v1/products"))[0] == 200
    assert (await fetch(client, "/healthz"))[0] == 200
    assert (await fetch(client, "/nope"))[0] == 404
    assert (await fetch(client, "/healthz", method="POST"))[0] == 405
    fields = ("http.request.method", "http.route", "http.response.status_code")
    assert [tuple(r[field] for field in fields) for r in json_logs.requests()] == [
        ("GET", "/v1/products", 200),
        ("GET", "/v1/products", 200),
        ("GET", "/healthz", 200),
        ("GET", "unmatched", 404),
        ("POST", "unmatched", 405),
    ]


async def test_access_log_errors_logs_failures_and_slow_requests_only(
    json_logs: Captured, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="errors")
    sandbox.state.faults.products_latency = 1.1
    _, slow_id = await fetch(client, "/v1/products")  # cold: waits on the slow upstream
    sandbox.state.faults.products_latency = 0.0
    assert (await fetch(client, "/v1/products"))[0] == 200  # a fast hit
    assert (await fetch(client, "/healthz"))[0] == 200
    _, missing_id = await fetch(client, "/nope")
    lines = json_logs.requests()
    assert [(r["http.route"], r["http.response.status_code"], r["request_id"]) for r in lines] == [
        ("/v1/products", 200, slow_id),
        ("unmatched", 404, missing_id),
    ]
    assert lines[0]["duration_ms"] >= 1000


async def test_access_log_off_writes_no_request_line(
    json_logs: Captured, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="off")
    _, first_id = await fetch(client, "/v1/products")
    assert (await fetch(client, "/nope"))[0] == 404
    assert (await fetch(client, "/healthz", method="POST"))[0] == 405
    records = json_logs.records()
    assert json_logs.requests() == []
    # The service's other lines are still written (and still carry the request id).
    assert {r["request_id"] for r in records if r["event"] == "catalog_stored"} == {first_id}


async def test_console_format_writes_human_lines(
    console_logs: Captured, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all")
    status, _ = await fetch(client, "/v1/products", {"X-Request-ID": "test-console-1"})
    assert status == 200
    lines = console_logs.lines()
    assert lines
    for line in lines:
        assert not parses_as_json(line), line
        assert "\x1b[" not in line  # no colour codes
    [access] = [line for line in lines if "http.route=/v1/products" in line]
    assert re.search(r"\[info\s*\] request\s", access), access
    assert "request_id=test-console-1" in access
    assert "http.response.status_code=200" in access
    assert "http.request.method=GET" in access
    assert "caller=anonymous" in access
    assert any("token_refreshed" in line and "request_id=test-console-1" in line for line in lines)
    assert not any("[debug" in line for line in lines)


async def test_no_token_secret_api_key_or_admin_token_in_any_line(
    json_logs: Captured, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all", api_keys=API_KEY, admin_token=ADMIN_TOKEN)
    service = client.app[CATALOG]
    state = sandbox.state
    sprinkled = {
        "X-Api-Key": API_KEY,
        "X-Admin-Token": ADMIN_TOKEN,
        "X-Client-Secret": SANDBOX_CLIENT_SECRET,
        "Cookie": f"session={ADMIN_TOKEN}; key={API_KEY}",
        "Proxy-Authorization": f"Bearer {ADMIN_TOKEN}",
    }
    key = {"Authorization": f"Bearer {API_KEY}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    secret = {"Authorization": f"Bearer {SANDBOX_CLIENT_SECRET}"}
    statuses = [
        (await fetch(client, "/v1/products", {**key, **sprinkled}))[0],
        (await fetch(client, "/v1/products", {**admin, **sprinkled}))[0],
        (await fetch(client, "/api/v1/products", secret))[0],
        (await fetch(client, "/v1/products"))[0],
        (await fetch(client, "/admin/refresh", key, method="POST"))[0],
        (await fetch(client, "/admin/refresh", {**admin, **sprinkled}, method="POST"))[0],
    ]
    assert statuses == [200, 401, 401, 401, 401, 200]
    upstream_token = state.products_authorizations[0].removeprefix("Bearer ")
    # The upstream's own token, presented by a caller: refused, and not logged either.
    status, _ = await fetch(client, "/v1/products", {"Authorization": f"Bearer {upstream_token}"})
    assert status == 401
    # The upstream refuses a revoked token (401): dropped, refreshed, retried.
    state.revoke_tokens()
    await service.refresh()
    # Then refuses the credentials: the failure is logged.
    state.revoke_tokens()
    state.faults.token_status = 400
    with contextlib.suppress(UpstreamError):
        await service.refresh()
    # A request aiohttp cannot parse (a header field over 16 KB) carrying a secret.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /v1/products HTTP/1.1\r\nHost: x\r\n"
        + f"X-Big: {ADMIN_TOKEN}{'x' * 17000}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    writer.close()
    await writer.wait_closed()

    tokens = {auth.removeprefix("Bearer ") for auth in state.products_authorizations}
    assert len(tokens) >= 2
    records = json_logs.records()  # every line is JSON
    events = {record["event"] for record in records}
    assert {"token_refreshed", "upstream_failed", "malformed_request_refused"} <= events
    assert len([r for r in json_logs.requests() if r["http.response.status_code"] == 401]) == 5
    text = json_logs.text()
    for forbidden in (API_KEY, ADMIN_TOKEN, SANDBOX_CLIENT_SECRET, *tokens):
        assert forbidden not in text
    for token in tokens:
        for part in token.split("."):
            assert part not in text
