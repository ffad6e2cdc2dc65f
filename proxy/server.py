"""Running the service: listen, wait for a signal, drain, close (and the in-process sandbox)."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from aiohttp import web
from pydantic import SecretStr

from proxy.app import create_app
from proxy.observability.tracing import start_tracing
from proxy.sandbox import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, create_sandbox_app
from proxy.sandbox.catalog import CatalogStyle
from proxy.settings import Settings
from proxy.web.health import LIFECYCLE
from proxy.web.management import create_management_app

logger = structlog.get_logger(__name__)
# Probes and scrapes are quick: after the API's drain the management port closes in seconds.
MANAGEMENT_SHUTDOWN_TIMEOUT = 1.0


@dataclass(frozen=True)
class SandboxOptions:
    """How the in-process 1NCE emulator of ``--sandbox`` runs."""

    drift: float | None = None
    """Seconds between catalog changes (see ``SandboxState.drift``); None: no drift."""
    catalog_style: CatalogStyle = "irregular"
    """Which built-in catalog it serves (see ``proxy.sandbox.catalog.CatalogStyle``)."""


async def start_sandbox(stack: AsyncExitStack, options: SandboxOptions) -> str:
    """Start the 1NCE emulator on a free loopback port; return its base URL."""
    app = create_sandbox_app(catalog_style=options.catalog_style, drift=options.drift)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


def sandbox_settings(settings: Settings, upstream_url: str) -> Settings:
    """Point ``settings`` at the emulator with its credentials.

    Its port changes at every start; its keys in a shared Redis do not (one name, ``sandbox``),
    so a restarted demo finds its catalog, token and history again instead of piling up keys.
    """
    return settings.pointed_at(
        upstream_url,
        name="sandbox",
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SecretStr(SANDBOX_CLIENT_SECRET),
    )


async def serve(settings: Settings, *, sandbox: SandboxOptions | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking traffic and let requests finish.

    With ``sandbox``, the upstream is the built-in emulator, run as it says.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        if sandbox is not None:
            upstream_url = await start_sandbox(stack, sandbox)
            settings = sandbox_settings(settings, upstream_url)
            logger.info(
                "sandbox_started",
                upstream_url=upstream_url,
                drift_seconds=sandbox.drift,
                catalog=sandbox.catalog_style,
            )
        # Spans only when the otel extra is installed and OTEL_* asks for them; flushed last.
        tracing = start_tracing()
        if tracing.enabled:
            # Flushing may wait for the exporter's timeout: off the event loop.
            stack.push_async_callback(asyncio.to_thread, tracing.shutdown)
        app = create_app(settings, tracing=tracing)
        # aiohttp waits up to shutdown_timeout for a request in flight, then cancels its body
        # and waits up to shutdown_timeout again for the handler: half the grace for each
        # keeps the whole drain within PROXY_SHUTDOWN_GRACE.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace / 2)
        # One callback stops every runner set up, in this list's order: the API drains first
        # and the management port keeps answering probes and scrapes until it has.
        runners: list[web.AppRunner] = []
        stack.push_async_callback(_stop_in_order, runners)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, settings.host, settings.port).start()
        if (management_port := settings.management_port) is not None:
            management = web.AppRunner(
                create_management_app(app),
                access_log=None,
                shutdown_timeout=MANAGEMENT_SHUTDOWN_TIMEOUT,
            )
            # After the API's start-up, whose objects it shares; and listening after the API
            # port, so a passing probe means both listen.
            await management.setup()
            runners.append(management)
            await web.TCPSite(management, settings.host, management_port).start()
        logger.info(
            "listening",
            host=settings.host,
            port=settings.port,
            management_port=settings.management_port,
            sandbox=sandbox is not None,
        )
        await stop.wait()
        # Readiness turns false first (on both ports: they share the lifecycle), so
        # Kubernetes stops sending traffic; with a delay set, requests keep being served
        # while it notices. Then the listener closes, requests in flight get up to the grace
        # period, background refreshes stop, connections close; the management port last.
        app[LIFECYCLE].shutting_down = True
        logger.info(
            "shutting_down",
            delay_seconds=settings.shutdown_delay,
            grace_seconds=settings.shutdown_grace,
        )
        if settings.shutdown_delay:
            await asyncio.sleep(settings.shutdown_delay)
    logger.info("stopped")


async def _stop_in_order(runners: list[web.AppRunner]) -> None:
    """Clean up each runner in order, each even if one before it failed."""
    async with AsyncExitStack() as stack:
        for runner in reversed(runners):
            stack.push_async_callback(runner.cleanup)
