"""Kubernetes probes: ``/healthz`` (liveness) and ``/readyz`` (readiness)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from proxy.catalog.service import CATALOG


async def healthz(_request: web.Request) -> web.Response:
    """200 while the process serves; it checks nothing else, so a slow upstream never kills pods."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when a catalog can be served; 503 while draining or when none can."""
    status = await request.app[CATALOG].status(time.time())
    draining = request.app[LIFECYCLE].shutting_down
    ready = status.servable and not draining
    state = "shutting_down" if draining else ("ready" if ready else "unavailable")
    if state == "unavailable" and request.app[CATALOG].warming:
        state = "warming"
    return web.json_response({"status": state, **status.report}, status=200 if ready else 503)


@dataclass(slots=True)
class Lifecycle:
    """Whether the process is draining: readiness turns false before connections close."""

    shutting_down: bool = False


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
"""Where an application keeps its lifecycle (the server sets it draining)."""
