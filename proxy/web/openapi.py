"""``GET /openapi.json``: the service's OpenAPI document, kept in the package, served as is."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

OPENAPI = web.AppKey("openapi_document", bytes)


def load_document() -> bytes:
    """Read the document shipped with the package."""
    return resources.files("proxy.web").joinpath("openapi.json").read_bytes()


async def openapi_document(request: web.Request) -> web.Response:
    """Serve the document's bytes."""
    return web.Response(body=request.app[OPENAPI], content_type="application/json")
