"""Honouring a cancellation that a library call swallowed."""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """Raise the cancellation a library call swallowed, so that cancelling always stops a task.

    redis-py sends commands under ``asyncio.wait_for``, which on Python 3.11 drops a
    cancellation that lands just as the send completes; the request stays counted on the
    task, so it can still be honoured here. Call it once per turn of a long-lived loop.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
