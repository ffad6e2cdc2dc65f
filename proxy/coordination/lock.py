"""Deployment-wide turns (a Redis lock) and wake-ups (Redis pub/sub) for replicas."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import structlog
from redis.asyncio.lock import Lock
from redis.exceptions import RedisError

from proxy.coordination.client import RedisGuard

logger = structlog.get_logger(__name__)

LISTENER_FIRST_PAUSE = 0.5
LISTENER_MAX_PAUSE = 15.0
# How long the listener blocks on one read; bounds how quickly it notices cancellation.
LISTEN_SLICE = 1.0


class Coordinator(Protocol):
    """Decides which replica does a piece of shared work, and tells the others when it is done."""

    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Enter to learn whether this process should do the work now (True) or wait."""
        ...

    def waiter(self) -> asyncio.Event:
        """Return the event the next announcement sets; take it *before* checking shared state."""
        ...

    async def announce(self) -> None:
        """Tell every replica that the shared value has changed."""
        ...


class LocalCoordinator:
    """The coordinator for a single process: always this process's turn, nobody to tell."""

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        """Give this process the turn: in-process coalescing already serialises callers."""
        yield True

    def waiter(self) -> asyncio.Event:
        """Return an event nobody sets; waits on it simply time out."""
        return asyncio.Event()

    async def announce(self) -> None:
        """Nothing to announce to."""


class Notifier:
    """One pub/sub subscription per process that wakes local waiters on announcements.

    Messages name a topic (``catalog``, ``token``); each topic has an event replaced at every
    announcement, so a waiter that took the event before checking shared state cannot miss
    a wake-up. Listeners registered with :meth:`on` are called for every announcement too.
    """

    def __init__(self, guard: RedisGuard, channel: str) -> None:
        """Prepare a notifier for ``channel``; :meth:`run` does the listening."""
        self._guard = guard
        self._channel = channel
        self._events: dict[str, asyncio.Event] = {}
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self.listening = False

    def waiter(self, topic: str) -> asyncio.Event:
        """Return the event the next announcement of ``topic`` sets."""
        return self._events.setdefault(topic, asyncio.Event())

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement of ``topic`` (from any replica)."""
        self._listeners.setdefault(topic, []).append(listener)

    async def publish(self, topic: str) -> None:
        """Announce ``topic`` to every replica (best effort)."""
        await self._guard.call(
            "publish", lambda: self._guard.client.publish(self._channel, topic), None
        )

    def wake(self, topic: str) -> None:
        """Wake this process's waiters on ``topic``."""
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()
        for listener in self._listeners.get(topic, ()):
            listener()

    def wake_all(self) -> None:
        """Wake every waiter: announcements may have been missed while not listening."""
        for topic in {*self._events, *self._listeners}:
            self.wake(topic)

    async def run(self) -> None:
        """Listen until cancelled, resubscribing with a growing pause after failures."""
        pause = LISTENER_FIRST_PAUSE
        while True:
            pubsub = self._guard.client.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._guard.timeout * 4):
                    await pubsub.subscribe(self._channel)
                self.listening = True
                pause = LISTENER_FIRST_PAUSE
                self.wake_all()
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_SLICE)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self.wake(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError, TimeoutError) as exc:
                if self.listening:
                    logger.warning("redis_pubsub_lost", error=type(exc).__name__)
                self.listening = False
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._guard.timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(pause)
            pause = min(pause * 2, LISTENER_MAX_PAUSE)


class RedisCoordinator:
    """Turns taken with a Redis lock, announcements sent over the notifier.

    The lock holds a unique token (owner and a random part) and expires after ``ttl``; it is
    released with a compare-and-delete, so a holder whose lock expired cannot free another's.
    When Redis cannot be asked, it is this process's turn: callers are still served, with
    in-process coalescing only.
    """

    def __init__(
        self,
        guard: RedisGuard,
        notifier: Notifier,
        *,
        name: str,
        topic: str,
        ttl: float,
        owner: str,
    ) -> None:
        """Coordinate work named ``name`` (the lock key) announced as ``topic``."""
        self._guard = guard
        self._notifier = notifier
        self._name = name
        self._topic = topic
        self._ttl = ttl
        self._owner = owner

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        """Hold the deployment lock while the body runs, if it could be taken."""
        lock = Lock(
            self._guard.client,
            self._name,
            timeout=self._ttl,
            blocking=False,
            thread_local=False,
            raise_on_release_error=False,
        )
        token = f"{self._owner}:{uuid.uuid4().hex}"
        acquired = await self._guard.call(
            "lock", lambda: lock.acquire(blocking=False, token=token), None
        )
        if acquired is False:
            yield False
            return
        try:
            yield True
        finally:
            if acquired:
                await self._guard.call("unlock", lock.release, None)

    def waiter(self) -> asyncio.Event:
        """Return the event the next announcement of this topic sets."""
        return self._notifier.waiter(self._topic)

    async def announce(self) -> None:
        """Publish this topic to every replica."""
        await self._notifier.publish(self._topic)
