"""``GET /api/v1/catalog/versions`` and ``GET /api/v1/changes``: the catalog's history."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

from proxy.catalog.query import QueryError, parse_positive, refuse_unknown
from proxy.history.feed import FEED, HistoryUnavailableError, VersionGoneError
from proxy.history.store import History
from proxy.web.caching import etag_matches
from proxy.web.errors import json_error

# Epoch ids are hex (proxy.history.store.new_epoch); anything else is no epoch of ours.
_EPOCH = re.compile(r"^[0-9a-f]{1,32}$")
RETRY_AFTER_UNAVAILABLE = "5"


async def list_versions(request: web.Request) -> web.StreamResponse:
    """Serve the kept versions, newest first, with the epoch and the current number."""
    _once_each(request, ())
    feed = request.app[FEED]
    feed.need()
    try:
        history = await feed.current()
    except HistoryUnavailableError as exc:
        return _unavailable(exc)
    current = history.current
    body = {
        "epoch": history.epoch,
        "current": None if current is None else current.version,
        "oldest": None if history.oldest is None else history.oldest.version,
        "versions": [record.to_json() for record in history.versions],
    }
    return _answer(request, body)


async def list_changes(request: web.Request) -> web.StreamResponse:
    """Serve what changed between version ``since`` and the current one."""
    _once_each(request, ("since", "epoch"))
    since = parse_version(request.query.get("since"), "since")
    if since is None:
        raise QueryError("since", "a catalog version number", problem="'since' is required")
    epoch = parse_epoch(request.query.get("epoch"))
    feed = request.app[FEED]
    feed.need()
    try:
        history = await feed.current()
        if epoch is not None and epoch != history.epoch:
            return gone(f"epoch {epoch} is not the current one", history)
        start, diff = await feed.diff(history, since)
    except HistoryUnavailableError as exc:
        return _unavailable(exc)
    except VersionGoneError as exc:
        return gone(str(exc), exc.history)
    current = history.current
    assert current is not None  # noqa: S101 - diff() found it
    body = {
        "epoch": history.epoch,
        "from": {"version": start.version, "etag": start.etag},
        "to": {"version": current.version, "etag": current.etag},
        **diff.to_json(),
    }
    return _answer(request, body)


def parse_version(raw: str | None, parameter: str) -> int | None:
    """Read a version number (a positive decimal integer), or raise a 400 naming ``parameter``."""
    if raw is None:
        return None
    return parse_positive(raw, parameter, "a catalog version number (a positive integer)")


def parse_epoch(raw: str | None) -> str | None:
    """Read an epoch id, or raise a 400."""
    if raw is None:
        return None
    if not _EPOCH.match(raw):
        raise QueryError("epoch", "an epoch id as versions and events give it", raw)
    return raw


def gone(message: str, history: History) -> web.Response:
    """Answer 410, naming the oldest and current versions still kept and the epoch."""
    oldest, current = history.oldest, history.current
    body = {
        "error": {
            "code": "version_gone",
            "message": f"{message}; ask /api/v1/catalog/versions for what is kept",
            "epoch": history.epoch,
            "oldest": None if oldest is None else oldest.version,
            "current": None if current is None else current.version,
        }
    }
    return web.json_response(body, status=410)


def _once_each(request: web.Request, allowed: tuple[str, ...]) -> None:
    refuse_unknown(request.query, allowed)
    for name in request.query:
        if len(request.query.getall(name)) > 1:
            raise QueryError(name, "one value", problem=f"{name!r} is repeated")


def _answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    # The body is the same for the same history on every replica: its hash is a strong ETag.
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    etag = f'"{hashlib.blake2b(data, digest_size=16).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag_matches(request.headers.get("If-None-Match"), etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type="application/json", headers=headers)


def _unavailable(exc: HistoryUnavailableError) -> web.Response:
    return json_error(
        503, "history_unavailable", str(exc), headers={"Retry-After": RETRY_AFTER_UNAVAILABLE}
    )
