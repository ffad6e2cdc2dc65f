"""The one place the upstream side is built: windows, shared token, token provider, client."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from proxy.backplane.interface import Backplane
from proxy.backplane.keys import KeySpace
from proxy.coordination.turns import Turns
from proxy.observability.metrics import Metrics
from proxy.observability.tracing import NO_TRACING, Tracing
from proxy.upstream.client import UpstreamClient
from proxy.upstream.options import UpstreamOptions
from proxy.upstream.token import TokenProvider, TokenSharing
from proxy.upstream.token_store import BackplaneTokens
from proxy.upstream.windows import RateWindows


@dataclass(frozen=True, slots=True)
class Upstream:
    """The upstream side of one service: its client and the token provider behind it."""

    client: UpstreamClient
    tokens: TokenProvider

    async def close(self) -> None:
        """Stop a token fetch still running."""
        await self.tokens.close()


def build_upstream(
    session: aiohttp.ClientSession,
    options: UpstreamOptions,
    *,
    backplane: Backplane,
    keys: KeySpace,
    owner: str,
    metrics: Metrics,
    tracing: Tracing = NO_TRACING,
) -> Upstream:
    """Build the client and its token provider, sharing windows and the token on ``backplane``.

    ``owner`` names this replica in the token turn's lock. The service builds one for the
    deployment; ``product-proxy check`` builds one on a private in-memory backplane.
    """
    windows = RateWindows(backplane=backplane, key=keys.rate_window, metrics=metrics)
    sharing = TokenSharing(
        windows=windows,
        store=BackplaneTokens(backplane, key=keys.token),
        turns=Turns(
            backplane,
            name=keys.token_lock,
            topic="token",
            ttl=options.lock_timeout,
            owner=owner,
            # A waiter waits at most one fetch's budget for the replica asking for a token.
            max_wait=options.timeout,
        ),
    )
    tokens = TokenProvider(session, options, sharing=sharing, metrics=metrics, tracing=tracing)
    client = UpstreamClient(
        session, tokens, options, windows=windows, metrics=metrics, tracing=tracing
    )
    return Upstream(client=client, tokens=tokens)
