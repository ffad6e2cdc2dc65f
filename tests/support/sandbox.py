"""The 1NCE emulator in the test's own event loop, and the type of the ``make_proxy`` fixture."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.sandbox import SandboxState, create_sandbox_app
from tests.support.net import HOST, serve

MakeProxy = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
"""``make_proxy(**overrides)``: a test client of a new proxy in front of the sandbox."""


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value, built by hand: aiohttp's helper differs by release."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Sandbox:
    """The 1NCE emulator on a real loopback port, with its state for faults and counts.

    The first ``start()`` takes a port the kernel picks; ``stop()`` closes the listener and every
    connection (callers then see "refused"); ``start()`` serves again on the same port with the
    same state.
    """

    def __init__(self) -> None:
        self.state = SandboxState()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(create_sandbox_app(state=self.state), access_log=None)
        await runner.setup()
        try:
            self.port = await serve(runner, self.port)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
