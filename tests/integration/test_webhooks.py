"""Webhooks over real sockets: signed bodies, retries, refusals, order, bounds and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

from proxy import USER_AGENT
from proxy.catalog.diff import Summary
from proxy.history.records import VersionEvent, VersionRecord
from proxy.history.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Webhooks,
    sign,
    target_of,
)
from proxy.observability.metrics import Metrics
from tests.support.logs import capture
from tests.support.net import HOST, free_port
from tests.support.waiting import eventually

SECRET = b"receiver-shared-secret"
# A path and query that may hold secrets of their own: never logged, never a metric label.
HOOK_PATH = "/hooks/path-secret"
HOOK_QUERY = "?key=query-secret"
# Small enough that every test runs in well under a second or two.
FAST = {"timeout": 1.0, "first_pause": 0.05, "max_pause": 0.2, "retry_for": 5.0}

MakeServer = Callable[[web.Application], Awaitable[TestServer]]


def version_event(version: int, epoch: str = "e7") -> VersionEvent:
    record = VersionRecord(
        version=version,
        etag=f'"v{version}"',
        stored_at=1_700_000_000.25,
        products=10 + version,
        summary=Summary(added=1, removed=0, changed=2),
    )
    return VersionEvent(epoch, record)


@dataclass(frozen=True)
class Seen:
    """One request as the receiver got it."""

    path: str
    headers: CIMultiDictProxy[str]
    body: bytes
    at: float

    @property
    def version(self) -> int:
        version: int = json.loads(self.body)["version"]
        return version


@dataclass
class Receiver:
    """A webhook receiver: answers ``answers`` in turn, then 200; records every request.

    While ``gate`` is clear, each request is recorded and then held before it is answered.
    """

    url: str = ""
    answers: list[web.Response] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    def versions(self) -> list[int]:
        return [request.version for request in self.seen]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.path_qs, request.headers, body, time.monotonic()))
        await self.gate.wait()
        return self.answers.pop(0) if self.answers else web.Response(text="ok")


class Harness:
    """Receivers on loopback ports and senders to them, stopped senders first."""

    def __init__(self, make_server: MakeServer) -> None:
        self._make_server = make_server
        self._receivers: list[Receiver] = []
        self._senders: list[Webhooks] = []
        self.released = asyncio.Event()
        """Set once the test is over: handlers that hold their answer wait for it."""

    async def receiver(self, *answers: web.Response, held: bool = False) -> Receiver:
        """Start a receiver; ``held=True`` holds its answers until its gate opens."""
        receiver = Receiver(answers=list(answers))
        if not held:
            receiver.gate.set()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", receiver.handle)
        server = await self._make_server(app)
        receiver.url = str(server.make_url(HOOK_PATH)) + HOOK_QUERY
        self._receivers.append(receiver)
        return receiver

    async def serve(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        """Start a server answering POSTs with ``handler``; return its webhook URL."""
        app = web.Application()
        app.router.add_post(HOOK_PATH, handler)
        server = await self._make_server(app)
        return str(server.make_url(HOOK_PATH))

    async def sender(self, urls: list[str], metrics: Metrics, **overrides: Any) -> Webhooks:
        """Start a sender to ``urls``; keywords override ``FAST``."""
        webhooks = Webhooks(urls, secret=SECRET, metrics=metrics, **{**FAST, **overrides})
        await webhooks.start()
        self._senders.append(webhooks)
        return webhooks

    async def stop(self) -> None:
        for webhooks in self._senders:
            await webhooks.close()
        # Held handlers must end before their servers are closed.
        self.released.set()
        for receiver in self._receivers:
            receiver.gate.set()


@pytest.fixture
async def hooks(aiohttp_server: MakeServer) -> AsyncIterator[Harness]:
    harness = Harness(aiohttp_server)
    yield harness
    await harness.stop()


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A webhook URL whose server takes connections and requests but never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://{HOST}:{port}{HOOK_PATH}"
    server.close()
    for writer in held:
        writer.close()
    await server.wait_closed()


def count(metrics: Metrics, url: str, outcome: str) -> float:
    labels = {"target": target_of(url), "outcome": outcome}
    value = metrics.registry.get_sample_value("product_proxy_webhook_deliveries_total", labels)
    return value or 0.0


def counts(metrics: Metrics, url: str) -> dict[str, float]:
    outcomes = ("delivered", "retried", "failed", "dropped")
    return {outcome: count(metrics, url, outcome) for outcome in outcomes}


def verified(seen: Seen) -> bool:
    """Check a request's signature as docs/webhooks.md tells receivers to."""
    expected = "sha256=" + hmac.new(SECRET, seen.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, seen.headers.get(SIGNATURE_HEADER, ""))


# --- what a receiver gets ---------------------------------------------------------------------


async def test_the_receiver_gets_the_exact_body_signed_with_the_documented_headers(
    hooks: Harness,
) -> None:
    receiver = await hooks.receiver()
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([receiver.url], metrics)
        webhooks.deliver(version_event(3))
        await eventually(lambda: count(metrics, receiver.url, "delivered") == 1)
        await webhooks.close()

    [seen] = receiver.seen
    assert seen.path == HOOK_PATH + HOOK_QUERY
    assert seen.body == (
        b'{"event":"catalog","epoch":"e7","version":3,"etag":"\\"v3\\"",'
        b'"stored_at":"2023-11-14T22:13:20.250Z","products":13,'
        b'"summary":{"added":1,"removed":0,"changed":2}}'
    )
    assert verified(seen)
    assert seen.headers[SIGNATURE_HEADER] == sign(SECRET, seen.body)
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert seen.headers[EVENT_HEADER] == "catalog"
    assert seen.headers[DELIVERY_HEADER] == "e7:3"
    assert "Cookie" not in seen.headers
    assert counts(metrics, receiver.url) == {
        "delivered": 1,
        "retried": 0,
        "failed": 0,
        "dropped": 0,
    }
    [delivered] = [record for record in logs.records() if record["event"] == "webhook_delivered"]
    assert delivered["target"] == target_of(receiver.url)
    assert delivered["target"].startswith(f"http://{HOST}:")
    assert (delivered["epoch"], delivered["version"], delivered["attempts"]) == ("e7", 3, 1)
    for secret in ("path-secret", "query-secret", SECRET.decode()):
        assert secret not in logs.text()


async def test_a_signature_verifies_only_under_the_secret_and_over_the_exact_body(
    hooks: Harness,
) -> None:
    receiver = await hooks.receiver()
    metrics = Metrics()
    webhooks = await hooks.sender([receiver.url], metrics)
    webhooks.deliver(version_event(1))
    await eventually(lambda: len(receiver.seen) == 1)
    [seen] = receiver.seen
    header = seen.headers[SIGNATURE_HEADER]
    assert header.startswith("sha256=")
    assert len(header) == len("sha256=") + 64
    assert header == header.lower()
    assert not hmac.compare_digest(header, sign(b"another secret", seen.body))
    assert not hmac.compare_digest(header, sign(SECRET, seen.body + b" "))
    # The widely published HMAC-SHA256 example: key "key", the quick brown fox.
    fox = b"The quick brown fox jumps over the lazy dog"
    assert sign(b"key", fox) == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "https://user:password@Hooks.Example.com/p/secret?token=x",
            "https://hooks.example.com:443",
        ),
        ("http://hooks.example.com/p", "http://hooks.example.com:80"),
        ("http://127.0.0.1:8080/p?q=1", "http://127.0.0.1:8080"),
        ("http://[::1]:9000/p", "http://[::1]:9000"),
    ],
)
def test_a_target_is_scheme_host_and_port_only(url: str, target: str) -> None:
    assert target_of(url) == target


@pytest.mark.parametrize("url", ["ftp://example.com/x", "/hooks", "http://", "example.com"])
def test_only_absolute_http_urls_are_webhooks(url: str) -> None:
    with pytest.raises(ValueError, match="absolute http or https"):
        Webhooks([url], secret=SECRET, metrics=Metrics())


# --- retries and refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 408, 429])
async def test_an_answer_worth_retrying_is_retried_with_the_same_body_and_signature(
    hooks: Harness, status: int
) -> None:
    receiver = await hooks.receiver(web.Response(status=status), web.Response(status=status))
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([receiver.url], metrics)
        webhooks.deliver(version_event(5))
        await eventually(lambda: count(metrics, receiver.url, "delivered") == 1)

    assert len(receiver.seen) == 3
    first = receiver.seen[0]
    for seen in receiver.seen:
        assert seen.body == first.body
        assert seen.headers[SIGNATURE_HEADER] == first.headers[SIGNATURE_HEADER]
        assert seen.headers[DELIVERY_HEADER] == "e7:5"
        assert verified(seen)
    assert counts(metrics, receiver.url) == {
        "delivered": 1,
        "retried": 2,
        "failed": 0,
        "dropped": 0,
    }
    retries = [record for record in logs.records() if record["event"] == "webhook_retry"]
    assert [(record["attempt"], record["status"]) for record in retries] == [
        (1, status),
        (2, status),
    ]
    assert all(record["level"] == "info" and record["version"] == 5 for record in retries)
    [delivered] = [record for record in logs.records() if record["event"] == "webhook_delivered"]
    assert delivered["attempts"] == 3
    assert "path-secret" not in logs.text()
    assert "query-secret" not in logs.text()


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_a_refusal_is_given_up_at_once(hooks: Harness, status: int) -> None:
    receiver = await hooks.receiver(web.Response(status=status))
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([receiver.url], metrics)
        webhooks.deliver(version_event(2))
        await eventually(lambda: count(metrics, receiver.url, "failed") == 1)
        await asyncio.sleep(0.2)  # longer than any pause: nothing more is sent

    assert len(receiver.seen) == 1
    assert counts(metrics, receiver.url) == {
        "delivered": 0,
        "retried": 0,
        "failed": 1,
        "dropped": 0,
    }
    [failed] = [record for record in logs.records() if record["event"] == "webhook_failed"]
    assert failed["level"] == "warning"
    assert (failed["status"], failed["attempts"], failed["reason"]) == (status, 1, "refused")
    assert failed["target"] == target_of(receiver.url)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_and_is_given_up(hooks: Harness, status: int) -> None:
    elsewhere = await hooks.receiver()
    receiver = await hooks.receiver(
        web.Response(status=status, headers={"Location": elsewhere.url})
    )
    metrics = Metrics()
    webhooks = await hooks.sender([receiver.url], metrics)
    webhooks.deliver(version_event(4))
    await eventually(lambda: count(metrics, receiver.url, "failed") == 1)
    await asyncio.sleep(0.2)

    assert len(receiver.seen) == 1
    assert elsewhere.seen == []
    assert count(metrics, receiver.url, "retried") == 0


async def test_an_unreachable_receiver_is_retried_until_retry_for_runs_out(
    hooks: Harness,
) -> None:
    url = f"http://{HOST}:{free_port()}{HOOK_PATH}"
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([url], metrics, retry_for=0.3)
        webhooks.deliver(version_event(1))
        await eventually(lambda: count(metrics, url, "failed") == 1)

    assert count(metrics, url, "retried") >= 2
    retries = [record for record in logs.records() if record["event"] == "webhook_retry"]
    assert retries
    assert all(record["error"] == "ClientConnectorError" for record in retries)
    assert all("status" not in record for record in retries)
    [failed] = [record for record in logs.records() if record["event"] == "webhook_failed"]
    assert failed["reason"] == "retry_for"
    assert failed["attempts"] == count(metrics, url, "retried") + 1


async def test_retrying_stops_when_the_next_attempt_would_start_after_retry_for(
    hooks: Harness,
) -> None:
    receiver = await hooks.receiver(*(web.Response(status=503) for _ in range(100)))
    metrics = Metrics()
    started = time.monotonic()
    webhooks = await hooks.sender([receiver.url], metrics, retry_for=0.6, max_pause=0.1)
    webhooks.deliver(version_event(1))
    await eventually(lambda: count(metrics, receiver.url, "failed") == 1)
    ended = time.monotonic()
    await asyncio.sleep(0.2)

    attempts = len(receiver.seen)
    # Pauses of 0.025-0.05 s, then 0.05-0.1 s: at least 6 attempts fit in 0.6 s (5, slowed).
    assert attempts >= 5
    assert count(metrics, receiver.url, "retried") == attempts - 1
    assert receiver.seen[-1].at - receiver.seen[0].at <= 0.6 + 0.05
    assert ended - started < 0.6 + 0.5


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        ("30", 0.38, 0.9),  # honoured, but never beyond max_pause (0.4)
        ("0", 0.0, 0.2),  # shorter than the backoff pause: the pause stands
        ("Wed, 21 Oct 2065 07:28:00 GMT", 0.0, 0.2),  # a date is not delta-seconds
    ],
)
async def test_a_retry_after_longer_than_the_pause_is_honoured_within_max_pause(
    hooks: Harness,
    retry_after: str,
    least: float,
    most: float,
) -> None:
    busy = web.Response(status=429, headers={"Retry-After": retry_after})
    receiver = await hooks.receiver(busy)
    metrics = Metrics()
    webhooks = await hooks.sender([receiver.url], metrics, first_pause=0.05, max_pause=0.4)
    webhooks.deliver(version_event(1))
    await eventually(lambda: count(metrics, receiver.url, "delivered") == 1)

    first, second = receiver.seen
    assert least <= second.at - first.at <= most


async def test_a_stalled_answer_body_changes_nothing_once_the_status_has_come(
    hooks: Harness,
) -> None:
    async def stalled(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=202, headers={"Content-Length": "100"})
        await response.prepare(request)
        await response.write(b"partial")
        await hooks.released.wait()
        return response

    url = await hooks.serve(stalled)
    metrics = Metrics()
    webhooks = await hooks.sender([url], metrics, timeout=0.3)
    webhooks.deliver(version_event(1))
    await eventually(lambda: count(metrics, url, "delivered") == 1)

    assert count(metrics, url, "retried") == 0


async def test_no_more_than_64_kib_of_an_answer_is_read(hooks: Harness) -> None:
    async def long_answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b"x" * (128 * 1024))
            # The rest never comes: a sender reading past 64 KiB waits out its timeout.
            await hooks.released.wait()
        return response

    url = await hooks.serve(long_answer)
    metrics = Metrics()
    webhooks = await hooks.sender([url], metrics, timeout=5.0)
    started = time.monotonic()
    webhooks.deliver(version_event(1))
    await eventually(lambda: count(metrics, url, "delivered") == 1, within=1.0)

    assert time.monotonic() - started < 1.0
    assert count(metrics, url, "retried") == 0


# --- independence, order and bounds -----------------------------------------------------------


async def test_a_receiver_that_never_answers_delays_no_other(
    silent_url: str, hooks: Harness
) -> None:
    healthy = await hooks.receiver()
    metrics = Metrics()
    webhooks = await hooks.sender([silent_url, healthy.url], metrics, timeout=0.5)
    started = time.monotonic()
    for version in (1, 2, 3):
        webhooks.deliver(version_event(version))
    await eventually(lambda: len(healthy.seen) == 3, within=0.4)

    assert healthy.versions() == [1, 2, 3]
    assert healthy.seen[-1].at - started < 0.4
    assert count(metrics, silent_url, "retried") == 0
    # Each attempt at the silent one is cut off by the timeout, and retried.
    await eventually(lambda: count(metrics, silent_url, "retried") == 1, within=1.0)
    assert time.monotonic() - started >= 0.5
    assert count(metrics, silent_url, "delivered") == 0


async def test_events_reach_a_receiver_in_the_order_handed_over(hooks: Harness) -> None:
    receiver = await hooks.receiver(web.Response(status=500), web.Response(status=503))
    metrics = Metrics()
    webhooks = await hooks.sender([receiver.url], metrics)
    for version in range(1, 6):
        webhooks.deliver(version_event(version))
    await eventually(lambda: count(metrics, receiver.url, "delivered") == 5)

    # Version 2 waits until version 1, retried twice, is delivered.
    assert receiver.versions() == [1, 1, 1, 2, 3, 4, 5]
    assert [seen.headers[DELIVERY_HEADER] for seen in receiver.seen[2:]] == [
        f"e7:{version}" for version in range(1, 6)
    ]


async def test_a_full_queue_drops_the_oldest_waiting_event(hooks: Harness) -> None:
    receiver = await hooks.receiver(held=True)
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([receiver.url], metrics, queue_size=2)
        webhooks.deliver(version_event(1))
        await eventually(lambda: len(receiver.seen) == 1)
        started = time.perf_counter()
        for version in (2, 3, 4):
            webhooks.deliver(version_event(version))
        handing_over = time.perf_counter() - started
        receiver.gate.set()
        await eventually(lambda: count(metrics, receiver.url, "delivered") == 3)

    assert handing_over < 0.05
    assert receiver.versions() == [1, 3, 4]
    assert count(metrics, receiver.url, "dropped") == 1
    [dropped] = [record for record in logs.records() if record["event"] == "webhook_dropped"]
    assert (dropped["version"], dropped["reason"], dropped["level"]) == (2, "queue_full", "warning")


async def test_every_url_gets_every_event(hooks: Harness) -> None:
    first, second = await hooks.receiver(), await hooks.receiver(web.Response(status=500))
    metrics = Metrics()
    webhooks = await hooks.sender([first.url, second.url], metrics)
    webhooks.deliver(version_event(1))
    webhooks.deliver(version_event(2))
    await eventually(lambda: count(metrics, second.url, "delivered") == 2)
    await eventually(lambda: count(metrics, first.url, "delivered") == 2)

    assert first.versions() == [1, 2]
    assert second.versions() == [1, 1, 2]
    assert first.seen[0].body == second.seen[0].body


# --- shutdown ---------------------------------------------------------------------------------


async def test_close_with_retries_pending_is_quick_and_counts_what_is_dropped(
    hooks: Harness,
) -> None:
    receiver = await hooks.receiver(*(web.Response(status=500) for _ in range(10)))
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender(
            [receiver.url], metrics, first_pause=30.0, max_pause=30.0, retry_for=300.0
        )
        webhooks.deliver(version_event(1))
        webhooks.deliver(version_event(2))
        await eventually(lambda: count(metrics, receiver.url, "retried") == 1)
        started = time.monotonic()
        await webhooks.close()
        closing = time.monotonic() - started

    assert closing < 0.5
    assert receiver.versions() == [1]
    assert counts(metrics, receiver.url) == {
        "delivered": 0,
        "retried": 1,
        "failed": 0,
        "dropped": 2,
    }
    dropped = [record for record in logs.records() if record["event"] == "webhook_dropped"]
    assert [(record["version"], record["reason"]) for record in dropped] == [
        (1, "shutdown"),
        (2, "shutdown"),
    ]


async def test_close_cuts_off_an_attempt_in_flight_and_later_events_are_dropped(
    silent_url: str, hooks: Harness
) -> None:
    metrics = Metrics()
    with capture("info", "json") as logs:
        webhooks = await hooks.sender([silent_url], metrics, timeout=30.0)
        webhooks.deliver(version_event(1))
        await asyncio.sleep(0.2)  # the request is sent and waits for an answer
        started = time.monotonic()
        await webhooks.close()
        closing = time.monotonic() - started
        webhooks.deliver(version_event(2))

    assert closing < 0.5
    assert counts(metrics, silent_url) == {
        "delivered": 0,
        "retried": 0,
        "failed": 0,
        "dropped": 2,
    }
    dropped = [record for record in logs.records() if record["event"] == "webhook_dropped"]
    assert [(record["version"], record["reason"]) for record in dropped] == [
        (1, "shutdown"),
        (2, "closed"),
    ]
