"""The drop-in for 1NCE clients: ``POST /management-api/oauth/token`` in 1NCE's own shapes.

A service that uses a 1NCE client library moves to the proxy by changing its base URL to
``<proxy>/management-api``: it asks this endpoint for a token with its ``name:key`` as client
id and secret (HTTP Basic, JSON ``{"grant_type": "client_credentials"}``), then calls
``/management-api/v1/products`` with that token as its bearer. It never holds 1NCE
credentials, and the upstream's own token never leaves the proxy (docs/api.md, "Drop-in").
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from http import HTTPStatus

from aiohttp import hdrs, web

from proxy.callers.keys import ApiKey
from proxy.callers.registry import CALLERS, as_bytes
from proxy.callers.tokens import LIFETIME
from proxy.observability.context import ANONYMOUS, UNAUTHENTICATED, name_caller

# A token request is a few dozen bytes; anything far larger is refused unread.
MAX_BODY = 4096
_JSON = "application/json"
_NO_STORE = {hdrs.CACHE_CONTROL: "no-store", hdrs.PRAGMA: "no-cache"}


async def issue_token(request: web.Request) -> web.Response:
    """Answer a client-credentials grant with a caller token, or 1NCE's 400 error shape."""
    problem = await _grant_problem(request)
    if problem is not None:
        return _refuse(*problem)
    credentials = _basic(request.headers.get(hdrs.AUTHORIZATION))
    if credentials is None:
        return _refuse("AuthValidationError", "The Authorization header must use HTTP Basic.")
    callers = request.app[CALLERS]
    if not callers.required:
        # The API is open: any credentials get a token, and it names nobody.
        token, caller = callers.tokens.issue(ANONYMOUS, None), ANONYMOUS
    else:
        key = _match(*credentials, callers.keys)
        if key is None:
            name_caller(UNAUTHENTICATED)
            return _refuse("CognitoAuthenticationError", "User does not exist.")
        token, caller = callers.tokens.issue(key.name, key), key.name
        name_caller(caller)
    answer = {
        "status_code": 200,
        "access_token": token,
        "token_type": "bearer",
        "expires_in": LIFETIME,
        "userId": caller,
        "scope": "all",
    }
    return web.json_response(answer, headers=_NO_STORE)


async def _grant_problem(request: web.Request) -> tuple[str, str] | None:
    """Say what is wrong with the request's body (1NCE's error code and message), if anything."""
    if request.content_type != _JSON:
        return "UnsupportedContentTypeError", "Content-Type must be application/json."
    too_large = "BodyValidationError", "The body is too large."
    if request.content_length is not None and request.content_length > MAX_BODY:
        return too_large
    body = bytearray()
    while len(body) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > MAX_BODY:
        return too_large
    try:
        grant = json.loads(body)
    # ValueError also covers bodies that are not UTF-8; RecursionError, nesting too deep to parse.
    except (ValueError, RecursionError):
        grant = None
    if not isinstance(grant, dict) or grant.get("grant_type") != "client_credentials":
        return "BodyValidationError", 'The body must be {"grant_type":"client_credentials"}.'
    return None


def _basic(header: str | None) -> tuple[str, str] | None:
    """Read the client id and secret of ``Authorization: Basic <base64>`` (None: not Basic)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(" \t"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


def _match(client_id: str, secret: str, keys: tuple[ApiKey, ...]) -> ApiKey | None:
    """Find the key named ``client_id`` whose value is ``secret``, in constant time."""
    given = as_bytes(secret)
    found = None
    for key in keys:
        same = hmac.compare_digest(given, key.secret.get_secret_value().encode())
        if same and key.name == client_id and found is None:
            found = key
    return found


def _refuse(code: str, message: str) -> web.Response:
    """1NCE's error shape, status 400, as its token endpoint answers."""
    body = {"statusCode": HTTPStatus.BAD_REQUEST, "errorCode": code, "message": message}
    return web.json_response(body, status=HTTPStatus.BAD_REQUEST, headers=_NO_STORE)
