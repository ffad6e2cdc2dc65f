"""Cancelling tasks: honouring a cancellation a library call swallowed, and ending a task."""

from __future__ import annotations

import asyncio
from typing import Any


def stop_if_cancelled() -> None:
    """Raise the cancellation a library call swallowed, so that cancelling always stops a task.

    redis-py sends commands under ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation that lands just as the send completes; the request stays counted on the
    task, so it can still be honoured here. Call it once per turn of a long-lived loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended.

    Its own cancellation is swallowed; a cancellation of the task that waits is not.
    """
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if (current := asyncio.current_task()) is not None and current.cancelling():
            raise
