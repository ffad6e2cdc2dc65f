"""Waiting in async tests for something that happens in the background."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Wait until ``await check()`` holds and return the seconds it took; fail naming ``what``."""
    started = time.monotonic()
    while not await check():
        elapsed = time.monotonic() - started
        assert elapsed < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started
