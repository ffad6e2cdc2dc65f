"""In-process request coalescing: one job in flight, every concurrent caller shares its result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from proxy.observability.context import TraceParent
from proxy.observability.tracing import NO_TRACING, Tracing

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one instance of a job at a time; callers that arrive meanwhile join it.

    The job runs in its own task, shielded from its callers: a caller that goes away (client
    disconnect, timeout) does not cancel the fetch the others wait for. The task inherits
    the context of the caller that started it (its request, its trace). With ``tracing``,
    the span of each caller that joins is linked to the span of the one that started it.
    """

    def __init__(self, *, tracing: Tracing = NO_TRACING) -> None:
        """Create an idle flight."""
        self._task: asyncio.Task[T] | None = None
        self._tracing = tracing
        self._starter: TraceParent | None = None

    @property
    def running(self) -> bool:
        """Whether a job is in flight now."""
        return self._task is not None

    def start(self, job: Callable[[], Coroutine[Any, Any, T]]) -> tuple[asyncio.Task[T], bool]:
        """Start ``job`` unless one is in flight; return the task and whether it was joined."""
        if self._task is not None:
            self._tracing.link(self._starter, "joined")
            return self._task, True
        task = asyncio.get_running_loop().create_task(job())
        self._task = task
        self._starter = self._tracing.current()
        task.add_done_callback(self._finished)
        return task, False

    async def run(self, job: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """Run or join ``job``; return its result and whether this caller joined another's."""
        task, joined = self.start(job)
        return await asyncio.shield(task), joined

    async def wait(self) -> None:
        """Wait until the job in flight, if any, has ended, whatever its outcome."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel the job in flight, if any, and wait for it to end."""
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _finished(self, task: asyncio.Task[T]) -> None:
        if self._task is task:
            self._task = None
            self._starter = None
        if not task.cancelled():
            # Mark the outcome as seen: a background job may have had no caller to see it.
            task.exception()
