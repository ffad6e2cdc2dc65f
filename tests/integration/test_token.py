"""The shared OAuth token: reuse, expiry, revocation, bad credentials."""

from __future__ import annotations

import asyncio
import json

from pydantic import SecretStr

from proxy.catalog.service import CATALOG
from tests.support.load import burst
from tests.support.sandbox import MakeProxy, Sandbox


async def test_token_is_reused_across_fetches(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    service = client.app[CATALOG]
    for _ in range(3):
        await service.refresh()
    assert sandbox.state.products_requests == 3
    assert sandbox.state.token_requests == 1
    assert len(set(sandbox.state.products_authorizations)) == 1


async def test_token_is_renewed_before_it_expires(sandbox: Sandbox, make_proxy: MakeProxy) -> None:
    # A 2 s token is used for at most half its life, so the fetch after 1.1 s needs a new one.
    sandbox.state.token_ttl = 2
    client = await make_proxy(token_refresh_margin=120)
    service = client.app[CATALOG]
    await service.refresh()
    await asyncio.sleep(1.1)
    await service.refresh()
    assert sandbox.state.token_requests == 2
    assert sandbox.state.products_requests == 2, "no request went out with a token about to expire"
    assert len(set(sandbox.state.products_authorizations)) == 2


async def test_revoked_token_is_refreshed_once_and_the_call_retried(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy()
    service = client.app[CATALOG]
    await service.refresh()
    sandbox.state.revoke_tokens()
    sandbox.state.catalog = sandbox.state.catalog[:3]

    lookup = await service.refresh()

    assert json.loads(lookup.entry.body) == sandbox.state.catalog
    assert sandbox.state.token_requests == 2
    assert sandbox.state.products_requests == 3  # first fetch, the 401, the retry


async def test_bad_credentials_fail_fast_without_a_retry_storm(
    sandbox: Sandbox, make_proxy: MakeProxy
) -> None:
    client = await make_proxy(client_secret=SecretStr("wrong-secret"))
    replies = await burst(str(client.make_url("/v1/products")), 50)
    assert {reply.status for reply in replies} == {502}
    body = json.loads(replies[0].body)
    assert body["error"]["code"] == "upstream_auth_failed"
    assert "wrong-secret" not in replies[0].body.decode()
    for _ in range(10):
        response = await client.get("/v1/products")
        assert response.status == 502
    assert sandbox.state.token_requests == 1
    assert sandbox.state.products_requests == 0
