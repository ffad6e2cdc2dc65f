"""The deployment's ``Retry-After`` windows in Redis: one key per endpoint, expiring with it."""

from __future__ import annotations

from proxy.coordination.client import RedisGuard

# Lengthens a window, never shortens one another replica set (two 429s, two Retry-Afters).
_OPEN = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""


class RedisWindows:
    """:class:`~proxy.upstream.windows.SharedWindows` in Redis.

    Only the key's remaining life is read (``PTTL``), never a timestamp, so replicas whose
    clocks disagree still agree on when a window ends.
    """

    def __init__(self, guard: RedisGuard, key_prefix: str) -> None:
        """Keep windows under ``{key_prefix}:{endpoint}``."""
        self._guard = guard
        self._prefix = key_prefix
        self._open = guard.client.register_script(_OPEN)

    async def remaining(self, endpoint: str) -> float | None:
        """Seconds left, 0 when no window; None when Redis cannot be asked."""
        key = f"{self._prefix}:{endpoint}"
        millis = await self._guard.call("pttl", lambda: self._guard.client.pttl(key), None)
        if millis is None:
            return None
        return float(millis) / 1000 if isinstance(millis, int) and millis > 0 else 0.0

    async def open(self, endpoint: str, seconds: float) -> None:
        """Make the window last at least ``seconds`` from now."""
        key = f"{self._prefix}:{endpoint}"
        millis = max(int(seconds * 1000), 1)
        await self._guard.call("window", lambda: self._open(keys=[key], args=[millis]), None)
