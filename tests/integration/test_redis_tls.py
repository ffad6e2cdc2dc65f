"""TLS to Redis: a rediss:// URL checked against ``PROXY_REDIS_CA_FILE``, and what a wrong CA does.

The server is a real ``redis-server`` listening for TLS only, with a certificate from a CA made
for the test; without a ``redis-server`` built with TLS these tests skip, saying why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from proxy.cache.entry import CatalogEntry
from proxy.settings import describe_errors
from tests.support.net import free_port
from tests.support.processes import run_proxy
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import make_settings
from tests.support.tls import Certificates, TlsRedisServer, make_certificates, tls_redis_binary

Client = TestClient[web.Request, web.Application]
NS = "product_proxy"


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
def tls_redis(certificates: Certificates) -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(certificates, tls_redis_binary())
    server.start()
    yield server
    server.cleanup()


async def _readiness(client: Client) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    report: dict[str, Any] = await response.json()
    return response.status, report


async def _readiness_once_cached(client: Client, within: float = 5.0) -> dict[str, Any]:
    """The ``/readyz`` report once it says the catalog is in memory (warm-up has ended)."""
    deadline = time.monotonic() + within
    while True:
        status, report = await _readiness(client)
        if status == 200 and report["catalog"]["cached"]:
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready with a catalog after {within} s: {status} {report}")
        await asyncio.sleep(0.05)


async def _samples(client: Client, name: str) -> dict[str, float]:
    """Each sample of ``name`` on ``/metrics``, keyed by its ``operation`` label ("" if none)."""
    response = await client.get("/metrics")
    assert response.status == 200
    return {
        sample.labels.get("operation", ""): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
        if sample.name == name
    }


async def test_a_rediss_url_with_its_ca_file_shares_the_catalog_over_tls(
    tls_redis: TlsRedisServer,
    certificates: Certificates,
    sandbox: Sandbox,
    make_proxy: MakeProxy,
) -> None:
    tls = {"redis_url": tls_redis.url, "redis_ca_file": str(certificates.ca_file)}
    first = await make_proxy(**tls, warmup=True)

    report = await _readiness_once_cached(first)

    assert report["status"] == "ready"
    assert report["store"] == {"state": "ok", "reachable": True}
    response = await first.get("/v1/products", headers={"Accept-Encoding": "identity"})
    body = await response.read()
    assert json.loads(body) == sandbox.state.catalog
    [key] = tls_redis.key_names("*:catalog:v1")
    stored = CatalogEntry.from_bytes(tls_redis.command("GET", key))
    assert stored.body == body
    assert stored.etag == response.headers["ETag"]
    second = await make_proxy(**tls)
    shared = await second.get("/v1/products")
    assert await shared.read() == body
    assert shared.headers["Cache-Status"].startswith("1nce-proxy; hit")
    assert sandbox.state.products_requests == 1, "the second replica read the entry over TLS"
    assert await _samples(first, f"{NS}_redis_up") == {"": 1.0}
    assert await _samples(first, f"{NS}_redis_errors_total") == {}


async def test_a_server_certificate_from_another_ca_makes_redis_a_miss_not_a_failure(
    tls_redis: TlsRedisServer,
    certificates: Certificates,
    sandbox: Sandbox,
    make_proxy: MakeProxy,
) -> None:
    client = await make_proxy(
        redis_url=tls_redis.url, redis_ca_file=str(certificates.wrong_ca_file), redis_timeout=0.5
    )

    first = await client.get("/v1/products")
    again = await client.get("/v1/products")

    assert first.status == again.status == 200
    body = await first.read()
    assert json.loads(body) == sandbox.state.catalog
    assert await again.read() == body
    assert again.headers["Cache-Status"].startswith("1nce-proxy; hit"), "served from memory"
    assert sandbox.state.products_requests == 1
    status, report = await _readiness(client)
    assert status == 200, "a catalog in memory keeps the replica ready"
    assert report["store"] == {"state": "degraded", "reachable": False}
    assert await _samples(client, f"{NS}_redis_up") == {"": 0.0}
    errors = await _samples(client, f"{NS}_redis_errors_total")
    assert errors["ping"] == 1
    assert sum(errors.values()) >= 2, errors
    assert tls_redis.key_names() == [], "nothing reached Redis"


async def test_a_rediss_url_without_a_ca_file_does_not_trust_an_unknown_ca(
    tls_redis: TlsRedisServer, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(redis_url=tls_redis.url, redis_timeout=0.5)

    response = await client.get("/v1/products")

    assert json.loads(await response.read()) == sandbox.state.catalog
    status, report = await _readiness(client)
    assert status == 200
    assert report["store"] == {"state": "degraded", "reachable": False}
    assert tls_redis.key_names() == []


@pytest.mark.parametrize(
    ("url", "bundle", "expected"),
    [
        (
            "rediss://127.0.0.1:6379/0",
            "absent.pem",
            "PROXY_REDIS_CA_FILE: Value error, cannot read it (No such file or directory)",
        ),
        (
            "rediss://127.0.0.1:6379/0",
            "server-key.pem",
            "PROXY_REDIS_CA_FILE: Value error, is not a PEM certificate bundle",
        ),
        ("redis://127.0.0.1:6379/0", "ca.pem", "PROXY_REDIS_CA_FILE needs TLS to Redis"),
    ],
    ids=["missing", "a-key-not-a-certificate", "plain-redis-url"],
)
def test_an_unusable_ca_file_is_a_configuration_error_naming_the_setting(
    certificates: Certificates, url: str, bundle: str, expected: str
) -> None:
    path = certificates.ca_file.parent / bundle

    with pytest.raises(ValidationError) as raised:
        make_settings("http://127.0.0.1:1", redis_url=url, redis_ca_file=str(path))

    [line] = describe_errors(raised.value.errors())
    assert line.startswith(expected), line


def test_the_service_refuses_to_start_with_a_missing_ca_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    env = {
        "PROXY_HOST": "127.0.0.1",
        "PROXY_PORT": str(free_port()),
        "PROXY_REDIS_URL": "rediss://127.0.0.1:6379/0",
        "PROXY_REDIS_CA_FILE": str(missing),
    }
    result = run_proxy(env, "--sandbox", timeout=20)

    assert result.returncode == 2
    expected = (
        "configuration error: PROXY_REDIS_CA_FILE: Value error,"
        f" cannot read it (No such file or directory) (got {str(missing)!r})"
    )
    assert result.stderr.splitlines() == [expected]
