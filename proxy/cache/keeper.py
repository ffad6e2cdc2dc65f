"""The keeper: a task that keeps a catalog once one is needed, with no caller traffic."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable

import structlog

from proxy.cancellation import cancel_and_wait

logger = structlog.get_logger(__name__)

AFTER_SURPRISE = 30.0
"""Seconds the keeper rests after a failure its step did not foresee (it logs its own)."""


class Keeper:
    """Runs ``step`` for ever: each run returns how long to sleep before the next one.

    A sleep ends early when the keeper is woken (:meth:`wake`: an announcement, a failed fill),
    and ``inf`` sleeps until then. Nothing runs until :meth:`start`; :meth:`need` is what makes
    a catalog wanted (warm-up, a caller, a listener), and the step asks :attr:`needed`.
    """

    def __init__(self, step: Callable[[], Awaitable[float]]) -> None:
        """Keep by calling ``step``."""
        self._step = step
        self._needed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def needed(self) -> bool:
        """Whether a catalog is wanted from now on."""
        return self._needed

    def need(self) -> None:
        """Note that a catalog is wanted; wake the keeper the first time."""
        if not self._needed:
            self._needed = True
            self._wake.set()

    def wake(self) -> None:
        """End the current sleep: something changed."""
        self._wake.set()

    def start(self) -> None:
        """Start the task, once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep())

    async def close(self) -> None:
        """Stop the task."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _keep(self) -> None:
        while True:
            try:
                seconds = await self._step()
            except Exception:
                # Fills log their own failures; this is what they did not foresee.
                logger.exception("catalog_keeper_failed")
                seconds = AFTER_SURPRISE
            if seconds > 0:
                await self._sleep(seconds)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        timeout = None if math.isinf(seconds) else seconds
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wake.wait()
