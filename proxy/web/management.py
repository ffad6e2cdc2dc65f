"""The management port: ``/healthz``, ``/readyz`` and ``/metrics`` apart from the API.

With ``PROXY_MANAGEMENT_PORT`` set, the probes and the metrics are served on that port and
only there, so a NetworkPolicy can admit callers to the API port and Prometheus and the
kubelet to this one. It is a second application, served beside the API's by
:func:`proxy.server.serve`, with its own request pipeline counting into the API's metrics.
Its handlers read the API application's shared objects (catalog, lifecycle, metrics): the
same objects, so readiness turns false on both ports at once when the service drains.
"""

from __future__ import annotations

from aiohttp import web

from proxy.callers.registry import Callers
from proxy.callers.tokens import CallerTokens
from proxy.observability.metrics import METRICS
from proxy.settings import SETTINGS
from proxy.web.pipeline import RequestPipeline
from proxy.web.routes import MANAGEMENT_ROUTES, install_routes


class ApiAppNotStartedError(RuntimeError):
    """The management application was started before the API application it reports on."""


def create_management_app(api_app: web.Application) -> web.Application:
    """Build the management application for ``api_app``; start it after ``api_app``.

    Every request on it is counted in ``api_app``'s metrics. No API key is asked for: any
    other path answers 404 whatever its prefix, and another method on the three paths 405.
    """
    settings = api_app[SETTINGS]
    app = web.Application()
    pipeline = RequestPipeline(
        access_log=settings.access_log,
        metrics=api_app[METRICS],
        # No keys: nothing here is protected, and the API's paths are unknown here.
        callers=Callers((), tokens=CallerTokens()),
    )
    install_routes(app, pipeline, MANAGEMENT_ROUTES)

    async def share_api_state(app: web.Application) -> None:
        # The API application's resources exist once its start-up has run: the catalog is
        # made there. Every typed key is shared, so a handler reads what it would read on
        # the API port.
        if not api_app.frozen:
            raise ApiAppNotStartedError("start the API application before the management one")
        for key in api_app:
            if isinstance(key, web.AppKey):
                app[key] = api_app[key]

    app.on_startup.append(share_api_state)
    return app
