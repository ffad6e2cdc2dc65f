"""HTTP load for tests: bursts and steady streams of GETs, each answer read whole."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict

# A worker whose request could not connect waits this long before its next one.
_PAUSE_AFTER_FAILURE = 0.05


@dataclass(frozen=True)
class Reply:
    """One answer, read whole (status 0: no answer, the body says why)."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


async def burst(url: str, count: int, headers: dict[str, str] | None = None) -> list[Reply]:
    """Send ``count`` GETs at once over separate connections; return status, headers, body."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> Reply:
            async with session.get(url, headers=headers) as response:
                return Reply(response.status, CIMultiDict(response.headers), await response.read())

        return list(await asyncio.gather(*(one() for _ in range(count))))


async def _get(session: aiohttp.ClientSession, url: str) -> Reply:
    """One GET read whole; a connection failure or timeout becomes status 0 with its text."""
    try:
        async with session.get(url) as response:
            return Reply(response.status, CIMultiDict(response.headers), await response.read())
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        return Reply(0, CIMultiDict(), f"{type(error).__name__}: {error}".encode())


def _session(timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def spread(
    urls: Sequence[str], path: str, count: int, *, request_timeout: float = 30.0
) -> list[Reply]:
    """Send ``count`` concurrent GETs of ``path``, round robin over the base ``urls``."""
    if not urls:
        raise ValueError("no URLs to send to")
    async with _session(request_timeout) as session:
        targets = [f"{urls[index % len(urls)]}{path}" for index in range(count)]
        return list(await asyncio.gather(*(_get(session, target) for target in targets)))


async def steady_load(
    urls: Sequence[str],
    path: str,
    *,
    seconds: float,
    concurrency: int,
    request_timeout: float = 10.0,
    max_requests: int = 100_000,
) -> list[Reply]:
    """Keep ``concurrency`` workers sending GETs round robin for ``seconds``; return every reply.

    No request starts after ``seconds`` or beyond ``max_requests``; one in flight may take up
    to ``request_timeout`` more. A worker whose request failed to connect pauses briefly.
    """
    if not urls:
        raise ValueError("no URLs to send to")
    deadline = time.monotonic() + seconds
    turns = itertools.count()
    replies: list[Reply] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            turn = next(turns)
            if turn >= max_requests:
                return
            reply = await _get(session, f"{urls[turn % len(urls)]}{path}")
            replies.append(reply)
            if reply.status == 0:
                await asyncio.sleep(_PAUSE_AFTER_FAILURE)

    async with _session(request_timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return replies
