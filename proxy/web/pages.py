"""Pages for people: ``/docs`` (the API reference) and ``/catalog`` (the products, live).

Both are static files read once at start-up (:meth:`Pages.load`) and served from memory: our
own HTML, script and style in ``proxy/web/static``, and Swagger UI's bundle from the
``swagger-ui-py`` package. ``{asset}`` is looked up in a fixed table, so no request names a
file. Every answer carries a strict Content-Security-Policy (no inline script; the pages'
scripts talk to this origin only) and a strong ETag; assets may be cached for an hour, the
HTML is revalidated each time so a new release's assets are picked up at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType

from aiohttp import hdrs, web

from proxy.web.caching import etag_matches

# Nothing inline, scripts or styles: Swagger UI styles elements through the DOM, which CSP
# allows. tests/integration/test_pages_browser.py fails on any violation in either page.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
SECURITY_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
)
PAGE_CACHE_CONTROL = "no-cache"
ASSET_CACHE_CONTROL = "max-age=3600"

_CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".png": "image/png",
    }
)
# The assets each page may load, as (folder, file name); the file name is the URL's last segment.
_OWN = "own"
_SWAGGER_UI = "swagger_ui"
_DOCS_ASSETS: tuple[tuple[str, str], ...] = (
    (_OWN, "docs.js"),
    (_OWN, "docs.css"),
    (_SWAGGER_UI, "swagger-ui-bundle.js"),
    (_SWAGGER_UI, "swagger-ui.css"),
    (_SWAGGER_UI, "favicon-32x32.png"),
)
_CATALOG_ASSETS: tuple[tuple[str, str], ...] = (
    (_OWN, "catalog.js"),
    (_OWN, "catalog.css"),
)


@dataclass(frozen=True, slots=True)
class Asset:
    """One file as served: its bytes, media type and strong ETag."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, name: str, body: bytes) -> Asset:
        """Describe ``body``, typed by ``name``'s extension."""
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return cls(body, _CONTENT_TYPES[Path(name).suffix], f'"{digest}"')


@dataclass(frozen=True, slots=True)
class Pages:
    """The pages' files, read once at start-up."""

    docs: Asset
    docs_assets: Mapping[str, Asset]
    catalog: Asset
    catalog_assets: Mapping[str, Asset]

    @classmethod
    def load(cls) -> Pages:
        """Read every page and asset; raises ``RuntimeError`` if Swagger UI is not installed."""
        folders: Mapping[str, Traversable] = {
            _OWN: resources.files("proxy.web").joinpath("static"),
            _SWAGGER_UI: _swagger_ui_static(),
        }

        def read(source: str, name: str) -> Asset:
            return Asset.of(name, folders[source].joinpath(name).read_bytes())

        def table(names: tuple[tuple[str, str], ...]) -> Mapping[str, Asset]:
            return MappingProxyType({name: read(source, name) for source, name in names})

        return cls(
            docs=read(_OWN, "docs.html"),
            docs_assets=table(_DOCS_ASSETS),
            catalog=read(_OWN, "catalog.html"),
            catalog_assets=table(_CATALOG_ASSETS),
        )


PAGES = web.AppKey("pages", Pages)


def _swagger_ui_static() -> Path:
    # Found, not imported: the package's __init__ pulls in its framework glue (jinja2, yaml),
    # and only its static files are wanted.
    spec = importlib.util.find_spec("swagger_ui")
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise RuntimeError("the package swagger-ui-py is not installed (needed by /docs)")
    return Path(next(iter(locations))) / "static"


def _serve(request: web.Request, asset: Asset, cache_control: str) -> web.Response:
    headers = {**SECURITY_HEADERS, hdrs.ETAG: asset.etag, hdrs.CACHE_CONTROL: cache_control}
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), asset.etag):
        return web.Response(status=304, headers=headers)
    headers[hdrs.CONTENT_TYPE] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


def _asset(request: web.Request, assets: Mapping[str, Asset]) -> web.Response:
    asset = assets.get(request.match_info["asset"])
    if asset is None:
        raise web.HTTPNotFound
    return _serve(request, asset, ASSET_CACHE_CONTROL)


async def docs_page(request: web.Request) -> web.StreamResponse:
    """Serve the API reference page."""
    return _serve(request, request.app[PAGES].docs, PAGE_CACHE_CONTROL)


async def docs_asset(request: web.Request) -> web.StreamResponse:
    """Serve one of the reference page's assets."""
    return _asset(request, request.app[PAGES].docs_assets)


async def catalog_page(request: web.Request) -> web.StreamResponse:
    """Serve the catalog page."""
    return _serve(request, request.app[PAGES].catalog, PAGE_CACHE_CONTROL)


async def catalog_asset(request: web.Request) -> web.StreamResponse:
    """Serve one of the catalog page's assets."""
    return _asset(request, request.app[PAGES].catalog_assets)
