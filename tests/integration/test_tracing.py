"""OpenTelemetry traces (the ``otel`` extra): spans, their tree, links, and what they never hold.

Spans are read from the SDK's in-memory exporter; the OTLP exporter is checked against a
collector stand-in on loopback. Skipped when the extra is not installed.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from pytest_aiohttp import AiohttpClient

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from proxy.app import create_app
from proxy.backplane.redis_backplane import RedisBackplane
from proxy.coordination.fill import CoordinatedFill
from proxy.coordination.singleflight import SingleFlight
from proxy.coordination.turns import Turns
from proxy.observability.context import REQUEST, RequestContext, TraceParent
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, start_tracing
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.upstream.errors import UpstreamError
from proxy.upstream.models import PRODUCTS
from tests.support.net import HOST, serve
from tests.support.redis import RedisServer
from tests.support.sandbox import Sandbox
from tests.support.settings import REPO_ROOT, clean_env, make_settings
from tests.support.upstream import sandbox_upstream
from tests.support.waiting import eventually

Client = TestClient[web.Request, web.Application]
MakeTraced = Callable[..., Awaitable[Client]]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
TRACESTATE = "congo=t61rcWkgMzE"
API_KEY = "k3y-0f-the-caller-that-must-not-leak"
ADMIN_TOKEN = "admin-t0ken-that-must-not-leak"
OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which OTEL_* variables it wants; the developer's are ignored."""
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class Traced:
    """A tracing set-up whose finished spans are kept in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        tracing = start_tracing(processor=SimpleSpanProcessor(self.exporter))
        assert tracing.enabled
        self.tracing = tracing

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [
            span
            for span in self.spans()
            if span.name == name and (kind is None or span.kind == kind)
        ]

    def one(self, name: str, kind: SpanKind | None = None) -> ReadableSpan:
        found = self.named(name, kind)
        assert len(found) == 1, [(span.name, span.kind) for span in self.spans()]
        return found[0]


@pytest.fixture
def traced() -> Iterator[Traced]:
    setup = Traced()
    yield setup
    setup.tracing.shutdown()


@pytest.fixture
async def make_traced(
    aiohttp_client: AiohttpClient, sandbox: Sandbox, traced: Traced
) -> MakeTraced:
    """Build a traced proxy in front of the sandbox; keyword arguments override settings."""

    async def make(**overrides: Any) -> Client:
        settings = make_settings(sandbox.url, **overrides)
        return await aiohttp_client(create_app(settings, tracing=traced.tracing))

    return make


def _trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def _span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def _traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{_trace_id(span)}-{_span_id(span)}-{int(span.context.trace_flags):02x}"


def _parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {_span_id(each): each for each in spans}
    parent = _parent_id(span)
    while parent is not None:
        if parent == _span_id(ancestor):
            return True
        above = by_id.get(parent)
        parent = None if above is None else _parent_id(above)
    return False


async def _get(
    client: Client, path: str = "/v1/products", **headers: str
) -> aiohttp.ClientResponse:
    response = await client.get(path, headers=headers)
    await response.read()
    return response


# --- when tracing is on, and when it is not ------------------------------------------------------


def test_tracing_is_off_without_an_exporter() -> None:
    assert start_tracing() is NO_TRACING


@pytest.mark.parametrize("value", ["none", "", "zipkin", " , "])
def test_tracing_is_off_without_a_usable_exporter(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert start_tracing() is NO_TRACING


def test_the_sdk_switch_turns_tracing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "True")
    assert start_tracing() is NO_TRACING
    assert start_tracing(processor=SimpleSpanProcessor(InMemorySpanExporter())) is NO_TRACING


def test_console_exporter_turns_tracing_on() -> None:
    # A process of its own: the console exporter writes to the stdout it found at import.
    script = (
        "from proxy.observability.tracing import start_tracing\n"
        "tracing = start_tracing()\n"
        "with tracing.span('console check'):\n"
        "    pass\n"
        "tracing.shutdown()\n"
    )
    environment = {key: value for key, value in clean_env().items() if "OTEL_" not in key}
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        env={**environment, "OTEL_TRACES_EXPORTER": "console"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=REPO_ROOT,
    )
    assert '"name": "console check"' in result.stdout
    assert '"service.name": "product-proxy"' in result.stdout
    assert '"service.version": "' in result.stdout


async def test_otlp_exporter_sends_the_spans_to_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, aiohttp_client: AiohttpClient, sandbox: Sandbox
) -> None:
    received: list[tuple[str, str, bytes]] = []

    async def collect(request: web.Request) -> web.Response:
        received.append((request.path, request.content_type, await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(collector, access_log=None)
    await runner.setup()
    port = await serve(runner)
    try:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{HOST}:{port}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "proxy-under-test")
        tracing = start_tracing()
        assert tracing.enabled
        client = await aiohttp_client(create_app(make_settings(sandbox.url), tracing=tracing))
        assert (await _get(client)).status == 200
        # The batch processor exports from its own thread; shutting down flushes it.
        await asyncio.to_thread(tracing.shutdown)
    finally:
        await runner.cleanup()
    assert received, "nothing was exported"
    assert {(path, content_type) for path, content_type, _ in received} == {
        ("/v1/traces", "application/x-protobuf")
    }
    exported = b"".join(body for _, _, body in received)
    assert b"GET /v1/products" in exported
    assert b"proxy-under-test" in exported


async def test_the_sampler_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, aiohttp_client: AiohttpClient, sandbox: Sandbox
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    tracing = start_tracing(processor=SimpleSpanProcessor(exporter))
    assert tracing.enabled
    try:
        client = await aiohttp_client(create_app(make_settings(sandbox.url), tracing=tracing))
        assert (await _get(client, traceparent=TRACEPARENT)).status == 200
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    # Not recorded, still propagated: the caller's trace, our span, and "not sampled".
    [sent] = sandbox.state.products_traceparents
    version, trace_id, span_id, flags = sent.split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
    assert span_id not in {CALLER_SPAN, "0" * 16}


# --- spans of whole requests ---------------------------------------------------------------------


async def test_a_cold_request_makes_a_server_span_over_token_and_products_client_spans(
    make_traced: MakeTraced, traced: Traced, sandbox: Sandbox
) -> None:
    client = await make_traced()
    response = await _get(client)
    assert response.status == 200

    spans = traced.spans()
    server = traced.one("GET /v1/products", SpanKind.SERVER)
    token = traced.one("POST /oauth/token", SpanKind.CLIENT)
    products = traced.one("GET /v1/products", SpanKind.CLIENT)
    assert server.parent is None
    for child in (token, products):
        assert _trace_id(child) == _trace_id(server)
        assert _descends_from(child, server, spans)
    assert {_trace_id(span) for span in spans} == {_trace_id(server)}

    assert server.attributes is not None
    assert dict(server.attributes) == {
        "http.request.method": "GET",
        "http.route": "/v1/products",
        "url.path": "/v1/products",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.port": client.port,
        "client.address": "127.0.0.1",
        "user_agent.original": server.attributes["user_agent.original"],
        "http.response.status_code": 200,
        "caller": "anonymous",
    }
    assert str(server.attributes["user_agent.original"]).startswith("Python/")
    assert server.status.status_code == StatusCode.UNSET

    assert dict(products.attributes or {}) == {
        "http.request.method": "GET",
        "url.full": f"{sandbox.url}/v1/products",
        "url.template": "/v1/products",
        "upstream.endpoint": "products",
        "server.address": HOST,
        "server.port": sandbox.port,
        "http.response.status_code": 200,
    }
    assert dict(token.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"{sandbox.url}/oauth/token",
        "url.template": "/oauth/token",
        "upstream.endpoint": "token",
        "server.address": HOST,
        "server.port": sandbox.port,
        "http.response.status_code": 200,
    }
    # The upstream saw each client span as the parent of its request.
    assert sandbox.state.products_traceparents == [_traceparent(products)]
    assert sandbox.state.token_traceparents == [_traceparent(token)]


async def test_a_hit_makes_just_the_server_span(make_traced: MakeTraced, traced: Traced) -> None:
    client = await make_traced()
    assert (await _get(client)).status == 200
    traced.exporter.clear()
    response = await _get(client, "/api/v1/products")
    assert response.status == 200
    [span] = traced.spans()
    assert (span.name, span.kind) == ("GET /api/v1/products", SpanKind.SERVER)
    assert (span.attributes or {})["http.response.status_code"] == 200


async def test_the_callers_trace_is_the_server_spans_parent(
    make_traced: MakeTraced, traced: Traced, sandbox: Sandbox
) -> None:
    client = await make_traced()
    response = await _get(client, traceparent=TRACEPARENT, tracestate=TRACESTATE)
    assert response.status == 200
    server = traced.one("GET /v1/products", SpanKind.SERVER)
    assert server.parent is not None
    assert server.parent.is_remote
    assert _parent_id(server) == CALLER_SPAN
    assert {_trace_id(span) for span in traced.spans()} == {TRACE_ID}
    assert server.context is not None
    assert server.context.trace_state.to_header() == TRACESTATE
    products = traced.one("GET /v1/products", SpanKind.CLIENT)
    assert sandbox.state.products_traceparents == [_traceparent(products)]
    assert sandbox.state.products_tracestates == [TRACESTATE]


async def test_an_invalid_callers_trace_starts_a_new_one(
    make_traced: MakeTraced, traced: Traced
) -> None:
    client = await make_traced()
    response = await _get(client, traceparent=TRACEPARENT.upper())
    assert response.status == 200
    server = traced.one("GET /v1/products", SpanKind.SERVER)
    assert server.parent is None
    assert _trace_id(server) != TRACE_ID


async def test_an_unknown_method_is_a_span_without_a_route(
    make_traced: MakeTraced, traced: Traced
) -> None:
    client = await make_traced()
    response = await client.request("PROPFIND", "/nowhere")
    assert response.status in {404, 405}
    server = traced.one("HTTP", SpanKind.SERVER)
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "PROPFIND"
    assert "http.route" not in attributes
    assert attributes["http.response.status_code"] == response.status


async def test_an_upstream_failure_marks_the_spans(
    make_traced: MakeTraced, traced: Traced, sandbox: Sandbox
) -> None:
    sandbox.state.faults.products_status = 503
    client = await make_traced(upstream_retries=0)
    response = await _get(client)
    assert response.status >= 500
    server = traced.one("GET /v1/products", SpanKind.SERVER)
    assert server.status.status_code == StatusCode.ERROR
    assert (server.attributes or {})["error.type"] == "UpstreamBadResponse"
    [event] = [event for event in server.events if event.name == "exception"]
    assert str((event.attributes or {})["exception.type"]).endswith("UpstreamBadResponse")
    products = traced.one("GET /v1/products", SpanKind.CLIENT)
    assert products.status.status_code == StatusCode.ERROR
    assert dict(products.attributes or {})["http.response.status_code"] == 503
    assert dict(products.attributes or {})["error.type"] == "503"


def _strings(span: ReadableSpan) -> Iterable[str]:
    """Every text a span carries: name, status, attributes, events, links, resource."""
    yield span.name
    yield span.status.description or ""
    mappings = [span.attributes, span.resource.attributes]
    mappings += [event.attributes for event in span.events]
    mappings += [link.attributes for link in span.links]
    yield from (event.name for event in span.events)
    for mapping in mappings:
        for key, value in (mapping or {}).items():
            yield key
            yield str(value)


async def test_no_secret_is_in_any_span(
    make_traced: MakeTraced, traced: Traced, sandbox: Sandbox
) -> None:
    client = await make_traced(
        api_keys=[SecretStr(API_KEY)],
        admin_token=SecretStr(ADMIN_TOKEN),
        admin_refresh_interval=0,
        upstream_retries=0,
    )
    assert (await _get(client, Authorization=f"Bearer {API_KEY}")).status == 200
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # A revoked token: the refresh meets a 401, gets a new token and tries again.
    issued = set(sandbox.state.tokens)
    sandbox.state.revoke_tokens()
    refreshed = await client.post("/admin/refresh", headers=admin)
    assert refreshed.status == 200
    issued |= set(sandbox.state.tokens)
    # A failing upstream: exceptions are recorded on the spans.
    sandbox.state.faults.products_status = 500
    failed = await client.post("/admin/refresh", headers=admin)
    assert failed.status >= 500
    assert len(issued) == 2
    credentials = f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()
    secrets = {
        API_KEY,
        ADMIN_TOKEN,
        SANDBOX_CLIENT_SECRET,
        base64.b64encode(credentials).decode(),
        *issued,
        # A token's signature alone, in case a token was cut or split anywhere.
        *(token.rsplit(".", 1)[1] for token in issued),
    }
    spans = traced.spans()
    assert len(traced.named("GET /v1/products", SpanKind.CLIENT)) == 4
    assert any(event.name == "exception" for span in spans for event in span.events)
    texts = [text for span in spans for text in _strings(span)]
    assert [secret for secret in secrets if any(secret in text for text in texts)] == []
    keys = {key.lower() for span in spans for key in (span.attributes or {})}
    assert not any("authorization" in key or "token" in key for key in keys)


async def test_coalesced_requests_link_to_the_request_that_fetched(
    make_traced: MakeTraced, traced: Traced, sandbox: Sandbox
) -> None:
    sandbox.state.faults.products_latency = 0.5
    client = await make_traced()
    sent = {os.urandom(16).hex(): os.urandom(8).hex() for _ in range(6)}

    async def one(trace_id: str, span_id: str) -> tuple[str, str]:
        response = await _get(client, traceparent=f"00-{trace_id}-{span_id}-01")
        assert response.status == 200
        return trace_id, response.headers["Cache-Status"]

    replies = await asyncio.gather(*(one(*pair) for pair in sent.items()))

    [starter_trace] = [trace for trace, status in replies if not status.endswith("collapsed")]
    products = traced.one("GET /v1/products", SpanKind.CLIENT)
    assert _trace_id(products) == starter_trace
    servers = {_trace_id(span): span for span in traced.named("GET /v1/products", SpanKind.SERVER)}
    assert set(servers) == set(sent)
    starter = servers.pop(starter_trace)
    assert list(starter.links) == []
    for server in servers.values():
        [link] = server.links
        assert (link.context.trace_id, link.context.span_id) == (
            int(starter_trace, 16),
            int(_span_id(starter), 16),
        )
        assert dict(link.attributes or {}) == {"link.reason": "joined"}


async def test_store_commands_are_spans_of_the_request(
    make_traced: MakeTraced, traced: Traced, redis_server: RedisServer
) -> None:
    client = await make_traced(redis_url=redis_server.url)
    assert (await _get(client)).status == 200
    spans = traced.spans()
    server = traced.one("GET /v1/products", SpanKind.SERVER)
    store = [span for span in spans if (span.attributes or {}).get("db.system.name") == "redis"]
    assert store
    for span in store:
        assert span.kind == SpanKind.CLIENT
        assert _trace_id(span) == _trace_id(server)
        assert _descends_from(span, server, spans)
        assert span.name == (span.attributes or {})["db.operation.name"]
    commands = {span.name for span in store}
    # Read, take the turn (SET NX), store, announce, release (a script).
    assert {"GET", "SET", "PUBLISH", "EVAL"} <= commands
    fill = traced.one("fill catalog", SpanKind.INTERNAL)
    assert _descends_from(fill, server, spans)
    assert _descends_from(traced.one("GET /v1/products", SpanKind.CLIENT), fill, spans)


async def test_the_keepers_store_polls_make_no_traces(
    make_traced: MakeTraced, traced: Traced, redis_server: RedisServer, sandbox: Sandbox
) -> None:
    sandbox.state.faults.products_status = 503
    client = await make_traced(redis_url=redis_server.url, upstream_retries=0)
    assert (await _get(client)).status >= 500
    traced.exporter.clear()
    # The keeper retries on its backoff, reading the store meanwhile, with no request.
    await asyncio.sleep(1.5)
    for span in traced.spans():
        if (span.attributes or {}).get("db.system.name") == "redis":
            assert span.parent is not None, span.name


# --- the parts on their own ----------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_upstream_client_spans_and_propagation(
    session: aiohttp.ClientSession, sandbox: Sandbox, traced: Traced
) -> None:
    client, tokens = sandbox_upstream(
        session, sandbox.url, metrics=Metrics(), retries=1, tracing=traced.tracing
    )
    with traced.tracing.span("work"):
        fetched = await client.fetch(PRODUCTS)
    await tokens.close()
    assert fetched.value
    spans = traced.spans()
    work = traced.one("work", SpanKind.INTERNAL)
    token = traced.one("POST /oauth/token", SpanKind.CLIENT)
    products = traced.one("GET /v1/products", SpanKind.CLIENT)
    fill = traced.one("fill token", SpanKind.INTERNAL)
    assert _descends_from(token, fill, spans)
    assert _descends_from(fill, work, spans)
    assert _parent_id(products) == _span_id(work)
    assert sandbox.state.token_traceparents == [_traceparent(token)]
    assert sandbox.state.products_traceparents == [_traceparent(products)]


async def test_a_revoked_token_shows_as_a_401_then_a_retry(
    session: aiohttp.ClientSession, sandbox: Sandbox, traced: Traced
) -> None:
    client, tokens = sandbox_upstream(
        session, sandbox.url, metrics=Metrics(), retries=1, tracing=traced.tracing
    )
    await client.fetch(PRODUCTS)
    sandbox.state.revoke_tokens()
    traced.exporter.clear()
    await client.fetch(PRODUCTS)
    await tokens.close()
    statuses = [
        (span.attributes or {})["http.response.status_code"]
        for span in sorted(traced.named("GET /v1/products"), key=lambda span: span.start_time or 0)
    ]
    assert statuses == [401, 200]
    assert len(traced.named("POST /oauth/token")) == 1


async def test_an_unreachable_upstream_is_a_failed_client_span(
    session: aiohttp.ClientSession, sandbox: Sandbox, traced: Traced
) -> None:
    client, tokens = sandbox_upstream(
        session, sandbox.url, metrics=Metrics(), retries=1, tracing=traced.tracing
    )
    await sandbox.stop()
    with pytest.raises(UpstreamError):
        await client.fetch(PRODUCTS)
    await tokens.close()
    token_spans = traced.named("POST /oauth/token", SpanKind.CLIENT)
    assert token_spans
    for span in token_spans:
        assert span.status.status_code == StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "UpstreamUnavailable"
        assert "http.response.status_code" not in (span.attributes or {})


async def test_a_joined_flight_links_to_the_span_that_started_it(traced: Traced) -> None:
    flight: SingleFlight[int] = SingleFlight(tracing=traced.tracing)
    release = asyncio.Event()

    async def job() -> int:
        await release.wait()
        return 7

    async def caller(name: str) -> tuple[int, bool]:
        with traced.tracing.span(name):
            return await flight.run(job)

    first = asyncio.get_running_loop().create_task(caller("first"))
    await asyncio.sleep(0)
    second = asyncio.get_running_loop().create_task(caller("second"))
    await asyncio.sleep(0)
    release.set()
    assert await first == (7, False)
    assert await second == (7, True)
    starter = traced.one("first")
    joiner = traced.one("second")
    assert starter.links == ()
    [link] = joiner.links
    assert link.context.span_id == int(_span_id(starter), 16)


async def test_a_flight_started_outside_any_span_links_nothing(traced: Traced) -> None:
    flight: SingleFlight[int] = SingleFlight(tracing=traced.tracing)
    release = asyncio.Event()

    async def job() -> int:
        await release.wait()
        return 1

    task, joined = flight.start(job)
    assert not joined
    with traced.tracing.span("joiner"):
        waiter = asyncio.get_running_loop().create_task(flight.run(job))
        await asyncio.sleep(0)
    release.set()
    await task
    assert await waiter == (1, True)
    assert traced.one("joiner").links == ()


@pytest.fixture
async def redis_backplane(
    redis_server: RedisServer, traced: Traced
) -> AsyncIterator[RedisBackplane]:
    from redis.asyncio import Redis  # noqa: PLC0415 - only these tests build a client by hand

    client = Redis.from_url(redis_server.url, socket_timeout=1)
    backplane = RedisBackplane(
        client,
        channel="test:events",
        open_pubsub=lambda: client.pubsub(ignore_subscribe_messages=True),
        timeout=1,
        metrics=Metrics(),
        tracing=traced.tracing,
    )
    yield backplane
    await backplane.close()


async def test_store_commands_in_a_trace_are_client_spans(
    redis_backplane: RedisBackplane, traced: Traced, redis_server: RedisServer
) -> None:
    await redis_backplane.set("outside", b"1", 10)
    assert traced.spans() == []
    with traced.tracing.span("work"):
        await redis_backplane.set("key", b"value", 10)
        assert await redis_backplane.get_with_ttl("key") is not None
        assert await redis_backplane.set_if_absent("key", b"other", 10) is False
        await redis_backplane.publish("topic")
    work = traced.one("work")
    store = [span for span in traced.spans() if span.name != "work"]
    assert [span.name for span in store] == ["SET", "EVAL", "SET", "PUBLISH"]
    assert [(span.attributes or {})["store.operation"] for span in store] == [
        "set",
        "get",
        "set_nx",
        "publish",
    ]
    for span in store:
        assert span.kind == SpanKind.CLIENT
        assert _parent_id(span) == _span_id(work)
        assert (span.attributes or {})["db.system.name"] == "redis"
        assert span.status.status_code == StatusCode.UNSET

    redis_server.stop()
    traced.exporter.clear()
    with traced.tracing.span("failing"):
        assert await redis_backplane.get("key") is None
    [failed] = [span for span in traced.spans() if span.name == "GET"]
    assert failed.status.status_code == StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] in {"ConnectionError", "TimeoutError"}


async def test_waiting_for_another_replicas_fill_is_a_span(
    redis_backplane: RedisBackplane, traced: Traced
) -> None:
    turns = Turns(redis_backplane, name="test:lock", topic="test", ttl=5, owner="test", max_wait=5)
    await redis_backplane.start()
    stored: list[int] = []
    loading = asyncio.Event()
    release = asyncio.Event()

    async def read() -> int | None:
        return stored[-1] if stored else None

    async def slow_load() -> int:
        loading.set()
        await release.wait()
        return 1

    async def store(value: int) -> None:
        stored.append(value)

    def fill(load: Callable[[], Awaitable[int]]) -> CoordinatedFill[int]:
        return CoordinatedFill(
            name="thing",
            read=read,
            load=load,
            store=store,
            coordinator=turns,
            metrics=Metrics(),
            tracing=traced.tracing,
        )

    async def never() -> int:
        raise AssertionError("the waiter must not load")

    async def holder() -> int:
        with traced.tracing.span("holder"):
            return await fill(slow_load).run(lambda _value: True)

    async def waiter() -> int:
        with traced.tracing.span("waiter"):
            return await fill(never).run(lambda _value: True)

    first = asyncio.get_running_loop().create_task(holder())
    await loading.wait()
    second = asyncio.get_running_loop().create_task(waiter())
    # Both tried to take the turn (SET NX): the waiter is waiting.
    await eventually(lambda: len(traced.named("SET")) == 2)
    release.set()
    assert (await first, await second) == (1, 1)

    spans = traced.spans()
    loaded = traced.one("fill thing", SpanKind.INTERNAL)
    assert _descends_from(loaded, traced.one("holder"), spans)
    assert (loaded.attributes or {})["fill.alone"] is False
    wait = traced.one("wait for thing fill", SpanKind.INTERNAL)
    assert _parent_id(wait) == _span_id(traced.one("waiter"))
    assert wait.status.status_code == StatusCode.UNSET


async def test_the_server_span_names_the_request_context(traced: Traced) -> None:
    seen: list[TraceParent | None] = []

    async def handler(_request: web.Request) -> web.StreamResponse:
        context = REQUEST.get()
        seen.append(None if context is None else context.trace)
        return web.Response(text="ok")

    wrapped = traced.tracing.wrap_handler(handler, "/thing")
    app = web.Application()

    async def with_context(request: web.Request) -> web.StreamResponse:
        caller = TraceParent(TRACE_ID, CALLER_SPAN, "01", TRACESTATE)
        bound = REQUEST.set(RequestContext("request-1", "someone", caller))
        try:
            return await wrapped(request)
        finally:
            REQUEST.reset(bound)

    app.router.add_get("/thing", with_context)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await serve(runner)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{HOST}:{port}/thing") as response,
        ):
            assert await response.text() == "ok"
    finally:
        await runner.cleanup()
    server = traced.one("GET /thing", SpanKind.SERVER)
    assert seen == [TraceParent(TRACE_ID, _span_id(server), "01", TRACESTATE)]
    assert (server.attributes or {})["caller"] == "someone"
