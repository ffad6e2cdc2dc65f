"""One bounded exchange with the upstream over real sockets: sizes, redirects, broken answers."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.observability.metrics import Metrics
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, default_catalog
from proxy.upstream.errors import (
    UpstreamBadResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.upstream.transport import ACCEPT_ENCODING, Outgoing, Reply, exchange
from tests.support.net import free_port
from tests.support.sandbox import Sandbox, basic_auth
from tests.support.settings import REPO_ROOT
from tests.support.waiting import eventually

MakeServer = Callable[[web.Application], Awaitable[TestServer]]

MIB = 2**20
GRANT = {"grant_type": "client_credentials"}
BASIC = {"Authorization": basic_auth(SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET)}
COUNTED = re.compile(
    r'^\w*upstream_requests_total\{endpoint="(\w+)",outcome="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE
)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # Built as the service builds its own: aiohttp must not inflate bodies itself.
    async with aiohttp.ClientSession(
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as client_session:
        yield client_session


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def second_sandbox() -> AsyncIterator[Sandbox]:
    emulator = Sandbox()
    await emulator.start()
    yield emulator
    await emulator.stop()


def counted(metrics: Metrics) -> dict[tuple[str, str], float]:
    """The upstream request counters as the metrics endpoint renders them."""
    text = metrics.render().decode()
    return {(endpoint, outcome): float(value) for endpoint, outcome, value in COUNTED.findall(text)}


async def get_token(session: aiohttp.ClientSession, base: str, metrics: Metrics) -> str:
    answer = await exchange(
        session,
        Outgoing("POST", f"{base}/oauth/token", "token", BASIC, json_body=GRANT),
        max_bytes=64 * 1024,
        metrics=metrics,
    )
    assert answer.status == 200
    token: str = json.loads(answer.body)["access_token"]
    return token


async def get_products(
    session: aiohttp.ClientSession, url: str, token: str, metrics: Metrics, max_bytes: int
) -> Reply:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return await exchange(
        session, Outgoing("GET", url, "products", headers), max_bytes=max_bytes, metrics=metrics
    )


def serving(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server that answers any request with ``reply`` verbatim, then hangs up."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/products"
    finally:
        server.close()
        await server.wait_closed()


# --- answers handed over ----------------------------------------------------------------------


async def test_an_answer_is_returned_whole_and_left_for_the_caller_to_count(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics
) -> None:
    token = await get_token(session, sandbox.url, metrics)
    answer = await get_products(session, f"{sandbox.url}/v1/products", token, metrics, MIB)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert json.loads(answer.body) == default_catalog()
    assert 0 < answer.seconds < 5
    assert sandbox.state.products_authorizations == [f"Bearer {token}"]
    assert counted(metrics) == {}


async def test_the_request_asks_only_for_codings_it_can_bound_and_carries_the_json_body(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics
) -> None:
    seen: list[tuple[str, list[str], str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        accept = request.headers.getall("Accept-Encoding")
        seen.append((request.method, accept, request.content_type, await request.read()))
        return web.json_response({"ok": True})

    server = await aiohttp_server(serving(record))
    headers = {"accept-encoding": "br, zstd", "X-Test": "1"}
    url = str(server.make_url("/oauth/token"))
    answer = await exchange(
        session,
        Outgoing("POST", url, "token", headers, json_body=GRANT),
        max_bytes=1000,
        metrics=metrics,
    )
    assert json.loads(answer.body) == {"ok": True}
    assert seen == [("POST", [ACCEPT_ENCODING], "application/json", json.dumps(GRANT).encode())]


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "GZip ", "identity"])
async def test_compressed_answers_are_inflated(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics, coding: str
) -> None:
    payload = json.dumps(default_catalog()).encode()
    name = coding.strip().lower()
    wire = {
        "gzip": gzip.compress(payload),
        "x-gzip": gzip.compress(payload),
        "deflate": zlib.compress(payload),
        "identity": payload,
    }[name]

    async def compressed(_: web.Request) -> web.Response:
        return web.Response(body=wire, headers={"Content-Encoding": coding})

    server = await aiohttp_server(serving(compressed))
    answer = await get_products(
        session, str(server.make_url("/v1/products")), "t", metrics, len(payload)
    )
    assert answer.body == payload
    assert answer.headers["Content-Length"] == str(len(wire))
    assert counted(metrics) == {}


# --- redirects --------------------------------------------------------------------------------


async def test_a_redirect_is_refused_and_its_target_gets_nothing(
    session: aiohttp.ClientSession, sandbox: Sandbox, second_sandbox: Sandbox, metrics: Metrics
) -> None:
    token = await get_token(session, sandbox.url, metrics)
    sandbox.state.faults.redirect_to = f"{second_sandbox.url}/v1/products"
    with pytest.raises(
        UpstreamBadResponse, match=r"^upstream answered 302; redirects are not foll"
    ):
        await get_products(session, f"{sandbox.url}/v1/products", token, metrics, MIB)
    assert sandbox.state.products_requests == 1
    assert second_sandbox.state.products_requests == 0
    assert second_sandbox.state.products_authorizations == []
    assert counted(metrics) == {("products", "redirect"): 1.0}
    # aiohttp's defaults would have sent the request on (it drops the token across origins).
    sandbox.state.faults.redirect_to = f"{second_sandbox.url}/v1/products"
    async with aiohttp.ClientSession() as follower:
        await follower.get(
            f"{sandbox.url}/v1/products", headers={"Authorization": f"Bearer {token}"}
        )
    assert second_sandbox.state.products_requests == 1


async def test_a_token_redirect_is_refused_and_the_credentials_stay_home(
    session: aiohttp.ClientSession, sandbox: Sandbox, second_sandbox: Sandbox, metrics: Metrics
) -> None:
    sandbox.state.faults.token_redirect_to = f"{second_sandbox.url}/oauth/token"
    with pytest.raises(UpstreamBadResponse, match="redirects are not followed") as caught:
        await get_token(session, sandbox.url, metrics)
    assert not caught.value.retryable
    assert sandbox.state.token_requests == 1
    assert second_sandbox.state.token_requests == 0
    assert counted(metrics) == {("token", "redirect"): 1.0}


@pytest.mark.parametrize("status", [301, 303, 307, 308])
async def test_every_redirect_status_is_refused(
    session: aiohttp.ClientSession,
    aiohttp_server: MakeServer,
    second_sandbox: Sandbox,
    metrics: Metrics,
    status: int,
) -> None:
    async def redirect(_: web.Request) -> web.Response:
        return web.Response(
            status=status, headers={"Location": f"{second_sandbox.url}/v1/products"}
        )

    server = await aiohttp_server(serving(redirect))
    with pytest.raises(UpstreamBadResponse, match=f"answered {status}; redirects"):
        await get_products(session, str(server.make_url("/v1/products")), "t", metrics, MIB)
    assert second_sandbox.state.products_requests == 0


# --- sizes ------------------------------------------------------------------------------------


async def test_an_oversized_body_is_refused_and_its_sending_cut_short(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics
) -> None:
    token = await get_token(session, sandbox.url, metrics)
    sandbox.state.faults.oversized_body = 500 * MIB
    with pytest.raises(UpstreamBadResponse, match=r"^upstream answer larger than 1048576 bytes$"):
        await get_products(session, f"{sandbox.url}/v1/products", token, metrics, MIB)
    await eventually(lambda: sandbox.state.streams_cut == 1)
    assert MIB < sandbox.state.streamed_bytes < 64 * MIB
    assert counted(metrics) == {("products", "too_large"): 1.0}
    # The refused connection was not put back in the pool: the next exchange is clean.
    sandbox.state.faults.reset()
    answer = await get_products(session, f"{sandbox.url}/v1/products", token, metrics, MIB)
    assert json.loads(answer.body) == default_catalog()


async def test_a_declared_length_over_the_bound_is_refused_before_reading(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics
) -> None:
    left: list[bool] = []

    async def declared(request: web.Request) -> web.StreamResponse:
        # Headers only: a client that waited for the body would wait forever.
        response = web.StreamResponse()
        response.content_length = 100 * MIB
        await response.prepare(request)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            left.append(True)
            raise
        return response

    server = await aiohttp_server(serving(declared))
    async with asyncio.timeout(5):
        with pytest.raises(UpstreamBadResponse, match="larger than 1048576 bytes"):
            await get_products(session, str(server.make_url("/")), "t", metrics, MIB)
        await eventually(lambda: left == [True])
    assert counted(metrics) == {("products", "too_large"): 1.0}


@pytest.mark.parametrize("fault", ["oversized_body", "gzip_bomb"])
async def test_a_body_of_exactly_the_bound_is_accepted_one_more_byte_is_not(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics, fault: str
) -> None:
    token = await get_token(session, sandbox.url, metrics)
    url = f"{sandbox.url}/v1/products"
    limit = 3 * MIB + 7
    sandbox.state.faults.load({fault: limit})
    answer = await get_products(session, url, token, metrics, limit)
    assert answer.status == 200
    assert len(answer.body) == limit
    if fault == "gzip_bomb":
        assert answer.body == bytes(limit)
        assert answer.headers["Content-Encoding"] == "gzip"
    sandbox.state.faults.load({fault: limit + 1})
    with pytest.raises(UpstreamBadResponse, match=f"larger than {limit} bytes"):
        await get_products(session, url, token, metrics, limit)
    assert counted(metrics) == {("products", "too_large"): 1.0}


async def test_a_gzip_bomb_is_refused_without_inflating_it(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics
) -> None:
    token = await get_token(session, sandbox.url, metrics)
    sandbox.state.faults.gzip_bomb = 100 * 2**30
    with pytest.raises(UpstreamBadResponse, match="larger than 1048576 bytes"):
        await get_products(session, f"{sandbox.url}/v1/products", token, metrics, MIB)
    await eventually(lambda: sandbox.state.streams_cut == 1)
    assert counted(metrics) == {("products", "too_large"): 1.0}


def gzip_of_zeros(mib: int) -> bytes:
    """The start of a gzip stream of ``mib`` MiB of zeros (no trailer), made in a blink."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush nothing refers back, so one more MiB compresses the same every time.
    again = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mib - 1)


async def test_a_gzip_bomb_never_inflates_far_past_the_bound(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics
) -> None:
    wire = gzip_of_zeros(512)
    assert len(wire) < MIB
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert inflater.decompress(wire[:100_000], 3 * MIB) == bytes(3 * MIB)

    async def bomb(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(wire)
        return response

    server = await aiohttp_server(serving(bomb))
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamBadResponse, match="larger than 1048576 bytes"):
            await get_products(session, str(server.make_url("/")), "t", metrics, MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB


async def test_a_compressed_body_is_bounded_on_the_wire_too(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics
) -> None:
    # Empty stored blocks after a sync flush: 2.5 MB on the wire that inflate to two bytes.
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    opening = compressor.compress(b"[") + compressor.flush(zlib.Z_SYNC_FLUSH)
    empty_blocks = b"\x00\x00\x00\xff\xff" * 500_000
    wire = opening + empty_blocks + compressor.compress(b"]") + compressor.flush()
    assert len(wire) > 2 * MIB
    assert zlib.decompress(wire, 16 + zlib.MAX_WBITS) == b"[]"

    async def padded(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(wire)
        await response.write_eof()
        return response

    server = await aiohttp_server(serving(padded))
    with pytest.raises(UpstreamBadResponse, match="larger than 1048576 bytes"):
        await get_products(session, str(server.make_url("/")), "t", metrics, MIB)


async def test_the_token_endpoint_is_bounded_too(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics
) -> None:
    sandbox.state.faults.token_oversized_body = 10 * MIB
    with pytest.raises(UpstreamBadResponse, match="larger than 65536 bytes"):
        await get_token(session, sandbox.url, metrics)
    await eventually(lambda: sandbox.state.streams_cut == 1)
    assert counted(metrics) == {("token", "too_large"): 1.0}


# --- bodies that cannot be decoded -------------------------------------------------------------


def _gzip_truncated() -> bytes:
    return gzip.compress(b"[" + b"1," * 1000 + b"1]")[:-20]


@pytest.mark.parametrize(
    "case",
    [
        ("gzip", b"definitely not gzip", "corrupt compressed body"),
        ("deflate", gzip.compress(b"[]"), "corrupt compressed body"),
        ("gzip", _gzip_truncated(), "ends early"),
        ("gzip", gzip.compress(b"[]") + b"trailing", "data follows the end"),
        ("gzip", gzip.compress(b"[]") * 2, "data follows the end"),
        ("br", b"\x0b\x00\x80[]\x03", "content coding 'br'"),
        ("gzip, gzip", gzip.compress(gzip.compress(b"[]")), "content coding 'gzip, gzip'"),
    ],
)
async def test_bodies_that_cannot_be_decoded_are_refused(
    session: aiohttp.ClientSession,
    aiohttp_server: MakeServer,
    metrics: Metrics,
    case: tuple[str, bytes, str],
) -> None:
    coding, body, message = case

    async def encoded(_: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": coding})

    server = await aiohttp_server(serving(encoded))
    with pytest.raises(UpstreamBadResponse, match=message) as caught:
        await get_products(session, str(server.make_url("/")), "t", metrics, MIB)
    assert not caught.value.retryable
    assert counted(metrics) == {("products", "invalid_body"): 1.0}


async def test_an_empty_body_marked_gzip_is_just_empty(
    session: aiohttp.ClientSession, aiohttp_server: MakeServer, metrics: Metrics
) -> None:
    async def empty(_: web.Request) -> web.Response:
        return web.Response(status=401, headers={"Content-Encoding": "gzip"})

    server = await aiohttp_server(serving(empty))
    answer = await get_products(session, str(server.make_url("/")), "t", metrics, MIB)
    assert (answer.status, answer.body) == (401, b"")


# --- broken connections and responses ---------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"\x00\x01\x02\xff" * 64,
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc",
    ],
)
async def test_a_malformed_response_is_a_bad_response(
    session: aiohttp.ClientSession, metrics: Metrics, reply: bytes
) -> None:
    async with raw_server(reply) as url:
        with pytest.raises(UpstreamBadResponse, match="unusable response") as caught:
            await get_products(session, url, "t", metrics, MIB)
    assert not caught.value.retryable
    assert counted(metrics) == {("products", "invalid_response"): 1.0}


async def test_a_body_cut_short_is_a_retryable_bad_response(
    session: aiohttp.ClientSession, metrics: Metrics
) -> None:
    async with raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[1,2") as url:
        with pytest.raises(UpstreamBadResponse, match="broken body") as caught:
            await get_products(session, url, "t", metrics, MIB)
    assert caught.value.retryable
    assert counted(metrics) == {("products", "invalid_body"): 1.0}


async def test_a_hang_up_without_an_answer_is_unavailable(
    session: aiohttp.ClientSession, metrics: Metrics
) -> None:
    async with raw_server(b"") as url:
        with pytest.raises(UpstreamUnavailable, match="ServerDisconnectedError") as caught:
            await get_products(session, url, "t", metrics, MIB)
    assert caught.value.retryable
    assert counted(metrics) == {("products", "connection_error"): 1.0}


async def test_a_refused_port_is_unavailable(
    session: aiohttp.ClientSession, metrics: Metrics
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailable, match="upstream unreachable") as caught:
        await get_token(session, url, metrics)
    assert caught.value.retryable
    assert counted(metrics) == {("token", "connection_error"): 1.0}
    assert 'upstream_request_duration_seconds_count{endpoint="token"} 1.0' in (
        metrics.render().decode()
    )


async def test_an_invalid_url_is_a_bad_response(
    session: aiohttp.ClientSession, metrics: Metrics
) -> None:
    with pytest.raises(UpstreamBadResponse, match="InvalidUrlClientError"):
        await get_products(session, "not a url", "t", metrics, MIB)
    assert counted(metrics) == {("products", "invalid_response"): 1.0}


async def test_an_aiohttp_read_timeout_is_an_upstream_timeout(
    sandbox: Sandbox, metrics: Metrics
) -> None:
    sandbox.state.faults.hang = True
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        with pytest.raises(UpstreamTimeout, match="SocketTimeoutError") as caught:
            await get_products(session, f"{sandbox.url}/v1/products", "t", metrics, MIB)
    assert caught.value.retryable
    assert counted(metrics) == {("products", "timeout"): 1.0}


async def test_a_cancelled_exchange_counts_a_timeout_and_stays_cancelled(
    session: aiohttp.ClientSession, sandbox: Sandbox, metrics: Metrics
) -> None:
    sandbox.state.faults.token_hang = True
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await get_token(session, sandbox.url, metrics)
    assert counted(metrics) == {("token", "timeout"): 1.0}


# --- memory -----------------------------------------------------------------------------------

_MEMORY_CHILD = """
import asyncio, json, sys
import aiohttp
from proxy.observability.metrics import Metrics
from proxy.upstream.errors import UpstreamError
from proxy.upstream.transport import Outgoing, exchange
from tests.support.sandbox import basic_auth

async def main():
    metrics = Metrics()
    errors = []
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for base in sys.argv[3:]:
            grant = {"grant_type": "client_credentials"}
            auth = {"Authorization": basic_auth(sys.argv[1], sys.argv[2])}
            answer = await exchange(session, Outgoing("POST", base + "/oauth/token", "token",
                                    auth, json_body=grant), max_bytes=65536, metrics=metrics)
            token = json.loads(answer.body)["access_token"]
            try:
                await exchange(session, Outgoing("GET", base + "/v1/products", "products",
                               {"Authorization": "Bearer " + token}),
                               max_bytes=8 * 2**20, metrics=metrics)
            except UpstreamError as error:
                errors.append(str(error))
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"errors": errors, "peak_kib": int(peak.split()[1])}))

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_huge_answers_keep_the_client_memory_near_the_bound(
    sandbox: Sandbox, second_sandbox: Sandbox
) -> None:
    sandbox.state.faults.oversized_body = 300 * 10**6
    second_sandbox.state.faults.gzip_bomb = 10**9
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MEMORY_CHILD,
        SANDBOX_CLIENT_ID,
        SANDBOX_CLIENT_SECRET,
        sandbox.url,
        second_sandbox.url,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await child.communicate()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["errors"] == ["upstream answer larger than 8388608 bytes"] * 2
    assert report["peak_kib"] < 200 * 1024
    # Both senders saw the client leave long before the end.
    await eventually(lambda: sandbox.state.streams_cut == second_sandbox.state.streams_cut == 1)
    assert sandbox.state.streamed_bytes < 100 * 10**6
