"""The deployment's shared token in Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pydantic import SecretStr

from proxy.coordination.client import RedisGuard
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
    """:class:`~proxy.upstream.token.SharedTokens` in Redis: one key that expires with the token.

    The value is JSON with the token and the lifetime it was issued with; how long it has
    left is the key's own time to live, so no replica's clock is trusted by another. Redis
    holds the token in clear, as the proxy's memory does: protect Redis accordingly.
    """

    def __init__(
        self, guard: RedisGuard, *, key: str, wall_clock: Callable[[], float] = time.time
    ) -> None:
        """Keep the token under ``key``."""
        self._guard = guard
        self._key = key
        self._wall_clock = wall_clock
        self._discard = guard.client.register_script(_DISCARD_IF_SAME)

    async def load(self) -> SharedToken | None:
        """Return the stored token, or None (absent, unreadable, or Redis failing)."""

        async def read() -> list[object]:
            async with self._guard.client.pipeline(transaction=False) as pipe:
                pipe.get(self._key)
                pipe.pttl(self._key)
                result: list[object] = await pipe.execute()
                return result

        found = await self._guard.call("get", read, None)
        if found is None:
            return None
        raw, millis = found
        if not isinstance(raw, (bytes, str)) or not isinstance(millis, int) or millis <= 0:
            return None
        try:
            data = json.loads(raw)
            value, lifetime = str(data["token"]), float(data["lifetime"])
        except (ValueError, KeyError, TypeError):
            return None
        return SharedToken(SecretStr(value), self._wall_clock() + millis / 1000, lifetime)

    async def save(self, token: SharedToken) -> None:
        """Store ``token`` until it expires."""
        ttl_ms = int(token.left(self._wall_clock()) * 1000)
        if ttl_ms <= 0:
            return
        value = _encode(token)
        await self._guard.call(
            "set", lambda: self._guard.client.set(self._key, value, px=ttl_ms), None
        )

    async def discard(self, token: SharedToken) -> None:
        """Delete the stored token if it is still ``token``."""
        value = _encode(token)
        await self._guard.call(
            "discard", lambda: self._discard(keys=[self._key], args=[value]), None
        )


def _encode(token: SharedToken) -> bytes:
    # Deterministic, so discard() can compare what it would have written with what is there.
    return json.dumps(
        {"token": token.value.get_secret_value(), "lifetime": token.lifetime},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
