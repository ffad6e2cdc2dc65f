"""The deployment's shared token, kept in the backplane."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pydantic import SecretStr

from proxy.backplane.interface import Backplane
from proxy.upstream.token import SharedToken


class BackplaneTokens:
    """:class:`~proxy.upstream.token.SharedTokens` in the backplane: one key that expires with it.

    The value is JSON with the token and the lifetime it was issued with; how long it has
    left is the key's own time to live, so no replica's clock is trusted by another. Redis
    holds the token in clear, as the proxy's memory does: protect Redis accordingly.
    """

    def __init__(
        self, backplane: Backplane, *, key: str, wall_clock: Callable[[], float] = time.time
    ) -> None:
        """Keep the token under ``key``."""
        self._backplane = backplane
        self._key = key
        self._wall_clock = wall_clock

    async def load(self) -> SharedToken | None:
        """Return the stored token, or None (absent, unreadable, or the backplane failing)."""
        found = await self._backplane.get_with_ttl(self._key)
        if found is None:
            return None
        raw, left = found
        try:
            data = json.loads(raw)
            value, lifetime = str(data["token"]), float(data["lifetime"])
        except (ValueError, KeyError, TypeError):
            return None
        return SharedToken(SecretStr(value), self._wall_clock() + left, lifetime)

    async def save(self, token: SharedToken) -> None:
        """Store ``token`` until it expires."""
        left = token.left(self._wall_clock())
        if left > 0:
            await self._backplane.set(self._key, _encode(token), left)

    async def discard(self, token: SharedToken) -> None:
        """Delete the stored token if it is still ``token``.

        A compare-and-delete, so a replica discarding a refused token never deletes the fresh
        one another replica just stored.
        """
        await self._backplane.delete_if_equal(self._key, _encode(token))


def _encode(token: SharedToken) -> bytes:
    # Deterministic, so discard() can compare what it would have written with what is there.
    return json.dumps(
        {"token": token.value.get_secret_value(), "lifetime": token.lifetime},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
