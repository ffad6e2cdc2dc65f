"""``GET /metrics``: the Prometheus exposition of the application's own registry."""

from __future__ import annotations

from aiohttp import web

from proxy.observability.metrics import CONTENT_TYPE, METRICS


async def scrape(request: web.Request) -> web.Response:
    """Render every metric; catalog and Redis gauges are read at this moment."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
