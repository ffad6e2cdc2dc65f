"""An upstream client and token provider over the sandbox, wired as the app wires them."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from proxy.backplane.keys import KeySpace
from proxy.backplane.memory import MemoryBackplane
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from proxy.upstream.client import UpstreamClient
from proxy.upstream.factory import build_upstream
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.token import TokenProvider


def sandbox_upstream(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    metrics: Metrics,
    retries: int,
    tracing: Tracing = NO_TRACING,
) -> tuple[UpstreamClient, TokenProvider]:
    """Return a client of the emulator at ``base_url`` and its token provider (close it).

    Built as the service builds its own (``build_upstream``), with shared state in a private
    in-memory backplane and short bounds (2 s).
    """
    options = UpstreamOptions(
        base_url=base_url,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SecretStr(SANDBOX_CLIENT_SECRET),
        timeout=2,
        retries=retries,
        max_bytes=1 << 20,
        retry_after_max=60,
        token_margin=60,
        lock_timeout=5,
    )
    upstream = build_upstream(
        session,
        options,
        backplane=MemoryBackplane(),
        keys=KeySpace("test", "sandbox"),
        owner="test",
        metrics=metrics,
        tracing=tracing,
    )
    return upstream.client, upstream.tokens
