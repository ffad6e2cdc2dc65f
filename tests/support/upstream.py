"""An upstream client and token provider over the sandbox, wired as the app wires them."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from proxy.backplane.memory import MemoryBackplane
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import Tracing
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.upstream.client import UpstreamClient
from proxy.upstream.token import TokenProvider
from proxy.upstream.token_store import BackplaneTokens
from proxy.upstream.windows import RateWindows


def sandbox_upstream(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    metrics: Metrics,
    retries: int,
    tracing: Tracing | None = None,
) -> tuple[UpstreamClient, TokenProvider]:
    """Return a client of the emulator at ``base_url`` and its token provider (close it).

    Shared state lives in a private in-memory backplane; timeouts are short (2 s).
    """
    backplane = MemoryBackplane()
    windows = RateWindows(backplane=backplane, key=lambda name: f"test:{name}", metrics=metrics)
    tokens = TokenProvider(
        session,
        token_url=f"{base_url}/oauth/token",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SecretStr(SANDBOX_CLIENT_SECRET),
        margin=60,
        windows=windows,
        metrics=metrics,
        timeout=2,
        max_bytes=1 << 20,
        retry_after_max=60,
        shared=BackplaneTokens(backplane, key="test:token"),
        turns=Turns(backplane, name="test:token:lock", topic="token", ttl=5, owner="test"),
        tracing=tracing,
    )
    client = UpstreamClient(
        session,
        tokens,
        base_url=base_url,
        timeout=2,
        retries=retries,
        windows=windows,
        metrics=metrics,
        max_bytes=1 << 20,
        retry_after_max=60,
        tracing=tracing,
    )
    return client, tokens
