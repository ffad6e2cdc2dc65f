"""Tokens and the client secret appear in no log line and no response."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import pytest
import structlog

from proxy.catalog.service import CATALOG
from proxy.observability.logging import configure_logging
from proxy.sandbox import SANDBOX_CLIENT_SECRET
from proxy.upstream.errors import UpstreamError
from tests.support.sandbox import MakeProxy, Sandbox


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream, cache_loggers=False)
    yield stream
    configure_logging("warning", "console", cache_loggers=False)
    structlog.contextvars.clear_contextvars()


async def test_no_secret_or_token_in_logs_or_responses(
    captured_logs: io.StringIO, sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(access_log="all", log_level="debug")
    service = client.app[CATALOG]
    seen: list[str] = []
    for path in ("/v1/products", "/readyz", "/healthz", "/nope"):
        response = await client.get(path, headers={"Authorization": "Bearer caller-key"})
        seen.append(str(response.headers) + await response.text())
    sandbox.state.revoke_tokens()  # a 401, a token refresh and a retry, all logged
    await service.refresh()
    sandbox.state.faults.products_status = 500
    with contextlib.suppress(UpstreamError):
        await service.refresh()
    sandbox.state.faults.reset()
    sandbox.state.faults.token_status = 400
    sandbox.state.revoke_tokens()
    failed = await client.get("/v1/products")  # fresh entry: served, no fetch
    seen.append(await failed.text())
    with contextlib.suppress(UpstreamError):
        await service.refresh()  # bad-credentials path

    tokens = {auth.removeprefix("Bearer ") for auth in sandbox.state.products_authorizations}
    assert len(tokens) >= 2, "the test saw at least two distinct tokens"
    logs = captured_logs.getvalue()
    assert "token_refreshed" in logs
    assert "token_refused" in logs
    assert "upstream_failed" in logs
    for text in [logs, *seen]:
        assert SANDBOX_CLIENT_SECRET not in text
        for token in tokens:
            assert token[:40] not in text
