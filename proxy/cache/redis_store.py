"""The Redis backend of :class:`~proxy.cache.store.Store`, safe against a slow or dead Redis."""

from __future__ import annotations

from proxy.coordination.client import RedisGuard


class RedisStore:
    """A Redis-backed store where every call is bounded and failures become misses.

    Calls go through a :class:`RedisGuard` shared with the locks and the token store, so one
    breaker decides for the whole process when Redis is left alone and when it is probed.
    """

    def __init__(self, guard: RedisGuard) -> None:
        """Store through ``guard``."""
        self._guard = guard

    @property
    def state(self) -> str:
        """``ok`` while Redis answers, ``degraded`` after a failure until a call succeeds."""
        return self._guard.state

    @property
    def errors(self) -> int:
        """Failed Redis calls so far (all users of the guard)."""
        return self._guard.errors

    async def get(self, key: str) -> bytes | None:
        """Return the value under ``key``; ``None`` also when Redis fails."""
        value = await self._guard.call("get", lambda: self._guard.client.get(key), None)
        # The client is built without decode_responses, so a str would be a bug upstream of us.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` with a millisecond expiry; dropped when Redis fails."""
        expiry = max(int(ttl * 1000), 1)
        await self._guard.call("set", lambda: self._guard.client.set(key, value, px=expiry), None)

    async def ping(self) -> bool:
        """Ask Redis directly, bypassing the breaker, and update the state from the answer."""
        return bool(
            await self._guard.call("ping", self._guard.client.ping, fallback=False, probe=True)
        )

    async def close(self) -> None:
        """Nothing to do: the connection belongs to the application, which closes it."""
