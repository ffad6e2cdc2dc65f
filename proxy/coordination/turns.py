"""Deployment-wide turns: a lock in the backplane, and the announcement when the work is done."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from proxy.backplane.interface import Backplane


class Turns:
    """Decides which replica does a piece of shared work, and tells the others when it is done.

    A turn is a key set if absent, holding a unique token (``owner`` and a random part), that
    expires after ``ttl``; it is released with a compare-and-delete, so a holder whose turn
    expired cannot end another's. When the backplane cannot be asked, it is this process's
    turn: callers are still served, with in-process coalescing only. With the in-process
    backplane every turn is this process's, as no other replica exists.
    """

    def __init__(
        self,
        backplane: Backplane,
        *,
        name: str,
        topic: str,
        ttl: float,
        owner: str,
        max_wait: float = 30.0,
    ) -> None:
        """Coordinate work named ``name`` (the lock key) announced as ``topic``.

        ``max_wait``: how long a replica waits on another's turn before it works alone.
        """
        self._backplane = backplane
        self._name = name
        self._topic = topic
        self._ttl = ttl
        self._owner = owner
        self.max_wait = max_wait
        """Seconds a replica waits on another's turn before it does the work alone."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        """Hold the deployment's turn while the body runs, if it could be taken."""
        token = f"{self._owner}:{uuid.uuid4().hex}".encode()
        taken = await self._backplane.set_if_absent(self._name, token, self._ttl)
        if taken is False:
            yield False
            return
        try:
            yield True
        finally:
            if taken:
                await self._backplane.delete_if_equal(self._name, token)

    def waiter(self) -> asyncio.Event:
        """Return the event the next announcement sets; take it *before* checking shared state."""
        return self._backplane.waiter(self._topic)

    async def announce(self) -> None:
        """Tell every replica that the shared value has changed."""
        await self._backplane.publish(self._topic)
