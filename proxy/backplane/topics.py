"""This process's side of announcements: events to wait on and listeners to call, per topic."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

logger = structlog.get_logger(__name__)


class Topics:
    """Waiters and listeners per topic (``catalog``, ``token``), woken by announcements.

    Each topic has an event replaced at every announcement, so a waiter that took the event
    before checking shared state cannot miss a wake-up. A topic nobody waits for or listens
    to leaves no trace, so announcements of unknown topics cannot grow this.
    """

    def __init__(self) -> None:
        """Start with no waiter and no listener."""
        self._events: dict[str, asyncio.Event] = {}
        self._listeners: dict[str, list[Callable[[], None]]] = {}

    def waiter(self, topic: str) -> asyncio.Event:
        """Return the event the next announcement of ``topic`` sets."""
        return self._events.setdefault(topic, asyncio.Event())

    def on(self, topic: str, listener: Callable[[], None]) -> None:
        """Call ``listener`` at every announcement of ``topic``."""
        self._listeners.setdefault(topic, []).append(listener)

    def wake(self, topic: str) -> None:
        """Wake the waiters and call the listeners of ``topic``."""
        event = self._events.pop(topic, None)
        if event is not None:
            event.set()
        for listener in tuple(self._listeners.get(topic, ())):
            # One failing listener must neither starve the others nor stop the listening.
            try:
                listener()
            except Exception:
                logger.exception("pubsub_listener_failed", topic=topic)

    def wake_all(self) -> None:
        """Wake every topic: announcements may have been missed while not listening."""
        for topic in {*self._events, *self._listeners}:
            self.wake(topic)
