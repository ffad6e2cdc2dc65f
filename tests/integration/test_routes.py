"""The route table: every route passes the request pipeline, or the service does not start."""

from __future__ import annotations

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import make_mocked_request

from proxy.app import create_app
from proxy.backplane.interface import BACKPLANE
from proxy.callers.keys import parse_entries
from proxy.callers.registry import Callers
from proxy.callers.tokens import CallerTokens
from proxy.observability.metrics import Metrics
from proxy.upstream.session import HTTP_SESSION
from proxy.web.pipeline import UNMATCHED, AnyPath, RequestPipeline, UnwrappedRouteError
from proxy.web.routes import ROUTES, Route, install_routes
from tests.support.sandbox import MakeProxy, Sandbox
from tests.support.settings import make_settings

KEY = "routes-key"


async def _sneaky(_request: web.Request) -> web.Response:
    return web.Response(text="no request id, no key check")


def _pipeline() -> RequestPipeline:
    callers = Callers(parse_entries([KEY]), tokens=CallerTokens())
    return RequestPipeline(access_log="off", metrics=Metrics(), callers=callers)


def _example(path: str) -> str:
    return path.replace("{id}", "1001").replace("{asset}", "page.js")


async def test_the_service_starts_and_every_route_passes_the_pipeline(
    make_proxy: MakeProxy,
) -> None:
    client = await make_proxy(api_keys=[KEY])

    registered = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.resource.name != UNMATCHED
    }
    assert registered == {(route.method, route.path) for route in ROUTES}
    for route in ROUTES:
        response = await client.request(route.method, _example(route.path))
        assert len(response.headers["X-Request-ID"]) == 32, route
        if route.protected:
            assert response.status == 401, route
            assert (await response.json())["error"]["code"] == "unauthorized"
        else:
            assert response.status < 500, route
    unmatched = await client.get("/nowhere")
    assert unmatched.status == 404
    assert (await unmatched.json())["error"]["code"] == "not_found"
    assert len(unmatched.headers["X-Request-ID"]) == 32
    keyed = await client.get("/api/v1/products/1001", headers={"Authorization": f"Bearer {KEY}"})
    assert keyed.status == 200
    assert (await keyed.json())["product"]["id"] == 1001


async def test_a_route_added_past_the_pipeline_stops_the_start(sandbox: Sandbox) -> None:
    app = create_app(make_settings(sandbox.url, api_keys=[KEY]))
    app.router.add_get("/sneaky", _sneaky)
    runner = web.AppRunner(app)

    with pytest.raises(UnwrappedRouteError, match=r"skip the request pipeline.*GET /sneaky"):
        await runner.setup()
    await runner.cleanup()

    # The check runs before any resource opens: nothing was connected, nothing fetched.
    assert HTTP_SESSION not in app
    assert BACKPLANE not in app
    assert sandbox.state.products_requests == 0


async def test_the_error_names_every_route_that_skips_the_pipeline() -> None:
    app = web.Application()
    install_routes(app, _pipeline())
    app.router.add_get("/sneaky", _sneaky)  # GET, and HEAD with it
    app.router.add_post("/also-sneaky", _sneaky)
    runner = web.AppRunner(app)

    with pytest.raises(UnwrappedRouteError) as raised:
        await runner.setup()
    await runner.cleanup()

    message = str(raised.value)
    assert "HEAD /sneaky, GET /sneaky, POST /also-sneaky;" in message
    assert "/v1/products" not in message
    assert "ROUTES in proxy/web/routes.py" in message


async def test_a_table_installed_alone_starts() -> None:
    app = web.Application()
    install_routes(app, _pipeline())
    runner = web.AppRunner(app)
    await runner.setup()  # no error: every route is wrapped and the catch-all is last
    await runner.cleanup()


async def test_a_resource_after_the_catch_all_stops_the_start() -> None:
    app = web.Application()
    pipeline = _pipeline()
    install_routes(app, pipeline, ())
    # Wrapped, but registered after the catch-all: "/" requests would never reach it.
    pipeline.add_route(app.router, "GET", "/", _sneaky, protected=False)
    runner = web.AppRunner(app)

    with pytest.raises(UnwrappedRouteError, match=r"catch-all resource must be registered last"):
        await runner.setup()
    await runner.cleanup()


def test_an_open_route_under_a_protected_prefix_is_refused() -> None:
    app = web.Application()
    open_route = Route("GET", "/api/v1/open", _sneaky, protected=False)

    with pytest.raises(ValueError, match="GET /api/v1/open must be protected"):
        install_routes(app, _pipeline(), (open_route,))


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
async def test_each_route_reaches_its_own_resource_before_the_catch_all(route: Route) -> None:
    app = create_app(make_settings("http://127.0.0.1:9"))
    request = make_mocked_request(route.method, _example(route.path), app=app)

    match = await app.router.resolve(request)

    assert match.route.resource is not None
    assert match.route.resource.canonical == route.path
    assert not isinstance(match.route.resource, AnyPath)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nowhere"),
        ("GET", "/api/v1/products/1001/more"),
        ("DELETE", "/v1/products"),
        (hdrs.METH_OPTIONS, "*"),
    ],
)
async def test_anything_else_reaches_the_catch_all(method: str, path: str) -> None:
    app = create_app(make_settings("http://127.0.0.1:9"))
    request = make_mocked_request(method, path, app=app)

    match = await app.router.resolve(request)

    assert isinstance(match.route.resource, AnyPath)
    assert match.route.resource.get_info() == {"path": "/"}
