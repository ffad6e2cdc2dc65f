"""Configuration holes end to end: what ``python -m proxy`` refuses, what the app then does.

The command refuses infinite durations and blank secrets or lists (exit 2); the running app
treats an empty secret as unset and a Unicode space in a bearer key as part of the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from typing import Any

import pytest

from tests.support.net import free_port
from tests.support.processes import run_proxy
from tests.support.sandbox import MakeProxy, Sandbox

ADMIN_TOKEN = "c0nfig-admin-token"
API_KEY = "c0nfig-api-key"
ANSWER_SECONDS = 5.0


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the sandbox demo on a loopback port; bad settings must stop it before it serves."""
    loopback = {"PROXY_HOST": "127.0.0.1", "PROXY_PORT": str(free_port())}
    return run_proxy({**loopback, **env}, "--sandbox", timeout=20)


def _named(stderr: str) -> list[str]:
    """The setting each ``configuration error: PROXY_X: ...`` line names, sorted."""
    lines = stderr.strip().splitlines()
    assert all(line.startswith("configuration error: PROXY_") for line in lines), stderr
    return sorted(line.split(":")[1].strip() for line in lines)


def test_blank_api_keys_stop_the_service_instead_of_opening_the_api() -> None:
    result = _run({"PROXY_API_KEYS": " , "})
    assert result.returncode == 2, result.stderr
    assert _named(result.stderr) == ["PROXY_API_KEYS"]
    assert "is blank" in result.stderr
    assert "Traceback" not in result.stderr


def _receivers(*urls: str) -> str:
    """``PROXY_WEBHOOK_URLS`` for ``urls``, in the form the setting takes entries."""
    return ",".join(urls)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example:abc/catalog?token=s3cr3t",
        "http://hooks.example:99999/catalog?token=s3cr3t",
        "http://hooks.example:0/catalog?token=s3cr3t",
        "http://hooks example/catalog?token=s3cr3t",
        "http://hooks\texample:8443/catalog?token=s3cr3t",
        "ftp://hooks.example/catalog?token=s3cr3t",
    ],
    ids=["port-text", "port-too-large", "port-0", "space-in-host", "tab-in-host", "scheme"],
)
def test_a_webhook_url_that_cannot_be_reached_is_a_configuration_error(url: str) -> None:
    result = _run(
        {
            "PROXY_WEBHOOK_URLS": _receivers("https://good.example/hook", url),
            "PROXY_WEBHOOK_SECRET": "w3bh00k-secret",
        }
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert _named(result.stderr) == ["PROXY_WEBHOOK_URLS"]
    assert "entry 2" in result.stderr
    # The URL's query (a receiver's own token, often) is never echoed.
    assert "s3cr3t" not in result.stderr


def test_each_hole_is_a_configuration_error_and_no_secret_is_echoed() -> None:
    result = _run(
        {
            "PROXY_CACHE_TTL": "inf",
            "PROXY_STALE_TTL": "1e400",
            "PROXY_TOKEN_REFRESH_MARGIN": "nan",
            "PROXY_SHUTDOWN_DELAY": "-inf",
            "PROXY_API_KEYS": "s3cr3t-key-one,,s3cr3t-key-two",
            "PROXY_ADMIN_TOKEN": "   ",
            "PROXY_CLIENT_SECRET": "\t",
            "PROXY_REDIS_SENTINELS": "sentinel-a:26379, ",
        }
    )
    assert result.returncode == 2, result.stderr
    assert _named(result.stderr) == [
        "PROXY_ADMIN_TOKEN",
        "PROXY_API_KEYS",
        "PROXY_CACHE_TTL",
        "PROXY_CLIENT_SECRET",
        "PROXY_REDIS_SENTINELS",
        "PROXY_SHUTDOWN_DELAY",
        "PROXY_STALE_TTL",
        "PROXY_TOKEN_REFRESH_MARGIN",
    ]
    assert "s3cr3t" not in result.stderr
    assert "Traceback" not in result.stderr


async def _post_raw(port: int, authorization: bytes) -> tuple[int, dict[str, Any]]:
    """POST /admin/refresh with ``authorization`` sent byte for byte; the status and body."""
    request = (
        b"POST /admin/refresh HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + authorization + b"\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(ANSWER_SECONDS):
            await writer.drain()
            raw = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


# What a client sends for "Bearer " followed by a no-break space: UTF-8 (arrives as U+00A0)
# or Latin-1 (arrives as an undecodable byte).
BLANK_KEYS = (b"Bearer \xc2\xa0", b"Bearer \xa0", b"Bearer \xe3\x80\x80", b"Bearer ")


async def test_empty_admin_token_keeps_admin_off(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    monkeypatch.setenv("PROXY_ADMIN_TOKEN", "")
    monkeypatch.setenv("PROXY_API_KEYS", "")
    client = await make_proxy()
    assert client.port is not None
    for authorization in BLANK_KEYS:
        status, body = await _post_raw(client.port, authorization)
        assert (status, body["error"]) == (
            404,
            {
                "code": "not_found",
                "message": "the admin API is off (PROXY_ADMIN_TOKEN is not set)",
            },
        ), authorization
    assert sandbox.state.products_requests == 0
    # An empty PROXY_API_KEYS is no keys: the API is open.
    assert (await client.get("/api/v1/products")).status == 200


async def test_unicode_spaces_in_a_bearer_key_are_part_of_the_key(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(admin_token=ADMIN_TOKEN, api_keys=API_KEY)
    assert client.port is not None
    token = ADMIN_TOKEN.encode()
    refused = (
        *BLANK_KEYS,
        b"Bearer " + token + b"\xc2\xa0",
        b"Bearer \xc2\xa0" + token,
        b"Bearer " + token + b"\xa0",
        b"Bearer " + token + b"\xe2\x80\x83",  # em space
    )
    for authorization in refused:
        status, body = await _post_raw(client.port, authorization)
        assert status == 401, (authorization, body)
        assert body["error"]["code"] == "unauthorized"
    assert sandbox.state.products_requests == 0, "a refused caller never reaches the upstream"
    # HTTP's own whitespace around the token is not part of it.
    status, body = await _post_raw(client.port, b"Bearer \t" + token + b" \t")
    assert status == 200, body
    assert body["refreshed"] is True
    assert sandbox.state.products_requests == 1
    for key in ("\u00a0", f"{API_KEY}\u00a0"):
        response = await client.get("/api/v1/products", headers={"Authorization": f"Bearer {key}"})
        assert response.status == 401, key
    ok = await client.get("/api/v1/products", headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status == 200


OTEL_SECRET = "0tel-s3cr3t-t0ken"


def _proxy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m proxy ARGS`` with ``env`` over a clean environment."""
    return run_proxy(env, *args, timeout=20)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-5"}, ["OTEL_BSP_MAX_QUEUE_SIZE"]),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"},
            ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
        ),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, ["OTEL_BSP_SCHEDULE_DELAY"]),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, ["OTEL_EXPORTER_OTLP_TIMEOUT"]),
        (
            {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {OTEL_SECRET},x"},
            ["OTEL_EXPORTER_OTLP_HEADERS"],
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            ["OTEL_TRACES_SAMPLER_ARG"],
        ),
    ],
    ids=["queue", "batch-over-queue", "delay", "timeout", "headers", "ratio"],
)
@pytest.mark.parametrize("command", [(), ("check",)], ids=["serve", "check"])
def test_otel_values_the_sdk_would_refuse_are_configuration_errors(
    variables: dict[str, str], named: list[str], command: tuple[str, ...]
) -> None:
    result = _proxy({"OTEL_TRACES_EXPORTER": "otlp", **variables}, *command, "--sandbox")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == named, result.stderr
    assert all(line.startswith("configuration error: OTEL_") for line in lines)
    assert OTEL_SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_otel_values_are_not_checked_while_tracing_is_off() -> None:
    # Without OTEL_TRACES_EXPORTER the SDK reads none of them: nothing to refuse.
    result = _proxy({"OTEL_BSP_MAX_QUEUE_SIZE": "-5"}, "check", "--sandbox")
    assert result.returncode == 0, result.stdout + result.stderr
