"""The HTTP client session every request to the 1NCE API goes through."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy import USER_AGENT
from proxy.settings import Settings

# Bounds the upstream connections one replica opens; a fetch needs one or two.
UPSTREAM_CONNECTIONS = 8
CONNECT_TIMEOUT_CAP = 5.0


def open_session(settings: Settings) -> aiohttp.ClientSession:
    """Return a new session for the upstream: bounded, cookie-less, never decompressing."""
    # The client's own bound sits just past the fetch budget, so the budget's clearer
    # timeout error wins; the connect bound is shorter so a refused host retries in time.
    timeout = aiohttp.ClientTimeout(
        total=settings.upstream_timeout + 1,
        sock_connect=min(settings.upstream_timeout, CONNECT_TIMEOUT_CAP),
    )
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=aiohttp.TCPConnector(limit=UPSTREAM_CONNECTIONS),
        cookie_jar=aiohttp.DummyCookieJar(),
        # Answers are inflated by our own reader, within PROXY_UPSTREAM_MAX_BYTES.
        auto_decompress=False,
        headers={"User-Agent": USER_AGENT},
    )


HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
"""Where an application keeps its one HTTP session for the upstream."""
