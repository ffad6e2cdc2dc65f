"""``GET /api/v1/events``: catalog versions as Server-Sent Events, one stream per caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable

import structlog
from aiohttp import hdrs, web

from proxy.callers.registry import CALLERS
from proxy.catalog.query import refuse_unknown
from proxy.history.feed import FEED, ChangeFeed
from proxy.history.records import VersionEvent
from proxy.history.store import History
from proxy.observability.context import REQUEST
from proxy.settings import SETTINGS
from proxy.web.changes import parse_epoch, parse_version
from proxy.web.errors import json_error
from proxy.web.pipeline import REQUEST_ID_HEADER

logger = structlog.get_logger(__name__)

# A reader that leaves more than this unread for longer than this many keep-alive intervals
# has stopped reading: its stream ends rather than buffer for it. A reader keeping up never
# leaves this much: events are a few hundred bytes. (aiohttp waits on a full socket only
# every 64 KiB written, which keep-alives alone take hours to reach.)
UNREAD_LIMIT = 64 * 1024
STALL_INTERVALS = 2
# Tells a client (EventSource) how long to wait before reconnecting, in milliseconds.
RECONNECT_MILLIS = 3000
RETRY_AFTER_FULL = "5"
LIFETIME_JITTER = 0.1
_KEEPALIVE = b": keep-alive\n\n"
# The last event of a stream whose key or caller token is no longer valid (no id: a client's
# Last-Event-ID stays at the last version it got).
_REVOKED = (
    b'event: revoked\ndata: {"reason":"the API key or caller token this stream was opened '
    b'with is no longer valid"}\n\n'
)


async def catalog_events(request: web.Request) -> web.StreamResponse:
    """Stream an event per catalog version, each new one as the deployment records it.

    First comes the current version (the baseline), or with ``Last-Event-ID`` every kept
    version after that one (or a ``resync`` event when they are not all kept).
    """
    refuse_unknown(request.query, ("epoch",))
    last_id = parse_version(request.headers.get("Last-Event-ID"), "Last-Event-ID")
    epoch = parse_epoch(request.query.get("epoch"))
    app = request.app
    feed = app[FEED]
    if not feed.open_stream():
        return json_error(
            503,
            "too_many_streams",
            "this replica has as many event streams open as it takes; retry, another "
            "replica may take it",
            headers={"Retry-After": RETRY_AFTER_FULL},
        )
    try:
        feed.need()
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                # Proxies in between (nginx) must pass each event on at once.
                "X-Accel-Buffering": "no",
            }
        )
        context = REQUEST.get()
        if context is not None:
            # Sent with the headers: the pipeline's own comes after the stream has started.
            response.headers[REQUEST_ID_HEADER] = context.request_id
        await response.prepare(request)
        settings = app[SETTINGS]
        # A little less than the most, at random: streams opened together (after a restart)
        # do not all end together.
        lifetime = settings.stream_max_age * random.uniform(1 - LIFETIME_JITTER, 1)  # noqa: S311
        stream = _Stream(
            response,
            request.transport,
            feed,
            settings.stream_keepalive,
            lifetime,
            still_allowed=_credential_check(request),
        )
        with contextlib.suppress(ConnectionError, TimeoutError):
            await stream.run(last_id, epoch)
            await response.write_eof()
        return response
    finally:
        feed.close_stream()


def _credential_check(request: web.Request) -> Callable[[], bool]:
    """Whether the credential the stream was opened with still names the same caller.

    A key removed since (a revocation) or a caller token expired or revoked since no longer
    does; without keys there is nothing to revoke.
    """
    callers = request.app[CALLERS]
    context = REQUEST.get()
    if not callers.required or context is None:
        return lambda: True
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    caller = context.caller
    return lambda: callers.identify(authorization) == caller


class _Stream:
    """One open event stream: where it is in the history, and how to write to it.

    ``still_allowed`` is asked before every event and keep-alive: once it says no, the stream
    ends with a ``revoked`` event instead.
    """

    def __init__(
        self,
        response: web.StreamResponse,
        transport: asyncio.Transport | None,
        feed: ChangeFeed,
        keepalive: float,
        lifetime: float,
        *,
        still_allowed: Callable[[], bool],
    ) -> None:
        self._response = response
        self._transport = transport
        self._stalled_since: float | None = None
        self._feed = feed
        self._keepalive = keepalive
        self._lifetime = lifetime
        self._still_allowed = still_allowed

    async def run(self, last_id: int | None, epoch: str | None) -> None:
        """Write events until the service stops or the reader goes away."""
        await self._write(b"retry: %d\n\n" % RECONNECT_MILLIS)
        # Where the reader is: a version number, with its epoch when known.
        cursor = None if last_id is None else (epoch, last_id)
        closing = asyncio.ensure_future(self._feed.closing.wait())
        ends_at = asyncio.get_running_loop().time() + self._lifetime
        try:
            while not closing.done():
                if await self._revoked():
                    return
                changed = self._feed.changed()
                history = self._feed.history
                if history is not None and history.current is not None:
                    cursor = await self._catch_up(history, cursor)
                left = ends_at - asyncio.get_running_loop().time()
                if left <= 0:
                    # Its time is up: the client reconnects (with Last-Event-ID), perhaps
                    # to a replica added since it connected.
                    return
                waiting = asyncio.ensure_future(changed.wait())
                done, _ = await asyncio.wait(
                    {waiting, closing},
                    timeout=min(self._keepalive, left),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiting.cancel()
                if not done and left > self._keepalive:
                    if await self._revoked():
                        return
                    await self._write(_KEEPALIVE)
        finally:
            closing.cancel()

    async def _revoked(self) -> bool:
        """End with a ``revoked`` event if the credential no longer holds; say whether it did."""
        if self._still_allowed():
            return False
        await self._write(_REVOKED)
        return True

    async def _catch_up(
        self, history: History, cursor: tuple[str | None, int] | None
    ) -> tuple[str | None, int]:
        """Write what the reader lacks of ``history``; return the new cursor."""
        current = history.current
        assert current is not None  # noqa: S101 - checked by the caller
        epoch = history.epoch
        if cursor is None:
            # The baseline: where the catalog stands now.
            await self._event("catalog", VersionEvent(epoch or "", current))
            return epoch, current.version
        known_epoch, version = cursor
        oldest = history.oldest
        lost = (
            (known_epoch is not None and known_epoch != epoch)
            or version > current.version
            or (oldest is not None and version < oldest.version - 1)
        )
        if lost:
            # Versions the reader missed are not kept (or it counted in another epoch): it
            # must start over from the current catalog.
            await self._event("resync", VersionEvent(epoch or "", current))
        else:
            for record in history.after(version):
                await self._event("catalog", VersionEvent(epoch or "", record))
        return epoch, current.version

    async def _event(self, kind: str, event: VersionEvent) -> None:
        data = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False)
        await self._write(
            b"event: %s\nid: %d\ndata: %s\n\n"
            % (kind.encode(), event.record.version, data.encode())
        )

    async def _write(self, data: bytes) -> None:
        """Write ``data``; raise TimeoutError when the reader has stopped taking what is sent."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the reader went away")
        now = asyncio.get_running_loop().time()
        patience = self._keepalive * STALL_INTERVALS
        if transport.get_write_buffer_size() <= UNREAD_LIMIT:
            self._stalled_since = None
        elif self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > patience:
            raise TimeoutError("the reader stopped reading")
        async with asyncio.timeout(patience):
            await self._response.write(data)
