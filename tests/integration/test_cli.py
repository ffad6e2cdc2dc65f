"""``python -m proxy`` as a user runs it: configuration errors, the sandbox demo, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.support.net import free_port
from tests.support.processes import ProxyProcess, run_proxy
from tests.support.redis import RedisServer
from tests.support.settings import REPO_ROOT, clean_env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_proxy(env, *args)


def test_missing_credentials_exit_2_with_one_line_each() -> None:
    result = _run({})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("configuration error: PROXY_CLIENT_ID:")
    assert lines[1].startswith("configuration error: PROXY_CLIENT_SECRET:")
    assert "Traceback" not in result.stderr


def test_bad_values_exit_2_naming_each_setting_and_hiding_secrets() -> None:
    result = _run(
        {
            "PROXY_CLIENT_ID": "id",
            "PROXY_CLIENT_SECRET": "s3cr3t-value",
            "PROXY_CACHE_TTL": "-5",
            "PROXY_PORT": "http",
            "PROXY_LOG_FORMAT": "xml",
            "PROXY_REDIS_URL": "http://user:hunter2@redis:6379",
        }
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    named = sorted(line.split(":")[1].strip() for line in lines)
    assert named == ["PROXY_CACHE_TTL", "PROXY_LOG_FORMAT", "PROXY_PORT", "PROXY_REDIS_URL"]
    assert "hunter2" not in result.stderr
    assert "s3cr3t-value" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
async def test_sandbox_demo_serves_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "--sandbox",
        env={
            **clean_env(),
            "PROXY_PORT": str(port),
            "PROXY_HOST": "127.0.0.1",
            "PROXY_ACCESS_LOG": "all",
            "PROXY_LOG_LEVEL": "debug",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _wait_healthy(session, base)
            async with session.get(f"{base}/v1/products") as response:
                assert response.status == 200
                products = await response.json(content_type=None)
                assert response.headers["Cache-Status"] == "1nce-proxy; fwd=miss; stored"
            assert 20 <= len(products) <= 40
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
                assert (await response.json())["token"] == "valid"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    events = [record["event"] for record in records]
    assert events.index("sandbox_started") < events.index("listening")
    assert events[-2:] == ["shutting_down", "stopped"]
    assert "token_refreshed" in events
    access = [r for r in records if r["event"] == "request" and r["http.route"] == "/v1/products"]
    assert access
    assert access[0]["http.response.status_code"] == 200
    assert access[0]["request_id"]
    assert "sandbox-secret" not in stdout.decode() + stderr.decode()


async def _wait_healthy(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the service did not come up within 10 s")


@pytest.mark.parametrize(
    ("option", "value"), [("--sandbox-drift", "5"), ("--sandbox-catalog", "strict")]
)
def test_sandbox_options_need_sandbox(option: str, value: str) -> None:
    result = _run({}, option, value)
    assert result.returncode == 2
    assert f"{option} needs --sandbox" in result.stderr
    assert result.stderr.startswith("usage: product-proxy")
    assert "configuration error" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_sandbox_drift_must_be_a_positive_number_of_seconds(value: str) -> None:
    result = _run({}, "--sandbox", "--sandbox-drift", value)
    assert result.returncode == 2
    assert "--sandbox-drift must be a number of seconds > 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_sandbox_drift_must_be_a_number() -> None:
    result = _run({}, "--sandbox", "--sandbox-drift", "soon")
    assert result.returncode == 2
    assert "argument --sandbox-drift: invalid float value: 'soon'" in result.stderr


def test_sandbox_catalog_must_be_a_known_style() -> None:
    result = _run({}, "--sandbox", "--sandbox-catalog", "odd")
    assert result.returncode == 2
    assert "argument --sandbox-catalog: invalid choice: 'odd'" in result.stderr
    assert "'irregular', 'strict'" in result.stderr


@pytest.mark.slow
async def test_sandbox_drift_makes_new_catalog_versions() -> None:
    args = ["--sandbox", "--sandbox-drift", "0.5"]
    with ProxyProcess({"PROXY_CACHE_TTL": "0.5"}, args=args) as service:
        versions = await _versions_until(service.url, current=2, within=10)
        assert versions["oldest"] == 1
        assert [version["version"] for version in versions["versions"]] == list(
            range(versions["current"], 0, -1)
        )
        assert versions["versions"][-1]["summary"]["added"] == versions["versions"][-1]["products"]
    records = service.log_records()
    started = next(record for record in records if record["event"] == "sandbox_started")
    assert started["drift_seconds"] == 0.5
    drifts = [record for record in records if record["event"] == "sandbox_drift"]
    assert drifts[0]["step"] == 1
    assert drifts[0]["change"] == "product 1001 one-time provisionCharge: 10 -> 10.5 EUR"
    assert [record["step"] for record in drifts] == list(range(1, len(drifts) + 1))


async def _versions_until(base: str, *, current: int, within: float) -> dict[str, Any]:
    """Poll ``/api/v1/catalog/versions`` until its current version is at least ``current``."""
    deadline = time.monotonic() + within
    body: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/api/v1/catalog/versions") as response:
                if response.status == 200:
                    body = await response.json()
                    if (body["current"] or 0) >= current:
                        return body
            await asyncio.sleep(0.1)
    raise AssertionError(f"no catalog version {current} within {within} s; last answer {body}")


async def test_a_restarted_sandbox_demo_keeps_its_keys_and_epoch(redis_server: RedisServer) -> None:
    # The emulator listens on a new port at every start; the deployment's keys must not move.
    env = {"PROXY_REDIS_URL": redis_server.url, "PROXY_WARMUP": "true"}
    seen: list[tuple[list[str], str]] = []
    for _ in range(2):
        with ProxyProcess(env, args=["--sandbox"]) as service:
            versions = await _versions_until(service.url, current=1, within=10)
            keys = sorted(name for name in redis_server.key_names() if ":catalog:" in name)
            seen.append((keys, versions["epoch"]))
    (first_keys, first_epoch), (second_keys, second_epoch) = seen
    assert first_keys
    assert second_keys == first_keys
    assert second_epoch == first_epoch
    assert len({name.split(":{", 1)[1].split("}", 1)[0] for name in redis_server.key_names()}) == 1
