"""Posting catalog versions to webhooks: signed, retried, in order, never in serving's way."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import structlog
from aiohttp import hdrs
from yarl import URL

from proxy import USER_AGENT
from proxy.backoff import Backoff
from proxy.history.records import VersionEvent
from proxy.observability.metrics import Metrics

logger = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Proxy-Signature-256"
"""``sha256=`` and the lowercase hex HMAC-SHA256 of the raw body under the shared secret."""
EVENT_HEADER = "X-Proxy-Event"
"""What the body announces: ``catalog``."""
DELIVERY_HEADER = "X-Proxy-Delivery"
"""``<epoch>:<version>``, the same on every attempt, so receivers can drop repeats."""
EVENT = "catalog"
# Only the status decides; the answer is read (this much at most) so its connection can be
# reused, and anything longer is cut off with the connection.
ANSWER_LIMIT = 64 * 1024
# Besides any 5xx, the answers worth trying again: the receiver is slow or busy, not refusing.
RETRIED_STATUSES = frozenset({408, 429})
# Answers whose delta-seconds Retry-After is honoured (RFC 9110 10.2.3, RFC 6585 4).
RETRY_AFTER_STATUSES = frozenset({429, 503})
_SCHEMES = frozenset({"http", "https"})


def sign(secret: bytes, body: bytes) -> str:
    """Return the :data:`SIGNATURE_HEADER` value for ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def target_of(url: str) -> str:
    """Return ``scheme://host:port`` of a webhook URL, the only part of it logs and metrics show.

    The path, query and user info may hold secrets, so they are left out. ``ValueError`` for
    anything but an absolute http or https URL.
    """
    parsed = URL(url)
    if parsed.scheme not in _SCHEMES or not parsed.host_subcomponent:
        raise ValueError("a webhook URL is an absolute http or https URL")
    return f"{parsed.scheme}://{parsed.host_subcomponent}:{parsed.port}"


@dataclass(frozen=True, slots=True)
class _Delivery:
    """One event as posted: the body and headers every attempt sends unchanged."""

    epoch: str
    version: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Reply:
    """What one attempt came to: a status (and Retry-After seconds), or the error's name."""

    status: int | None = None
    retry_after: float | None = None
    error: str | None = None


@dataclass(slots=True)
class _Receiver:
    """One webhook URL: its events waiting, and the one its worker is delivering."""

    url: str
    target: str
    pending: deque[_Delivery] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    current: _Delivery | None = None


class Webhooks:
    """Posts each event handed to :meth:`deliver` to every webhook URL, signed with ``secret``.

    Each URL has its own worker and its own queue of at most ``queue_size`` events waiting
    (when full, the oldest waiting one is dropped), so a dead or slow receiver delays nobody
    else, and serving never waits. Events reach one URL in the order handed over: the next is
    sent once the one before is delivered (any 2xx) or given up. Failed attempts are retried
    after jittered pauses (``first_pause`` doubling up to ``max_pause``, or a longer
    ``Retry-After`` within ``max_pause``) while the next attempt would start within
    ``retry_for`` seconds of the first: connection errors, timeouts, 5xx, 408 and 429. Any
    other answer (a redirect included: none is followed) is a refusal, given up at once. Every
    attempt is bounded by ``timeout`` seconds.

    Requests go through a session of their own, so receivers never take the upstream's
    connections. Attempts are counted per target (``scheme://host:port``) in
    ``Metrics.webhook_delivery``: ``delivered``, ``retried`` or ``failed``; events never
    finished (queue overflow, shutdown) are counted ``dropped``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        secret: bytes,
        metrics: Metrics,
        timeout: float = 5.0,
        retry_for: float = 300.0,
        queue_size: int = 100,
        first_pause: float = 1.0,
        max_pause: float = 60.0,
    ) -> None:
        """Prepare a worker per URL; :meth:`start` starts them. ``ValueError`` for a bad URL."""
        if queue_size < 1:
            raise ValueError("a webhook queue holds at least one event")
        self._receivers = [_Receiver(url, target_of(url)) for url in urls]
        self._secret = secret
        self._metrics = metrics
        self._timeout = timeout
        self._retry_for = retry_for
        self._queue_size = queue_size
        self._first_pause = first_pause
        self._max_pause = max_pause
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False

    async def start(self) -> None:
        """Open the webhooks' own HTTP session and start one worker per URL."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            # A worker sends one request at a time: one connection each is all they need.
            connector=aiohttp.TCPConnector(limit=max(len(self._receivers), 1)),
            cookie_jar=aiohttp.DummyCookieJar(),
            # The answer is only read to be discarded: never inflate it.
            auto_decompress=False,
            headers={hdrs.USER_AGENT: USER_AGENT},
        )
        self._workers = [
            asyncio.create_task(
                self._run(self._session, receiver), name=f"webhook {receiver.target}"
            )
            for receiver in self._receivers
        ]

    def deliver(self, event: VersionEvent) -> None:
        """Queue ``event`` for every URL, dropping the oldest waiting event of a full queue."""
        body = json.dumps({"event": EVENT, **event.to_json()}, separators=(",", ":")).encode()
        delivery = _Delivery(
            epoch=event.epoch,
            version=event.record.version,
            body=body,
            headers={
                hdrs.CONTENT_TYPE: "application/json",
                EVENT_HEADER: EVENT,
                DELIVERY_HEADER: f"{event.epoch}:{event.record.version}",
                SIGNATURE_HEADER: sign(self._secret, body),
            },
        )
        for receiver in self._receivers:
            if self._closed:
                self._drop(receiver, delivery, "closed")
                continue
            if len(receiver.pending) >= self._queue_size:
                self._drop(receiver, receiver.pending.popleft(), "queue_full")
            receiver.pending.append(delivery)
            receiver.wake.set()

    async def close(self) -> None:
        """Stop the workers at once; whatever is undelivered is logged and counted dropped."""
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        for receiver in self._receivers:
            undelivered = [receiver.current] if receiver.current is not None else []
            undelivered.extend(receiver.pending)
            receiver.current = None
            receiver.pending.clear()
            for delivery in undelivered:
                self._drop(receiver, delivery, "shutdown")

    async def _run(self, session: aiohttp.ClientSession, receiver: _Receiver) -> None:
        """Deliver ``receiver``'s events one after another until cancelled."""
        while True:
            while not receiver.pending:
                receiver.wake.clear()
                await receiver.wake.wait()
            delivery = receiver.current = receiver.pending.popleft()
            try:
                await self._send(session, receiver, delivery)
            # A bug here must not end the worker: every later event would be lost unseen.
            except Exception:
                logger.exception(
                    "webhook_error",
                    target=receiver.target,
                    epoch=delivery.epoch,
                    version=delivery.version,
                )
                self._metrics.webhook_delivery(receiver.target, "failed")
            receiver.current = None

    async def _send(
        self, session: aiohttp.ClientSession, receiver: _Receiver, delivery: _Delivery
    ) -> None:
        """Post ``delivery`` until delivered, refused, or out of ``retry_for``."""
        backoff = Backoff(first=self._first_pause, cap=self._max_pause)
        first_started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            reply = await self._attempt(session, receiver.url, delivery)
            status = reply.status
            fields = {
                "target": receiver.target,
                "epoch": delivery.epoch,
                "version": delivery.version,
                **({"error": reply.error} if status is None else {"status": status}),
            }
            if status is not None and 200 <= status < 300:
                self._metrics.webhook_delivery(receiver.target, "delivered")
                logger.info(
                    "webhook_delivered",
                    target=receiver.target,
                    epoch=delivery.epoch,
                    version=delivery.version,
                    attempts=attempt,
                )
                return
            if status is not None and status < 500 and status not in RETRIED_STATUSES:
                self._metrics.webhook_delivery(receiver.target, "failed")
                logger.warning("webhook_failed", **fields, attempts=attempt, reason="refused")
                return
            now = time.monotonic()
            not_before = None
            if reply.retry_after is not None:
                not_before = now + min(reply.retry_after, self._max_pause)
            pause = backoff.failed(not_before=not_before)
            if now + pause - first_started > self._retry_for:
                self._metrics.webhook_delivery(receiver.target, "failed")
                logger.warning("webhook_failed", **fields, attempts=attempt, reason="retry_for")
                return
            self._metrics.webhook_delivery(receiver.target, "retried")
            logger.info("webhook_retry", **fields, attempt=attempt, pause=round(pause, 3))
            await asyncio.sleep(pause)

    async def _attempt(
        self, session: aiohttp.ClientSession, url: str, delivery: _Delivery
    ) -> _Reply:
        """Post once, within ``timeout``; the status decides, once it has arrived."""
        status: int | None = None
        retry_after: float | None = None
        try:
            async with (
                asyncio.timeout(self._timeout),
                session.post(
                    url, data=delivery.body, headers=delivery.headers, allow_redirects=False
                ) as response,
            ):
                status = response.status
                if status in RETRY_AFTER_STATUSES:
                    retry_after = _delta_seconds(response.headers.get(hdrs.RETRY_AFTER))
                await _discard(response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Past the status, a slow or broken answer body changes nothing.
            if status is None:
                return _Reply(error=type(exc).__name__)
        return _Reply(status=status, retry_after=retry_after)

    def _drop(self, receiver: _Receiver, delivery: _Delivery, reason: str) -> None:
        """Count and log an event that ``receiver`` will never get."""
        self._metrics.webhook_delivery(receiver.target, "dropped")
        logger.warning(
            "webhook_dropped",
            target=receiver.target,
            epoch=delivery.epoch,
            version=delivery.version,
            reason=reason,
        )


async def _discard(response: aiohttp.ClientResponse) -> None:
    """Read and drop at most :data:`ANSWER_LIMIT` bytes; past that, close the connection."""
    received = 0
    async for chunk in response.content.iter_any():
        received += len(chunk)
        if received > ANSWER_LIMIT:
            # Close, not release: the rest must not be read, nor the connection reused.
            response.close()
            return


def _delta_seconds(value: str | None) -> float | None:
    """Seconds a delta-seconds ``Retry-After`` asks for; None for a date or anything else."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit():
        return float(text)
    return None
