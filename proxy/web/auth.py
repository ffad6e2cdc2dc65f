"""Bearer checks: which paths need an API key, the admin token for ``/admin/*``, the 401."""

from __future__ import annotations

import hmac

from aiohttp import web
from pydantic import SecretStr

from proxy.callers.registry import as_bytes, bearer_of
from proxy.web.errors import json_error

PROTECTED_PREFIXES = ("/api/", "/v1/", "/management-api/v1/")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="1nce-proxy"'}


def bearer_matches(authorization: str | None, secrets: tuple[SecretStr, ...]) -> bool:
    """Whether ``Authorization: Bearer <x>`` names one of ``secrets``.

    Only ASCII space and tab around ``<x>`` are ignored (HTTP's own whitespace): a no-break
    or other Unicode space is part of what was sent, and an empty ``<x>`` never matches.
    Every secret is compared, in constant time, whatever matched earlier: the time taken
    says nothing about which key (or how much of one) was right.
    """
    given = bearer_of(authorization)
    if given is None:
        return False
    candidate = as_bytes(given)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(candidate, secret.get_secret_value().encode())
    return matched


def unauthorized(message: str) -> web.Response:
    """Build a 401 JSON error with the Bearer challenge."""
    return json_error(401, "unauthorized", message, headers=_CHALLENGE)
