"""Typed keys for the objects an application shares between its parts."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from proxy.backplane.interface import Backplane
from proxy.callers.registry import Callers
from proxy.catalog.service import CatalogService
from proxy.history.feed import ChangeFeed
from proxy.observability.metrics import Metrics
from proxy.settings import Settings


@dataclass(slots=True)
class Lifecycle:
    """Whether the process is draining: readiness turns false before connections close."""

    shutting_down: bool = False


SETTINGS = web.AppKey("settings", Settings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
# A Protocol, so the key is typed by annotation rather than by a class at run time.
BACKPLANE: web.AppKey[Backplane] = web.AppKey("backplane")
CATALOG = web.AppKey("catalog", CatalogService)
METRICS = web.AppKey("metrics", Metrics)
CALLERS = web.AppKey("callers", Callers)
FEED = web.AppKey("feed", ChangeFeed)
