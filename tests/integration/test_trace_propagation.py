"""W3C trace context without OpenTelemetry: a caller's valid traceparent reaches the upstream.

What the 1NCE emulator saw is read back from its state: the traceparent and tracestate of
every token and products request ("" when absent).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.observability.context import REQUEST, RequestContext, TraceParent
from proxy.observability.metrics import Metrics
from proxy.upstream.transport import Outgoing, exchange
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import REPO_ROOT, clean_env
from tests.support.waiting import eventually

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


# Run in a fresh interpreter: which modules a process imports is what is checked. With the
# extra installed, redis-py imports OpenTelemetry's API and metrics SDK by itself; the
# tracing SDK, the exporter and the propagator are what only tracing would load.
_TRACING_CHECK = """
import sys
if sys.argv[1] == "absent":
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import proxy.__main__, proxy.app, proxy.server
from proxy.observability.tracing import start_tracing
print("tracing:", start_tracing().enabled)
loaded = {name for name, module in sys.modules.items() if module is not None}
print("otel:", "opentelemetry" in loaded)
print("tracing modules:", sorted(loaded & set(sys.argv[2:])))
"""
_TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.trace.propagation.tracecontext",
)


def _tracing_check(extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in clean_env().items() if not key.startswith("OTEL_")}
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", _TRACING_CHECK, extra, *_TRACING_MODULES],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=REPO_ROOT,
    )


def _traceparent() -> str:
    """A new valid traceparent, sampled."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


async def test_a_callers_trace_context_reaches_the_token_and_products_requests(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.get(
        "/v1/products", headers={"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    )
    assert response.status == 200
    await response.read()
    state = sandbox.state
    assert state.products_traceparents == [TRACEPARENT]
    assert state.products_tracestates == [TRACESTATE]
    assert state.token_traceparents == [TRACEPARENT]
    assert state.token_tracestates == [TRACESTATE]


async def test_a_trace_without_state_sends_no_tracestate(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.get("/api/v1/products", headers={"traceparent": TRACEPARENT})
    assert response.status == 200
    await response.read()
    assert sandbox.state.products_traceparents == [TRACEPARENT]
    assert sandbox.state.products_tracestates == [""]


async def test_no_trace_context_sends_none(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    response = await client.get("/v1/products", headers={"tracestate": TRACESTATE})
    assert response.status == 200
    await response.read()
    # Tracing is off and the caller sent no traceparent: no ids are made up.
    assert sandbox.state.products_traceparents == [""]
    assert sandbox.state.token_traceparents == [""]
    assert sandbox.state.products_tracestates == [""]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"01-{TRACE_ID}-00f067aa0ba902b7-01", id="version-01"),
        pytest.param(f"ff-{TRACE_ID}-00f067aa0ba902b7-01", id="version-ff"),
        pytest.param(TRACEPARENT.upper(), id="uppercase-hex"),
        pytest.param(f"00-{'0' * 32}-00f067aa0ba902b7-01", id="zero-trace-id"),
        pytest.param(f"00-{TRACE_ID}-{'0' * 16}-01", id="zero-span-id"),
        pytest.param(f"{TRACEPARENT}-extra", id="extra-field"),
        pytest.param(f"00-{TRACE_ID}-00f067aa0ba902b7", id="missing-flags"),
        pytest.param(f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01", id="short-trace-id"),
        pytest.param("x" * 10_000, id="10k-junk"),
        pytest.param(f"{TRACEPARENT}\u00e9", id="non-ascii"),
    ],
)
async def test_an_invalid_traceparent_is_not_passed_on(
    value: str, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    response = await client.get(
        "/v1/products",
        headers={"traceparent": value.encode().decode("latin-1"), "tracestate": TRACESTATE},
    )
    assert response.status == 200
    await response.read()
    assert sandbox.state.products_traceparents == [""]
    assert sandbox.state.token_traceparents == [""]
    # A tracestate without a valid parent is dropped with it.
    assert sandbox.state.products_tracestates == [""]


async def test_a_coalesced_fetch_carries_the_trace_of_the_request_that_started_it(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    sandbox.state.faults.products_latency = 0.5
    client = await make_proxy()
    sent = [_traceparent() for _ in range(8)]

    async def one(traceparent: str) -> tuple[str, str]:
        response = await client.get("/v1/products", headers={"traceparent": traceparent})
        assert response.status == 200
        await response.read()
        return traceparent, response.headers["Cache-Status"]

    replies = await asyncio.gather(*(one(traceparent) for traceparent in sent))

    starters = [tp for tp, status in replies if not status.endswith("collapsed")]
    assert len(starters) == 1, replies
    assert sandbox.state.products_requests == 1
    assert sandbox.state.products_traceparents == starters
    assert sandbox.state.token_traceparents == starters


async def test_the_keepers_own_refresh_carries_no_trace_context(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(cache_ttl=1)
    response = await client.get("/v1/products", headers={"traceparent": TRACEPARENT})
    assert response.status == 200
    await response.read()
    # With no traffic, the keeper refreshes the catalog once it turns stale: that fetch was
    # caused by no request, so it names none, not the one that filled the cache first.
    await eventually(lambda: sandbox.state.products_requests >= 2, within=10)
    assert sandbox.state.products_traceparents[:2] == [TRACEPARENT, ""]
    assert sandbox.state.products_tracestates[:2] == ["", ""]


async def test_warm_up_sends_no_trace_context(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    await make_proxy(warmup=True)
    await eventually(lambda: sandbox.state.products_requests == 1)
    assert sandbox.state.products_traceparents == [""]
    assert sandbox.state.token_traceparents == [""]


# --- the transport alone, with the request context set by hand --------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _token_request(session: aiohttp.ClientSession, sandbox: Sandbox) -> int:
    request = Outgoing(
        "POST",
        f"{sandbox.url}/oauth/token",
        endpoint="token",
        headers={"Accept": "application/json"},
        json_body={"grant_type": "client_credentials"},
    )
    answer = await exchange(session, request, max_bytes=1 << 20, metrics=Metrics())
    return answer.status


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        pytest.param(
            TraceParent(TRACE_ID, "00f067aa0ba902b7", "01", TRACESTATE),
            (TRACEPARENT, TRACESTATE),
            id="with-state",
        ),
        pytest.param(
            TraceParent(TRACE_ID, "00f067aa0ba902b7", "00"),
            (f"00-{TRACE_ID}-00f067aa0ba902b7-00", ""),
            id="unsampled-without-state",
        ),
        pytest.param(None, ("", ""), id="no-trace"),
    ],
)
async def test_exchange_sends_the_trace_of_the_request_being_served(
    trace: TraceParent | None,
    expected: tuple[str, str],
    session: aiohttp.ClientSession,
    sandbox: Sandbox,
) -> None:
    bound = REQUEST.set(RequestContext("request-1", "anonymous", trace))
    try:
        # No credentials: the emulator answers 400, and still records the headers.
        assert await _token_request(session, sandbox) == 400
    finally:
        REQUEST.reset(bound)
    assert (sandbox.state.token_traceparents, sandbox.state.token_tracestates) == (
        [expected[0]],
        [expected[1]],
    )


async def test_exchange_outside_any_request_sends_no_trace(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    assert REQUEST.get() is None
    assert await _token_request(session, sandbox) == 400
    assert sandbox.state.token_traceparents == [""]


async def test_a_task_started_by_a_request_carries_its_trace(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> None:
    # How a shared fetch gets its starter's trace: asyncio copies the context into tasks.
    first = TraceParent(TRACE_ID, "00f067aa0ba902b7", "01")
    bound = REQUEST.set(RequestContext("request-1", "anonymous", first))
    try:
        task = asyncio.get_running_loop().create_task(_token_request(session, sandbox))
    finally:
        REQUEST.reset(bound)
    second = TraceParent(os.urandom(16).hex(), os.urandom(8).hex(), "01")
    bound = REQUEST.set(RequestContext("request-2", "anonymous", second))
    try:
        assert await task == 400
    finally:
        REQUEST.reset(bound)
    assert sandbox.state.token_traceparents == [TRACEPARENT]


# --- tracing off costs nothing -------------------------------------------------------------------


def test_tracing_off_loads_nothing_of_tracing() -> None:
    result = _tracing_check("installed")
    lines = result.stdout.splitlines()
    assert lines[0] == "tracing: False"
    assert lines[2] == "tracing modules: []"


def test_tracing_asked_for_without_the_extra_stays_off_with_a_warning() -> None:
    result = _tracing_check("absent", OTEL_TRACES_EXPORTER="otlp")
    lines = result.stdout.splitlines()
    assert lines[-3:] == ["tracing: False", "otel: False", "tracing modules: []"]
    assert "tracing_unavailable" in result.stdout
    assert "otel extra is not installed" in result.stdout
