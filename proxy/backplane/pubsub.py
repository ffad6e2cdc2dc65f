"""Listening for announcements on Redis pub/sub, so that nothing can stop the listening."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from redis.asyncio.client import PubSub

from proxy.backoff import Backoff
from proxy.backplane.topics import Topics
from proxy.cancellation import stop_if_cancelled
from proxy.observability.metrics import Metrics

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ListenerTiming:
    """How the listener notices a lost connection, and how it comes back."""

    ping_interval: float = 5.0
    """A PING goes out this often."""
    missed_pings: int = 3
    """A connection that brought nothing back (no message, no pong) for this many intervals is
    taken as lost: that catches a frozen server or a half-open TCP connection (no FIN) that no
    read would ever report."""
    first_pause: float = 0.5
    """The pause before resubscribing, doubling after each further failure..."""
    max_pause: float = 15.0
    """... up to this."""


# Topics are short words; anything longer is not an announcement.
MAX_TOPIC_LENGTH = 64
# Messages that are not announcements are logged (at debug) at most once per this many seconds.
IGNORED_LOG_INTERVAL = 60.0


class Subscriber:
    """One pub/sub subscription per process that wakes this process's topics on announcements.

    Messages name a topic (``catalog``, ``token``), which is woken in ``topics``. Anything
    else on the channel is ignored, and no failure ends the listening: a lost, frozen or
    misbehaving connection is replaced after a pause (the shared :class:`Backoff`), and
    counted. ``open_pubsub`` makes a new subscription connection each time (for a Redis
    Cluster, on the next node: classic PUBLISH reaches every node).
    """

    def __init__(
        self,
        open_pubsub: Callable[[], PubSub],
        channel: str,
        topics: Topics,
        *,
        timeout: float,
        metrics: Metrics,
        timing: ListenerTiming = ListenerTiming(),
    ) -> None:
        """Prepare a notifier for ``channel``; :meth:`run` does the listening, on ``timing``."""
        self._open_pubsub = open_pubsub
        self._channel = channel
        self._topics = topics
        self._timeout = timeout
        self._metrics = metrics
        self._ping_interval = timing.ping_interval
        self._silence_limit = timing.ping_interval * timing.missed_pings
        self._max_pause = timing.max_pause
        # Jittered, so replicas that lost Redis together do not all come back at once.
        self._backoff = Backoff(first=timing.first_pause, cap=timing.max_pause)
        self._ignored = 0
        self._ignored_logged_at = -IGNORED_LOG_INTERVAL
        self.listening = False

    async def run(self) -> None:
        """Listen until cancelled, resubscribing with a growing, jittered pause after failures."""
        loop = asyncio.get_running_loop()
        while True:
            pubsub: PubSub | None = None
            subscribed_at: float | None = None
            try:
                pubsub = self._open_pubsub()
                async with asyncio.timeout(self._timeout * 4):
                    await pubsub.subscribe(self._channel)
                self.listening = True
                subscribed_at = loop.time()
                self._topics.wake_all()
                await self._listen(pubsub)
                reason, error = "silent", "NoReply"
            # Whatever went wrong, only a new connection can help: the listener must go on.
            except Exception as exc:  # noqa: BLE001
                reason, error = "error", type(exc).__name__
            finally:
                self.listening = False
                if pubsub is not None:
                    await self._close(pubsub)
            self._metrics.pubsub_restart(reason)
            # Only a subscription that held for a while starts the pauses over: one lost right
            # after subscribing (a flapping server, a fault that persists) keeps them growing.
            if subscribed_at is not None and loop.time() - subscribed_at >= self._max_pause:
                self._backoff.succeeded()
            pause = self._backoff.failed()
            log = logger.warning if subscribed_at is not None else logger.debug
            log("redis_pubsub_lost", reason=reason, error=error, pause=round(pause, 3))
            stop_if_cancelled()
            await asyncio.sleep(pause)

    async def _listen(self, pubsub: PubSub) -> None:
        """Handle messages, pinging between them; return once the connection falls silent."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        next_ping = heard + self._ping_interval
        while True:
            stop_if_cancelled()
            deadline = heard + self._silence_limit
            now = loop.time()
            if now >= deadline:
                return
            try:
                # Every step ends by the deadline, even a write stuck on a full socket buffer.
                async with asyncio.timeout_at(deadline):
                    if now >= next_ping:
                        next_ping = now + self._ping_interval
                        await pubsub.ping()
                    # In subscribed mode the reply to PING arrives as a "pong" message.
                    message = await pubsub.get_message(
                        timeout=max(min(next_ping, deadline) - loop.time(), 0.0)
                    )
            except TimeoutError:
                if loop.time() < deadline:
                    raise
                return
            if message is not None:
                heard = loop.time()
                self._handle(message)

    def _handle(self, message: object) -> None:
        """Wake the topic a message names; ignore pongs, and anything that names no topic."""
        if not isinstance(message, dict):
            self._ignore("odd_message", type(message).__name__, 0)
            return
        if message.get("type") != "message":
            return
        data = message.get("data")
        if isinstance(data, bytes):
            if len(data) > MAX_TOPIC_LENGTH:
                self._ignore("too_long", "bytes", len(data))
                return
            try:
                topic = data.decode()
            except UnicodeDecodeError:
                self._ignore("not_utf8", "bytes", len(data))
                return
        elif isinstance(data, str):
            if len(data) > MAX_TOPIC_LENGTH:
                self._ignore("too_long", "str", len(data))
                return
            topic = data
        else:
            self._ignore("odd_data", type(data).__name__, 0)
            return
        self._topics.wake(topic)

    def _ignore(self, kind: str, data_type: str, size: int) -> None:
        """Count a message that is not an announcement; log a few, never their content."""
        self._ignored += 1
        now = time.monotonic()
        if now - self._ignored_logged_at >= IGNORED_LOG_INTERVAL:
            self._ignored_logged_at = now
            logger.debug(
                "redis_pubsub_ignored", kind=kind, type=data_type, size=size, total=self._ignored
            )

    async def _close(self, pubsub: PubSub) -> None:
        """Drop the subscription's connection, giving up on it after the call timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2
        except Exception as exc:  # noqa: BLE001 - the connection is being discarded anyway
            logger.debug("redis_pubsub_close_failed", error=type(exc).__name__)
