"""Caller tokens: what the drop-in token endpoint issues, checked by every replica alike.

A token names its caller and its expiry and is signed (HMAC-SHA256) with a key derived from
one of that caller's API keys, so any replica verifies it with no shared state, and removing
the API key (rotation) revokes every token made with it. The upstream's own token is a
different thing and never leaves the proxy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable

from proxy.callers.keys import NAME, ApiKey

PREFIX = "ppt1."
LIFETIME = 3600
# A token is small; anything longer is not one of ours and is not parsed.
_MAX_LENGTH = 512
_CONTEXT = b"product-proxy caller token v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Decode what :func:`_b64` wrote, and only that: one token has one spelling.

    The standard decoder skips characters outside the alphabet, accepts padding and ignores
    the unused low bits of the last character, so many strings would decode to one token.
    """
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data


def _signing_key(secret: str) -> bytes:
    # Derived, so a token never carries (or lets anyone test guesses of) the API key itself.
    return hmac.new(secret.encode(), _CONTEXT, hashlib.sha256).digest()


class CallerTokens:
    """Issues and verifies caller tokens (``ppt1.<claims>.<signature>``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """Use ``clock`` (wall-clock seconds) for expiry."""
        self._clock = clock
        # Signs the tokens handed out while no keys are set (the API is then open, so
        # nothing needs to verify them across replicas).
        self._open_key = os.urandom(32)

    def looks_like_token(self, bearer: str) -> bool:
        """Whether ``bearer`` has a caller token's form (an API key is then not tried)."""
        return bearer.startswith(PREFIX)

    def issue(self, caller: str, key: ApiKey | None) -> str:
        """Make a token naming ``caller`` for :data:`LIFETIME` seconds, signed with ``key``."""
        claims = {"c": caller, "e": int(self._clock()) + LIFETIME}
        payload = PREFIX + _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing = _signing_key(key.secret.get_secret_value()) if key else self._open_key
        signature = hmac.new(signing, payload.encode(), hashlib.sha256).digest()
        return f"{payload}.{_b64(signature)}"

    def verify(self, token: str, keys: tuple[ApiKey, ...]) -> str | None:
        """Name the caller of a valid, unexpired token one of its keys signed (else None)."""
        if len(token) > _MAX_LENGTH:
            return None
        payload, _, signature_text = token.rpartition(".")
        try:
            claims = json.loads(_unb64(payload.removeprefix(PREFIX)))
            signature = _unb64(signature_text)
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        caller, expires = claims.get("c"), claims.get("e")
        if not isinstance(caller, str) or not NAME.match(caller):
            return None
        if not isinstance(expires, int) or isinstance(expires, bool) or expires <= self._clock():
            return None
        signed = payload.encode()
        valid = False
        for key in keys:
            if key.name == caller:
                expected = hmac.new(
                    _signing_key(key.secret.get_secret_value()), signed, hashlib.sha256
                ).digest()
                valid |= hmac.compare_digest(signature, expected)
        return caller if valid else None
