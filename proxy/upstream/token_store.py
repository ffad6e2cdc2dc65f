"""The deployment's shared token in Redis, renewed by one replica at a time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from pydantic import SecretStr

from proxy.coordination.client import RedisGuard
from proxy.coordination.lock import Coordinator
from proxy.upstream.token import SharedToken

# Deletes the key only if it still holds the value the caller saw (compare-and-delete), so a
# replica discarding a refused token never deletes the fresh one another replica just stored.
_DISCARD_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisTokens:
    """:class:`~proxy.upstream.token.SharedTokens` in Redis: one key, one lock, one topic.

    The value is JSON with the token and its expiry; the key expires with the token. Redis
    holds the token in clear, as the proxy's memory does: protect Redis accordingly.
    """

    def __init__(self, guard: RedisGuard, coordinator: Coordinator, *, key: str) -> None:
        """Keep the token under ``key``, taking turns through ``coordinator``."""
        self._guard = guard
        self._coordinator = coordinator
        self._key = key
        self._discard = guard.client.register_script(_DISCARD_IF_SAME)

    async def load(self) -> SharedToken | None:
        """Return the stored token, or None (absent, unreadable, or Redis failing)."""
        raw = await self._guard.call("get", lambda: self._guard.client.get(self._key), None)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return SharedToken(SecretStr(str(data["token"])), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None

    async def save(self, token: SharedToken) -> None:
        """Store ``token`` until it expires, then announce it."""
        ttl_ms = int((token.expires_at - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        value = _encode(token)
        await self._guard.call(
            "set", lambda: self._guard.client.set(self._key, value, px=ttl_ms), None
        )
        await self._coordinator.announce()

    async def discard(self, token: SharedToken) -> None:
        """Delete the stored token if it is still ``token``."""
        value = _encode(token)
        await self._guard.call(
            "discard", lambda: self._discard(keys=[self._key], args=[value]), None
        )

    def turn(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Take the renewal turn (a deployment lock)."""
        return self._coordinator.turn()

    def waiter(self) -> asyncio.Event:
        """Set when another replica stores a token."""
        return self._coordinator.waiter()


def _encode(token: SharedToken) -> bytes:
    # Deterministic, so discard() can compare what it would have written with what is there.
    return json.dumps(
        {"token": token.value.get_secret_value(), "expires_at": token.expires_at},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
