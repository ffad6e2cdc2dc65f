"""The pages for people over HTTP: headers, assets and ETags, 404s, keys, nothing inline."""

from __future__ import annotations

import importlib.util
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from yarl import URL

from proxy.web.pages import Pages
from tests.support.sandbox import MakeProxy
from tests.support.settings import REPO_ROOT

Client = TestClient[web.Request, web.Application]

STATIC = Path(__file__).resolve().parents[2] / "proxy" / "web" / "static"
_SPEC = importlib.util.find_spec("swagger_ui")
assert _SPEC is not None
assert _SPEC.submodule_search_locations is not None
SWAGGER_UI = Path(next(iter(_SPEC.submodule_search_locations))) / "static"

HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
# Every asset each page may load: URL path, the file's bytes, media type.
ASSETS = [
    ("/docs/docs.js", (STATIC / "docs.js").read_bytes(), JS),
    ("/docs/docs.css", (STATIC / "docs.css").read_bytes(), CSS),
    ("/docs/swagger-ui-bundle.js", (SWAGGER_UI / "swagger-ui-bundle.js").read_bytes(), JS),
    ("/docs/swagger-ui.css", (SWAGGER_UI / "swagger-ui.css").read_bytes(), CSS),
    ("/docs/favicon-32x32.png", (SWAGGER_UI / "favicon-32x32.png").read_bytes(), "image/png"),
    ("/catalog/catalog.js", (STATIC / "catalog.js").read_bytes(), JS),
    ("/catalog/catalog.css", (STATIC / "catalog.css").read_bytes(), CSS),
]
PAGES = [
    ("/docs", (STATIC / "docs.html").read_bytes()),
    ("/catalog", (STATIC / "catalog.html").read_bytes()),
]
PAGE_PATHS = [path for path, _ in PAGES]
REQUIRED_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "connect-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "style-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
}
_STRONG_ETAG = re.compile(r'^"[0-9a-f]{32}"$')


def _policy(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for directive in header.split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives


def _check_security_headers(headers: Any) -> None:
    policy = _policy(headers["Content-Security-Policy"])
    for directive, values in REQUIRED_POLICY.items():
        assert policy[directive] == values, directive
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


class _Markup(HTMLParser):
    """Collects what a page would run or load: scripts, styles, handlers, linked URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline: list[str] = []
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self.scripts.append(attributes)
            self._in_script = True
        if tag == "style":
            self.inline.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}")
            if name in {"src", "href"} and value is not None:
                if value.lower().startswith("javascript:"):
                    self.inline.append(f"{tag} {name}={value}")
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script text {data.strip()[:40]!r}")


def _markup(text: str) -> _Markup:
    parser = _Markup()
    parser.feed(text)
    parser.close()
    return parser


async def _raw_get(client: Client, target: str) -> tuple[int, dict[str, Any]]:
    # Sent as written: the client must not resolve "..", nor decode %2F, before the server does.
    url = URL(f"http://{client.host}:{client.port}{target}", encoded=True)
    async with client.session.get(url, allow_redirects=False) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(("path", "source"), PAGES)
async def test_pages_are_html_with_a_strict_policy(
    make_proxy: MakeProxy, path: str, source: bytes
) -> None:
    client = await make_proxy()
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == HTML
    assert await response.read() == source
    _check_security_headers(response.headers)
    assert response.headers["Cache-Control"] == "no-cache"
    assert _STRONG_ETAG.match(response.headers["ETag"])
    assert response.headers["X-Request-ID"]
    again = await client.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""
    assert again.headers["ETag"] == response.headers["ETag"]
    assert again.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(("path", "source", "content_type"), ASSETS)
async def test_each_asset_is_served_with_a_strong_etag_and_304(
    make_proxy: MakeProxy, path: str, source: bytes, content_type: str
) -> None:
    client = await make_proxy()
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    body = await response.read()
    assert body == source
    assert len(body) > 100
    etag = response.headers["ETag"]
    assert _STRONG_ETAG.match(etag)
    assert response.headers["Cache-Control"] == "max-age=3600"
    _check_security_headers(response.headers)
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}'):
        cached = await client.get(path, headers={"If-None-Match": if_none_match})
        assert cached.status == 304, if_none_match
        assert await cached.read() == b""
        assert cached.headers["ETag"] == etag
        assert cached.headers["Cache-Control"] == "max-age=3600"
        assert "Content-Type" not in cached.headers or not cached.headers["Content-Type"]
    changed = await client.get(path, headers={"If-None-Match": '"something-else"'})
    assert changed.status == 200
    assert await changed.read() == body


async def test_etags_are_the_same_on_every_replica_and_differ_by_content() -> None:
    first, second = Pages.load(), Pages.load()
    assert first.docs.etag == second.docs.etag
    assert first.catalog_assets["catalog.js"].etag == second.catalog_assets["catalog.js"].etag
    etags = [first.docs.etag, first.catalog.etag]
    etags += [asset.etag for asset in first.docs_assets.values()]
    etags += [asset.etag for asset in first.catalog_assets.values()]
    assert len(set(etags)) == len(etags) == 9


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_every_url_a_page_loads_is_served(make_proxy: MakeProxy, path: str) -> None:
    client = await make_proxy()
    markup = _markup(await (await client.get(path)).text())
    local = [url for url in markup.urls if url.startswith("/")]
    assert local
    for url in local:
        response = await client.get(url)
        assert response.status == 200, url
    assert {url for url in markup.urls if not url.startswith("/")} <= {"data:,"}


@pytest.mark.parametrize("path", PAGE_PATHS)
async def test_pages_hold_no_inline_script_or_style(make_proxy: MakeProxy, path: str) -> None:
    client = await make_proxy()
    markup = _markup(await (await client.get(path)).text())
    assert markup.inline == []
    assert markup.scripts
    for script in markup.scripts:
        assert (script.get("src") or "").startswith(f"{path}/"), script


@pytest.mark.parametrize("name", ["catalog.js", "docs.js"])
def test_own_scripts_build_no_markup_and_store_nothing(name: str) -> None:
    script = (STATIC / name).read_text()
    for banned in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "new EventSource",
    ):
        assert banned not in script, banned


@pytest.mark.parametrize(
    "path",
    [
        "/docs/nope.js",
        "/docs/index.html",
        "/docs/swagger-ui.js",
        "/docs/oauth2-redirect.html",
        "/docs/swagger-ui.css.map",
        "/docs/LICENSE",
        "/docs/catalog.js",
        "/docs/docs.html",
        "/catalog/docs.js",
        "/catalog/swagger-ui-bundle.js",
        "/catalog/catalog.html",
        "/catalog/CATALOG.JS",
    ],
)
async def test_unknown_assets_get_a_json_404(make_proxy: MakeProxy, path: str) -> None:
    client = await make_proxy()
    response = await client.get(path)
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = await response.json()
    assert body["error"]["code"] == "not_found"
    assert response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "target",
    [
        "/docs/..%2Fopenapi.json",
        "/docs/..%2F..%2Fpyproject.toml",
        "/docs/%2e%2e%2fstatic%2fdocs.js",
        "/docs/..%5Cpages.py",
        "/catalog/%2e%2e",
        "/catalog/..",
        "/catalog/.",
        "/catalog/%2Fetc%2Fpasswd",
        "/catalog/catalog.js%00",
        "/catalog/static%2Fcatalog.js",
    ],
)
async def test_traversal_attempts_get_a_json_404(make_proxy: MakeProxy, target: str) -> None:
    client = await make_proxy()
    status, body = await _raw_get(client, target)
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_pages_need_no_key_while_the_api_does(make_proxy: MakeProxy) -> None:
    client = await make_proxy(api_keys=(SecretStr("key-one"),))
    for path in ["/docs", "/catalog", "/openapi.json"] + [path for path, _, _ in ASSETS]:
        response = await client.get(path)
        assert response.status == 200, path
    for path in (
        "/api/v1/products",
        "/api/v1/catalog/versions",
        "/api/v1/changes?since=1",
        "/api/v1/events",
    ):
        response = await client.get(path)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "unauthorized"
    keyed = await client.get("/api/v1/products", headers={"Authorization": "Bearer key-one"})
    assert keyed.status == 200
    assert (await keyed.json())["count"] == 30


async def test_the_reference_page_reads_the_served_document(make_proxy: MakeProxy) -> None:
    client = await make_proxy()
    script = await (await client.get("/docs/docs.js")).text()
    assert 'url: "/openapi.json"' in script
    document = await client.get("/openapi.json")
    assert document.status == 200
    body = await document.json()
    assert body["openapi"] == "3.0.3"
    api_key = body["components"]["securitySchemes"]["apiKey"]
    assert (api_key["type"], api_key["scheme"]) == ("http", "bearer")


def test_the_openapi_document_lists_exactly_the_served_files() -> None:
    document = json.loads((REPO_ROOT / "proxy" / "web" / "openapi.json").read_text())
    pages = Pages.load()

    def listed(path: str) -> set[str]:
        parameter = document["paths"][path]["get"]["parameters"][0]
        assert parameter["name"] == "asset"
        return set(parameter["schema"]["enum"])

    assert listed("/docs/{asset}") == set(pages.docs_assets)
    assert listed("/catalog/{asset}") == set(pages.catalog_assets)
