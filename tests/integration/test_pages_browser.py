"""The pages in headless Chromium, against a real proxy on a real socket in front of the emulator.

Debian's chromium (scripts/tools-browser.sh) driven through Playwright's Python API; Playwright's
own browser downloads are never used. Every page is watched for Content-Security-Policy
violations and script errors. With ``UPDATE_SCREENSHOTS=1`` the tests also write
docs/docs-page.png and docs/catalog-page.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from proxy.app import create_app
from proxy.sandbox.catalog import default_catalog
from tests.support.net import HOST, serve
from tests.support.sandbox import Sandbox
from tests.support.settings import REPO_ROOT, make_settings

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"no {CHROMIUM}: run scripts/tools-browser.sh (Debian's chromium)", allow_module_level=True
    )
try:
    from playwright.async_api import Browser, Page, Request, ViewportSize, async_playwright
except ImportError:
    pytest.skip(
        "the playwright package is not installed (pip install playwright; the browser is "
        f"{CHROMIUM}, never a Playwright download)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Without the background-networking flags Chromium's own connections are refused here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What the catalog page shows for no value.
NONE = "\N{EN DASH}"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
WAIT_MS = 15_000
KEY = "key-one"
ADMIN = "adm"
SCREENSHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
# Records every CSP violation in the page, for the test to read back; installed through the
# DevTools protocol, which the page's own policy does not govern.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def _served(sandbox: Sandbox, port: int = 0, **overrides: Any) -> AsyncIterator[str]:
    """A proxy in front of ``sandbox`` on ``port`` (0: a free one), as the service runs it."""
    app = create_app(make_settings(sandbox.url, **overrides))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    try:
        yield f"http://{HOST}:{await serve(runner, port)}"
    finally:
        await runner.cleanup()


class _Watched:
    """A page with its script errors and CSP violations collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.event_requests: list[dict[str, str]] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", self._request)

    def _request(self, request: Request) -> None:
        if "/api/v1/events" in request.url:
            self.event_requests.append({"url": request.url, **request.headers})

    async def problems(self) -> list[str]:
        violations: list[str] = await self.page.evaluate("window.__violations")
        return [*self.errors, *(f"CSP violation: {v}" for v in violations)]


async def _open(browser: Browser, url: str) -> _Watched:
    page = await browser.new_page(viewport=VIEWPORT)
    await page.add_init_script(WATCH_VIOLATIONS)
    watched = _Watched(page)
    await page.goto(url)
    return watched


async def _products(url: str) -> list[dict[str, Any]]:
    """The products as the API lists them (on a proxy without keys)."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"{url}/api/v1/products") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    products: list[dict[str, Any]] = body["products"]
    return products


async def _admin_refresh(url: str) -> None:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            f"{url}/admin/refresh", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def _rows(page: Page) -> list[list[str]]:
    """The visible product rows, cell by cell."""
    rows: list[list[str]] = await page.eval_on_selector_all(
        "#product-rows tr:not([hidden])",
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText))",
    )
    return rows


async def _cell(page: Page, product_id: int, column: int) -> str:
    text: str = await page.eval_on_selector(
        f'#product-rows tr[data-id="{product_id}"]', f"row => row.cells[{column}].innerText"
    )
    return text


async def _wait_text(page: Page, selector: str, text: str) -> None:
    # Waits take functions, never strings: the page's policy forbids evaluating strings.
    await page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.innerText ?? '').includes(text)",
        arg=[selector, text],
        timeout=WAIT_MS,
    )


async def _wait_one_time_price(page: Page, product_id: int, text: str) -> None:
    await page.wait_for_function(
        """([id, text]) => {
          const row = document.querySelector(`#product-rows tr[data-id="${id}"]`);
          return row !== null && row.cells[4].innerText === text;
        }""",
        arg=[product_id, text],
        timeout=WAIT_MS,
    )


async def test_docs_page_renders_every_operation_and_runs_one(
    browser: Browser, sandbox: Sandbox
) -> None:
    async with _served(sandbox) as url:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{url}/openapi.json") as response,
        ):
            document = await response.json()
        operations = [
            operation["operationId"]
            for item in document["paths"].values()
            for operation in item.values()
        ]
        assert len(operations) >= 11
        watched = await _open(browser, f"{url}/docs")
        page = watched.page
        await page.wait_for_selector("#operations-catalog-listProducts", timeout=WAIT_MS)
        blocks: list[str] = await page.eval_on_selector_all(
            ".opblock", "blocks => blocks.map(block => block.id)"
        )
        assert sorted(block.rsplit("-", 1)[-1] for block in blocks) == sorted(operations)
        summary = page.locator("#operations-catalog-listProducts .opblock-summary")
        assert await summary.locator(".opblock-summary-method").inner_text() == "GET"
        assert await summary.locator(".opblock-summary-path").inner_text() == "/api/v1/products"
        assert await page.locator(".btn.authorize").count() == 1
        if SCREENSHOTS:
            await page.screenshot(path=str(REPO_ROOT / "docs" / "docs-page.png"))
        # "Try it out" fetches from this origin, which the policy allows.
        await summary.click()
        await page.click("#operations-catalog-listProducts .try-out__btn")
        await page.click("#operations-catalog-listProducts .execute")
        status = page.locator(
            "#operations-catalog-listProducts .live-responses-table tbody .response-col_status"
        )
        await status.first.wait_for(timeout=WAIT_MS)
        assert (await status.first.inner_text()).strip() == "200"
        assert await watched.problems() == []


async def test_catalog_page_lists_the_products_and_filters_them(
    browser: Browser, sandbox: Sandbox
) -> None:
    async with _served(sandbox) as url:
        products = await _products(url)
        watched = await _open(browser, f"{url}/catalog")
        page = watched.page
        await page.wait_for_selector("#product-rows tr", timeout=WAIT_MS)
        rows = await _rows(page)
        assert len(rows) == len(products) == len(sandbox.state.catalog) == 30
        assert [int(row[0]) for row in rows] == [product["id"] for product in products]
        assert rows[0] == [
            "1001",
            "1NCE IoT FlexSIM - Standard",
            "1NCE FlexSIM",
            "sim",
            "10.00 EUR",
            NONE,
            "1",
            "1000",
            NONE,
        ]
        by_id = {int(row[0]): row for row in rows}
        assert by_id[1004][4] == "14.00 USD"
        assert by_id[1303][4:6] == ["5.00 EUR", "7.99 EUR"]
        assert await page.inner_text("#catalog-state") == "fresh"
        await _wait_text(page, "#versions", "Version 1 (current)")
        await _wait_text(page, "#versions", "30 added")
        for query in ("high_data_addon", "lifetime flat business", "1NCE OS", "no such thing"):
            await page.fill("#filter", query)
            words = query.lower().split()
            expected = [
                product["id"]
                for product in products
                if all(
                    word in f"{product['name']} {product['material']} {product['category']}".lower()
                    for word in words
                )
            ]
            assert [int(row[0]) for row in await _rows(page)] == expected, query
            assert await page.inner_text("#count") == f"{len(expected)} of 30 products"
        await page.fill("#filter", "")
        assert len(await _rows(page)) == 30
        assert await page.inner_text("#count") == "30 products"
        assert await watched.problems() == []


async def test_catalog_page_says_when_the_catalog_is_stale(
    browser: Browser, sandbox: Sandbox
) -> None:
    async with _served(sandbox, cache_ttl=1) as url:
        assert len(await _products(url)) == 30
        sandbox.state.faults.products_status = 500
        await asyncio.sleep(1.5)
        watched = await _open(browser, f"{url}/catalog")
        page = watched.page
        await page.wait_for_selector("#product-rows tr", timeout=WAIT_MS)
        assert len(await _rows(page)) == 30
        assert await page.inner_text("#catalog-state") == "stale"
        status = await page.inner_text("#status")
        assert status.startswith("Catalog stale: fetched from 1NCE ")
        assert status.endswith(" s ago.")
        assert await watched.problems() == []


async def test_catalog_page_asks_for_a_key_and_keeps_it_in_memory(
    browser: Browser, sandbox: Sandbox
) -> None:
    async with _served(sandbox, api_keys=(SecretStr(KEY),)) as url:
        watched = await _open(browser, f"{url}/catalog")
        page = watched.page
        await page.wait_for_selector("#key-form:not([hidden])", timeout=WAIT_MS)
        assert "requires an API key" in await page.inner_text("#key-message")
        assert await page.get_attribute("#key-input", "type") == "password"
        assert await page.is_hidden("#catalog-section")
        await page.fill("#key-input", "wrong-key")
        await page.click("#key-form button[type=submit]")
        await _wait_text(page, "#key-message", "not accepted")
        assert await page.is_hidden("#catalog-section")
        await page.fill("#key-input", KEY)
        await page.click("#key-form button[type=submit]")
        await page.wait_for_selector("#product-rows tr", timeout=WAIT_MS)
        assert len(await _rows(page)) == 30
        assert await page.is_hidden("#key-form")
        assert await page.input_value("#key-input") == ""
        await _wait_text(page, "#live", "Live updates on")
        storage = await page.evaluate("[localStorage.length, sessionStorage.length]")
        assert storage == [0, 0]
        assert await page.context.cookies() == []
        assert page.url == f"{url}/catalog"
        assert watched.event_requests
        assert watched.event_requests[-1]["authorization"] == f"Bearer {KEY}"
        assert watched.event_requests[-1]["accept"] == "text/event-stream"
        assert await watched.problems() == []


async def test_catalog_page_shows_a_new_price_without_a_reload(
    browser: Browser, sandbox: Sandbox
) -> None:
    settings: dict[str, Any] = {
        "api_keys": (SecretStr(KEY),),
        "admin_token": SecretStr(ADMIN),
        "admin_refresh_interval": 0,
    }
    async with _served(sandbox, **settings) as url:
        watched = await _open(browser, f"{url}/catalog")
        page = watched.page
        await page.wait_for_selector("#key-form:not([hidden])", timeout=WAIT_MS)
        await page.fill("#key-input", KEY)
        await page.click("#key-form button[type=submit]")
        await page.wait_for_selector("#product-rows tr", timeout=WAIT_MS)
        await _wait_text(page, "#live", "Live updates on")
        assert await _cell(page, 1001, 4) == "10.00 EUR"
        # Set in the page: a reload would lose it.
        await page.evaluate("window.__sameDocument = true")

        catalog = default_catalog()
        catalog[0]["one_time_charges"][0]["amount_net"] = 12
        sandbox.state.catalog = catalog
        await _admin_refresh(url)
        await _wait_one_time_price(page, 1001, "12.00 EUR")
        await _wait_text(page, "#versions", "Version 2 (current)")
        await _wait_text(page, "#versions", "1 changed")
        await _wait_text(page, "#versions", "one_time_total.EUR 10.00 → 12.00")
        await _wait_text(page, "#versions", "one_time.0.amount 10.00 → 12.00")
        assert await page.evaluate("window.__sameDocument") is True
        if SCREENSHOTS:
            await page.screenshot(path=str(REPO_ROOT / "docs" / "catalog-page.png"))
        problems = await watched.problems()

    # The proxy restarts on the same port with no history (a new epoch): the page reconnects,
    # sends the last event id it saw, is told to start over, and shows the newer price.
    catalog = default_catalog()
    catalog[0]["one_time_charges"][0]["amount_net"] = 15
    sandbox.state.catalog = catalog
    async with _served(sandbox, int(url.rsplit(":", 1)[1]), **settings):
        await _wait_one_time_price(page, 1001, "15.00 EUR")
        assert await page.evaluate("window.__sameDocument") is True
        resumed = [request for request in watched.event_requests if "last-event-id" in request]
        assert resumed
        assert resumed[-1]["last-event-id"] == "2"
        assert "epoch=" in resumed[-1]["url"]
        assert resumed[-1]["authorization"] == f"Bearer {KEY}"
        assert problems == []
        assert await watched.problems() == []
